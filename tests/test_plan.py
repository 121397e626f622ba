"""``studio plan``: real training steps on a tiny dataset made here, memory, targets, data checks, bad datasets."""

import json
import math

from conftest import ROOT, run_cli

# the shipped vocoder's step count, from its training record
SHIPPED_STEPS = json.loads((ROOT / "models" / "melgan-music-22k" / "config.json").read_text())["training"]["steps"]


def _plan(*args):
    r = run_cli("plan", *args, "--json", "-", "--threads", "1", timeout=300)
    return json.loads(r.stdout[r.stdout.index("{"):])


def test_plan_vocoder_runs_real_steps_and_reports_targets(rendered):
    p = _plan("vocoder", "--data", rendered, "--batch", "2", "--channels", "32", "--steps", "3", "--warmup", "1")
    assert p["steps_run"] == 3 and p["batch"] == 2 and p["device"] == "cpu"
    assert 0 < p["seconds_per_step"] < 60 and math.isclose(p["steps_per_hour"], 3600 / p["seconds_per_step"])
    assert math.isfinite(p["peak_memory_mb"]) and 100 < p["peak_memory_mb"] < p["memory_limit_mb"]
    assert p["next_batch"] == 4 and p["next_batch_fits"] is True and p["next_batch_memory_mb"] >= p["peak_memory_mb"]
    targets = {t["name"]: t for t in p["targets"]}
    assert targets["shipped melgan-music-22k"]["steps"] == SHIPPED_STEPS  # from the shipped model's record
    assert targets["paper"]["steps"] == 400_000
    for t in targets.values():
        assert math.isclose(t["seconds"], t["steps"] * p["seconds_per_step"])
        assert t["epochs"] > 0
    # 3 pieces x 8 s is far below the documented minimum: the plan says so and names the threshold's source
    assert p["data_hours"]["train"] and p["minimum"]["hours"] == 1.0
    assert any("documented minimum" in w and "How much data" in w for w in p["warnings"])


def test_plan_translator_prints_a_readable_plan(rendered):
    r = run_cli("plan", "translator", "--data", rendered, "--batch", "2", "--channels", "32", "--steps", "2",
                "--warmup", "1", "--threads", "1", timeout=300)
    out = r.stdout
    assert "plan: translator on cpu" in out and "measured: 2 steps" in out and "s/step" in out
    assert "shipped translator-notes-22k" in out and "WARNING" in out and "per domain" in out


def test_plan_fails_cleanly_on_an_empty_or_missing_dataset(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.csv").write_text("path,domain,split,duration,sample_rate\n")
    for data, message in [(empty, "has no rows"), (tmp_path / "nowhere", "does not exist")]:
        r = run_cli("plan", "vocoder", "--data", data, "--batch", "2", check=False, timeout=120)
        assert r.returncode == 2, r.stderr
        assert message in r.stderr and "Traceback" not in r.stderr


def test_train_prints_the_same_estimate_from_its_first_steps(rendered, tmp_path):
    r = run_cli("train", "vocoder", "--data", rendered, "--out", tmp_path / "run", "--batch-size", "2",
                "--channels", "32", "--max-steps", "6", "--threads", "1", "--val-every", "0", "--ckpt-every", "0",
                timeout=300)
    out = r.stdout + r.stderr
    assert "s/step" in out and "steps/h" in out and "peak memory" in out
    assert f"to {SHIPPED_STEPS:,} steps (shipped melgan-music-22k)" in out and "to 400,000 steps (paper)" in out


def test_plan_refuses_a_missing_cuda_device_with_one_line(rendered):
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("the message is for machines without CUDA")
    r = run_cli("plan", "vocoder", "--data", rendered, "--device", "cuda", "--batch", "2", check=False, timeout=120)
    assert r.returncode == 2 and "no CUDA device" in r.stderr and "Traceback" not in r.stderr


def test_precision_auto_takes_bf16_only_where_it_is_native(rendered):
    """Training's bf16 autocast: ``--precision auto`` resolves to bf16 only on a CPU with native bf16 (here told by
    STUDIO_NATIVE_BF16, as the ISA caps of a simulated AVX2 CPU would); an explicit bf16 without it warns."""
    args = ("vocoder", "--data", rendered, "--batch", "2", "--channels", "32", "--steps", "1", "--warmup", "0",
            "--threads", "1", "--json", "-")
    for native, asked, expect in [("0", "auto", "fp32"), ("1", "auto", "bf16"), ("0", "bf16", "bf16")]:
        r = run_cli("plan", *args, "--precision", asked, env={"STUDIO_NATIVE_BF16": native}, timeout=300)
        assert json.loads(r.stdout[r.stdout.index("{"):])["precision"] == expect, (native, asked)
        warned = "without native bf16" in r.stderr
        assert warned == (asked == "bf16" and native == "0"), r.stderr[-500:]
