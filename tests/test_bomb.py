"""A decompression bomb: a 468 KB FLAC that decodes to 1.8 GB (8 channels x 192 kHz x 295 s of silence).

It passes the app's upload (50 MB) and length (300 s) limits. Through the running app and through the CLI it must
get its one-line refusal (it is silent) while the process's peak memory stays within 1 GB of what it was before.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from app_server import AppServer, peak_rss_mb, tiny_models
from conftest import ARTIFACTS, ROOT

FOLD = "Fold into its range"  # the Translate tab's register choice (studio.app.REGISTERS)

BUDGET_MB = 1024


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    path = tmp_path_factory.mktemp("bomb") / "bomb.flac"
    block = np.zeros((192000 * 5, 8), np.int16)
    with sf.SoundFile(path, "w", 192000, 8, "PCM_16", format="FLAC") as f:
        for _ in range(59):
            f.write(block)
    info = sf.info(str(path))
    assert path.stat().st_size < 600_000 and info.frames * info.channels * 4 > 1.8e9  # small file, huge decode
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("models"))


def _record(name: str, figures: dict) -> None:
    path = ARTIFACTS / "bomb.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = figures
    path.write_text(json.dumps(data, indent=2))


def test_the_app_refuses_the_bomb_in_bounded_memory(bomb, models, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with AppServer(models, tmp_path / "app.log") as app:
        c = app.client()
        ok = tmp_path / "ok.wav"
        sf.write(ok, 0.3 * np.sin(np.arange(22050 * 2) / 5.0), 22050)
        c.predict(handle_file(str(ok)), "violin", False, "other", "(none)", 0.0, FOLD, api_name="/translate")  # warm up
        idle = peak_rss_mb(app.pid)
        with pytest.raises(AppError) as e:
            c.predict(handle_file(str(bomb)), "violin", False, "other", "(none)", 0.0, FOLD, api_name="/translate")
        peak = peak_rss_mb(app.pid)
        assert app.alive()
    message = str(e.value)
    assert "The clip is silent (below -60 dBFS)" in message and "\n" not in message.strip()
    _record("app", {"peak_before_mb": round(idle), "peak_after_mb": round(peak), "above_mb": round(peak - idle)})
    assert peak - idle <= BUDGET_MB, (idle, peak)


def _cli_peak(args: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``python -m studio ARGS``; its peak RSS (MiB) as the only child of a small wrapper."""
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")
    r = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "studio", *args], capture_output=True,
                       text=True, cwd=ROOT, env=env, timeout=600)
    *lines, peak_kb = r.stderr.strip().splitlines()
    r.stderr = "\n".join(lines)
    return r, int(peak_kb) / 1024


def test_the_cli_refuses_the_bomb_in_bounded_memory(bomb, models, tmp_path):
    import os

    env = {**os.environ, "STUDIO_MODELS_DIR": str(models), "OMP_NUM_THREADS": "1"}
    ok = tmp_path / "ok.wav"
    sf.write(ok, 0.3 * np.sin(np.arange(22050 * 2) / 5.0), 22050)
    r, baseline = _cli_peak(["translate", str(ok), "--to", "violin", "-o", str(tmp_path / "ok-out.wav")], env)
    assert r.returncode == 0, r.stderr
    r, peak = _cli_peak(["translate", str(bomb), "--to", "violin", "-o", str(tmp_path / "out.wav")], env)
    assert r.returncode == 2 and r.stderr.strip() == "error: 'bomb.flac' is silent (below -60 dBFS); give a clip with " \
                                                     "sound in it.", r.stderr
    assert not (tmp_path / "out.wav").exists()
    _record("cli", {"peak_short_clip_mb": round(baseline), "peak_bomb_mb": round(peak), "above_mb": round(peak - baseline)})
    assert peak - baseline <= BUDGET_MB, (baseline, peak)
