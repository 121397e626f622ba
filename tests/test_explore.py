"""Latent exploration on the shipped models: interpolation (steps and morph), its CLI, the continuation plot."""

import numpy as np
import pytest
import soundfile as sf

from conftest import run_cli
from studio.errors import StudioError
from studio.metrics import mel_l1


@pytest.fixture(scope="module")
def two_pianos(rendered):
    """Two different pieces on the piano, as files."""
    from studio.data import read_manifest

    rows = [e for e in read_manifest(rendered) if e.domain == "piano"]
    assert len({e.piece for e in rows}) >= 2
    return rendered / rows[0].path, rendered / rows[1].path


@pytest.fixture(scope="module")
def generator(one_torch_thread):
    from studio.generation import Generator

    return Generator.from_pretrained()


@pytest.fixture(scope="module")
def translator(generator):
    from studio.translation import Translator

    return Translator.from_pretrained(vocoder=generator.vocoder)


@pytest.mark.parametrize("space", ["generator", "translator"])
def test_interpolation_steps_have_the_length_and_end_points_near_their_own_clip(space, two_pianos, generator,
                                                                                 translator):
    from studio.explore import interpolate

    model, kw = (generator, {}) if space == "generator" else (translator, {"target": "piano"})
    r = interpolate(model, *two_pianos, steps=3, seconds=2.0, **kw)
    sr = r.sample_rate
    assert r.alphas == [0.0, 0.5, 1.0] and len(r.audio) == 3
    assert all(len(y) == 2 * sr and np.isfinite(y).all() for y in r.audio)
    first, last = r.audio[0], r.audio[-1]
    cfg = model.config
    assert mel_l1(r.a, first, cfg) < mel_l1(r.b, first, cfg)
    assert mel_l1(r.b, last, cfg) < mel_l1(r.a, last, cfg)
    assert np.abs(r.audio[1] - first).mean() > 1e-4 and np.abs(r.audio[1] - last).mean() > 1e-4  # a real mix


def test_morph_moves_from_a_to_b_over_time(two_pianos, generator):
    from studio.explore import interpolate

    r = interpolate(generator, *two_pianos, morph=True, seconds=3.0)
    (y,) = r.audio
    assert len(y) == 3 * r.sample_rate
    k = len(y) // 4
    cfg = generator.config
    assert mel_l1(r.a[:k], y[:k], cfg) < mel_l1(r.b[:k], y[:k], cfg)
    assert mel_l1(r.b[-k:], y[-k:], cfg) < mel_l1(r.a[-k:], y[-k:], cfg)


def test_interpolation_rejects_bad_requests(two_pianos, generator, translator):
    from studio.explore import interpolate

    with pytest.raises(StudioError, match="steps must be between 2"):
        interpolate(generator, *two_pianos, steps=1)
    with pytest.raises(StudioError, match="seconds must be in"):
        interpolate(generator, *two_pianos, seconds=0)
    with pytest.raises(StudioError, match="choose the instrument"):
        interpolate(translator, *two_pianos)
    with pytest.raises(StudioError, match="unknown target instrument"):
        interpolate(translator, *two_pianos, target="kazoo")


def test_cli_interpolate_writes_each_step_and_a_plot(two_pianos, tmp_path):
    r = run_cli("interpolate", *two_pianos, "-o", tmp_path, "--steps", "3", "--seconds", "1.5",
                env={"OMP_NUM_THREADS": "1"})
    wavs = sorted(tmp_path.glob("step_*.wav"))
    assert [w.name for w in wavs] == ["step_00_alpha_0.00.wav", "step_01_alpha_0.50.wav", "step_02_alpha_1.00.wav"]
    assert all(sf.info(str(w)).frames == int(1.5 * 22050) for w in wavs)
    assert (tmp_path / "interpolation.png").stat().st_size > 10_000 and "wrote" in r.stdout
    r = run_cli("interpolate", *two_pianos, "-o", tmp_path / "m", "--morph", "--model", "translator-music-22k",
                "--to", "cello", "--seconds", "1", env={"OMP_NUM_THREADS": "1"})
    assert sf.info(str(tmp_path / "m" / "morph.wav")).frames == 22050


def test_cli_generate_continuation_plots_the_prompt_boundary(two_pianos, tmp_path):
    r = run_cli("generate", "--seconds", "2", "--prompt", two_pianos[0], "--prompt-seconds", "1", "--plot",
                "-o", tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert (tmp_path / "sample_000.png").stat().st_size > 10_000 and "sample_000.png" in r.stdout
    y, sr = sf.read(str(tmp_path / "sample_000.wav"), dtype="float32")
    x, _ = sf.read(str(two_pianos[0]), dtype="float32")
    assert len(y) == 2 * sr and np.allclose(y[: sr - int(0.05 * sr)], x[: sr - int(0.05 * sr)], atol=1e-4)
