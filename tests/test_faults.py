"""Training survives faults: kill -9 at a random moment, a checkpoint write cut off half-way, a full disk."""

from __future__ import annotations

import gc
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import ROOT, run_cli
from studio.config import to_dict
from studio.train.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from studio.train.loop import CHECKPOINT
from studio.weights import CheckpointError, atomic_save_tensors, load_tensors
from test_vocoder import TINY

STEPS, CKPT_EVERY = 30, 3
ENV = {"OMP_NUM_THREADS": "1"}


def checkpoint_step(out_dir) -> int | None:
    """The step of the run's last complete checkpoint, None when there is none."""
    p = Path(out_dir) / CHECKPOINT
    return read_checkpoint_meta(p)["step"] if p.is_file() else None


def train_args(data: Path, out: Path, cfg: Path, steps: int = STEPS, *extra) -> list[str]:
    return ["train", "vocoder", "--data", str(data), "--out", str(out), "--config", str(cfg), "--max-steps", str(steps),
            "--batch-size", "2", "--ckpt-every", str(CKPT_EVERY), "--val-every", "0", "--log-every", "1",
            "--threads", "1", "--device", "cpu", "--seed", "0", *extra]


def temps(folder: Path) -> list[str]:
    """Hidden entries: where writes in progress live (never named like a checkpoint)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def assert_same_checkpoint(a: Path, b: Path) -> None:
    """Every tensor (weights, optimizer moments, RNG) and all plain data (step, optimizer scalars, RNG, configs)."""
    ta, ma = load_tensors(a)
    tb, mb = load_tensors(b)
    assert ta.keys() == tb.keys()
    assert any(k.startswith("optim/discriminator/") for k in ta) and any(k.startswith("model/generator/") for k in ta)
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    assert json.loads(ma["studio"]) == json.loads(mb["studio"])


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.json"
    path.write_text(json.dumps(to_dict(TINY)))
    return path


@pytest.fixture(scope="module")
def straight_run(rendered, tiny_config, tmp_path_factory) -> Path:
    """The uninterrupted reference: STEPS steps in one go."""
    out = tmp_path_factory.mktemp("straight") / "run"
    run_cli(*train_args(rendered, out, tiny_config), env=ENV)
    assert checkpoint_step(out) == STEPS
    return out


def test_kill_9_at_a_random_moment_then_resume_matches_an_uninterrupted_run(rendered, tiny_config, straight_run,
                                                                            tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "studio", *train_args(rendered, out, tiny_config)], cwd=ROOT,
                            env={**os.environ, **ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (out / CHECKPOINT).is_file():  # the first checkpoint
            assert proc.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
            time.sleep(0.01)
        t1, mtime = time.monotonic(), (out / CHECKPOINT).stat().st_mtime_ns
        while (out / CHECKPOINT).stat().st_mtime_ns == mtime:  # the second: how long CKPT_EVERY steps take here
            assert proc.poll() is None and time.time() < deadline, "the run ended before its second checkpoint"
            time.sleep(0.01)
        per_step = (time.monotonic() - t1) / CKPT_EVERY
        # a random moment within the first ~60 % of what is left (its own generator: other tests seed the global one)
        delay = random.Random().uniform(0.0, 0.6 * (STEPS - 2 * CKPT_EVERY) * per_step)
        print(f"{per_step:.3f} s/step; kill -9 {delay:.2f} s after the second checkpoint")
        time.sleep(delay)
    finally:
        proc.kill()  # SIGKILL: no handler, no final checkpoint
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it was killed: raise STEPS"
    step = checkpoint_step(out)  # the last complete checkpoint still loads
    print(f"killed; last checkpoint at step {step}; temp files left: {temps(out)}")
    assert 0 < step < STEPS and step % CKPT_EVERY == 0

    r = run_cli(*train_args(rendered, out, tiny_config, STEPS, "--resume"), env=ENV)
    assert f"resumed from {out / CHECKPOINT} at step {step}" in r.stdout
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["step"] == STEPS and summary["steps_run"] == STEPS - step
    assert_same_checkpoint(straight_run / CHECKPOINT, out / CHECKPOINT)
    a, _ = load_tensors(straight_run / "export" / "model.safetensors")
    b, _ = load_tensors(out / "export" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert temps(out) == [] and temps(out / "export") == []  # the resumed run's saves removed the dead writer's


WRITER = textwrap.dedent("""
    import sys, torch
    from studio.weights import atomic_save_tensors
    path, n = sys.argv[1], int(sys.argv[2])
    i = int(sys.argv[3])
    while True:
        i += 1
        atomic_save_tensors({"x": torch.full((n,), float(i)), "i": torch.tensor(i)}, path, {"i": str(i)})
        print(i, flush=True)
""")


def test_a_checkpoint_write_killed_half_way_never_corrupts_the_previous_one(tmp_path):
    """A writer saving 16 MB files in a loop is killed -9 again and again, half of the times while its temp file
    exists (mid-write or mid-fsync), the others at random moments; each time the checkpoint is a complete one."""
    path = tmp_path / CHECKPOINT
    n = 4 << 20  # 16 MB of float32
    atomic_save_tensors({"x": torch.zeros(n), "i": torch.tensor(0)}, path, {"i": "0"})
    last, mid_write = 0, 0
    for round in range(4):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n), str(last)], cwd=ROOT,
                                env={**os.environ, **ENV}, stdout=subprocess.PIPE, text=True)
        try:
            first = int(proc.stdout.readline())  # one complete save of this writer
            assert first == last + 1
            if round % 2 == 0:
                deadline = time.time() + 60
                while not any(p.startswith(f".{CHECKPOINT}.pid{proc.pid}.") for p in temps(tmp_path)):
                    assert time.time() < deadline
                mid_write += 1
            else:
                time.sleep(random.Random().uniform(0.0, 0.3))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
        printed = [first] + [int(x) for x in proc.stdout.read().split()]
        tensors, meta = load_tensors(path)  # loads: never a half-written file
        i = int(meta["i"])
        assert tensors["x"].shape == (n,) and torch.equal(tensors["x"], torch.full((n,), float(i)))
        # the last save reported complete, or the one after it (renamed into place, then killed before printing)
        assert int(tensors["i"]) == i and max(printed) <= i <= max(printed) + 1
        last = i
        # what the dead writer left is hidden, named *.tmp, and nothing reads it as a checkpoint
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [CHECKPOINT]
        assert all(t.startswith(f".{CHECKPOINT}.pid") and t.endswith(".tmp") for t in temps(tmp_path))
    assert mid_write == 2
    atomic_save_tensors({"x": torch.ones(4), "i": torch.tensor(-1)}, path, {"i": "-1"})  # the next save cleans up
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT]


def _state(width: int):
    torch.manual_seed(0)
    net = nn.Linear(width, width)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    net(torch.randn(2, width)).sum().backward()
    opt.step()
    return {"net": net}, {"opt": opt}


def test_disk_full_is_a_one_line_error_naming_the_path_and_keeps_the_previous_checkpoint(tmp_path):
    disk = tmp_path / "small_disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs here ({r.stderr.strip() or r.returncode}); "
                    "test_file_size_limit covers the same path with RLIMIT_FSIZE")
    modules = optims = m2 = o2 = None
    try:
        modules, optims = _state(256)  # ~0.8 MB with Adam's moments
        path = disk / CHECKPOINT
        save_checkpoint(path, modules=modules, optimizers=optims, step=1)
        before = path.read_bytes()
        free = shutil.disk_usage(disk).free
        (disk / "filler").write_bytes(b"\0" * max(0, free - 64 * 1024))  # the disk is now (nearly) full
        with pytest.raises(CheckpointError) as e:
            save_checkpoint(path, modules=modules, optimizers=optims, step=2)
        message = str(e.value)
        print(message)
        assert "\n" not in message and str(path) in message and "No space left on device" in message
        assert "the previous file is unchanged" in message
        assert path.read_bytes() == before and temps(disk) == []
        m2, o2 = _state(256)
        assert load_checkpoint(path, modules=m2, optimizers=o2, restore_rng=False)["step"] == 1
        assert torch.equal(m2["net"].weight, modules["net"].weight)
    finally:
        modules = optims = m2 = o2 = None
        gc.collect()  # safetensors memory-maps what it loads: let go of it before unmounting
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def test_file_size_limit_during_training_stops_with_a_clear_error(rendered, tiny_config, straight_run, tmp_path):
    """The real CLI, resumed under a 1 MB file-size limit (EFBIG: what a quota or a full disk looks like to it)."""
    out = tmp_path / "run"
    shutil.copytree(straight_run, out)
    before = (out / CHECKPOINT).read_bytes()
    assert len(before) > 2 << 20

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # Python ignores SIGXFSZ: writes get EFBIG

    r = subprocess.run([sys.executable, "-m", "studio", *train_args(rendered, out, tiny_config, STEPS + CKPT_EVERY,
                                                                    "--resume")],
                       cwd=ROOT, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=300,
                       preexec_fn=limit)
    last = r.stderr.strip().splitlines()[-1]
    print(last)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert last == f"error: could not write {out / CHECKPOINT} (File too large); the previous file is unchanged."
    assert (out / CHECKPOINT).read_bytes() == before and temps(out) == []
