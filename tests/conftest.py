"""Shared fixtures: real audio rendered with FluidSynth from music21's corpus, tiny model configs."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "audio"
ARTIFACTS = ROOT / "test-artifacts"

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("NUMBA_CPU_NAME", "generic")  # as ``studio`` sets it, for tests that import librosa first


def pytest_configure(config):
    ARTIFACTS.mkdir(exist_ok=True)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread: on a loaded 2-core machine two threads are many times slower (and give the same result)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> Path:
    """A tiny real dataset: 3 corpus pieces x (piano, violin, cello), 8 s each, in the standard layout."""
    from data_recipes.render import RenderConfig, build

    if shutil.which("fluidsynth") is None:
        pytest.fail("fluidsynth is not installed: run the README's test command (it installs it)")
    out = tmp_path_factory.mktemp("data") / "render"
    build(RenderConfig(out=out, instruments=("piano", "violin", "cello"), max_pieces=3, max_seconds=8.0), progress=False)
    return out


@pytest.fixture(scope="session")
def piano_clip(rendered) -> Path:
    from studio.data import read_manifest

    e = next(e for e in read_manifest(rendered, "train") if e.domain == "piano")
    return rendered / e.path


def run_cli(*args, timeout=600, env=None, check=True):
    """Run ``python -m studio ...`` as a real subprocess."""
    import subprocess

    r = subprocess.run([sys.executable, "-m", "studio", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})
    if check and r.returncode != 0:
        raise AssertionError(f"studio {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r
