"""Demucs separation from local weights, and the stems recipe, with a small randomly initialised HTDemucs saved in
the layouts Demucs's own local repositories use (no network, no downloaded weights)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from data_recipes.stems import StemsConfig, build
from studio.data import read_manifest
from studio.errors import ConfigMismatch, DatasetError, ModelNotFound
from studio.separation import isolate_stem, load_demucs, separate

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["drums", "bass", "other", "vocals"]


def tiny_htdemucs():
    """An HTDemucs with the real architecture (both branches, cross-transformer) but ~0.4 M weights."""
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(0)
    return HTDemucs(SOURCES, channels=8, dconv_comp=4, t_layers=1, t_heads=1, segment=Fraction(2))


def package(model) -> dict:
    """What ``demucs.states.serialize_model`` writes (it also stores training args, which need omegaconf)."""
    args, kwargs = model._init_args_kwargs
    return {"klass": model.__class__, "args": args, "kwargs": kwargs,
            "state": {k: v.clone() for k, v in model.state_dict().items()}, "training_args": {}}


@pytest.fixture(autouse=True)
def one_thread():
    """Demucs on one thread: several threads on a shared 2-core machine are many times slower, not faster."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def demucs_repo(tmp_path_factory) -> Path:
    """A local repository as ``demucs --repo`` reads it: ``tiny.yaml`` (a bag of one model) and the model's
    ``<signature>-<sha256 prefix>.th`` written by Demucs's own ``save_with_checksum``."""
    from demucs.states import save_with_checksum

    repo = tmp_path_factory.mktemp("demucs")
    save_with_checksum(package(tiny_htdemucs()), repo / "0a1b2c3d.th")
    (repo / "tiny.yaml").write_text("models: ['0a1b2c3d']\n")
    return repo


def mixture(path: Path, sr: int, seconds: float, channels: int, f0: float) -> np.ndarray:
    """A little song: a bass line, a chord and noise hits."""
    rng = np.random.default_rng(int(f0))
    t = np.arange(int(sr * seconds)) / sr
    bass = 0.3 * np.sin(2 * np.pi * f0 * t) * (1 + 0.3 * np.sin(2 * np.pi * 2 * t))
    chord = sum(0.1 * np.sin(2 * np.pi * f0 * r * 4 * t) for r in (1, 1.25, 1.5))
    hits = rng.standard_normal(len(t)) * (np.mod(t, 0.25) < 0.03) * 0.2
    x = (bass + chord + hits).astype(np.float32)
    if channels == 2:
        x = np.stack([x, np.roll(x, 50)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sr, subtype="PCM_16")
    return x


def test_load_from_local_repo_and_separate(demucs_repo):
    model = load_demucs("tiny", repo=demucs_repo)
    assert list(model.sources) == SOURCES and model.samplerate == 44100 and model.audio_channels == 2
    rng = np.random.default_rng(0)
    mono = (0.2 * rng.standard_normal(22050)).astype(np.float32)  # 1 s at 22.05 kHz, mono: resampled there and back
    out = separate(mono, 22050, model, stems=("bass", "vocals"))
    assert set(out) == {"bass", "vocals"}
    assert all(y.shape == mono.shape and y.dtype == np.float32 and np.isfinite(y).all() for y in out.values())
    assert np.array_equal(out["bass"], separate(mono, 22050, model, stems=("bass",))["bass"])  # reproducible
    stereo = (0.2 * rng.standard_normal((2, 40000))).astype(np.float32)  # 48 kHz stereo
    out = separate(stereo, 48000, model)
    assert list(out) == SOURCES and all(y.shape == (2, 40000) for y in out.values())
    with pytest.raises(ConfigMismatch, match="no stems \\['piano'\\]"):
        separate(mono, 22050, model, stems=("piano",))
    y, sr = isolate_stem(stereo, 48000, "drums", model=model)  # what the translator's --stem uses
    assert sr == 48000 and np.array_equal(y, out["drums"])


def test_single_model_and_bundled_bag_definitions(tmp_path, monkeypatch):
    """``<name>.th`` on its own, and the weights of a name Demucs ships a bag definition for (htdemucs)."""
    model = tiny_htdemucs()
    torch.save(package(model), tmp_path / "mine.th")
    (tmp_path / "hub").mkdir()
    torch.save(package(model), tmp_path / "hub" / "955717e8.th")  # htdemucs.yaml (bundled) lists 955717e8
    x = np.sin(np.linspace(0, 2000, 30000)).astype(np.float32) * 0.3
    a = separate(x, 44100, load_demucs("mine", repo=tmp_path), ("drums",))["drums"]
    b = separate(x, 44100, load_demucs("htdemucs", repo=tmp_path / "hub"), ("drums",))["drums"]
    np.testing.assert_allclose(a, b, atol=1e-5)
    monkeypatch.setenv("STUDIO_DEMUCS_DIR", str(tmp_path / "hub"))  # the default model from the default folder
    np.testing.assert_array_equal(isolate_stem(x, 44100, "drums")[0], b)


def test_huggingface_hub_files(tmp_path):
    """The files of the HuggingFace hub's Demucs repositories: ``<name>.yaml`` + ``<sig>.safetensors`` whose metadata
    names the class and its arguments (as JSON, fractions encoded), read by ``demucs.hf``."""
    from safetensors.torch import save_file

    model = tiny_htdemucs()
    args, kwargs = model._init_args_kwargs
    kwargs = {k: ({"_type": "fraction", "numerator": v.numerator, "denominator": v.denominator}
                  if isinstance(v, Fraction) else v) for k, v in kwargs.items()}
    meta = {"klass": "demucs.htdemucs.HTDemucs", "args": json.dumps(list(args)), "kwargs": json.dumps(kwargs)}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "0a1b2c3d.safetensors"), meta)
    (tmp_path / "hubname.yaml").write_text("models: ['0a1b2c3d']\n")
    x = np.sin(np.linspace(0, 900, 20000)).astype(np.float32) * 0.3
    loaded = load_demucs("hubname", repo=tmp_path)
    assert float(loaded.models[0].segment) == 2.0  # the Fraction came through the JSON metadata
    np.testing.assert_allclose(separate(x, 44100, loaded, ("vocals",))["vocals"],
                               separate(x, 44100, model, ("vocals",))["vocals"], atol=1e-5)


def test_missing_weights_fail_fast_without_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("load_demucs tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    empty = tmp_path / "demucs"
    empty.mkdir()
    t0 = time.time()
    with pytest.raises(ModelNotFound, match=f"'htdemucs' is not installed in {empty}: put 955717e8-8726e21a.th "
                                            "\\(from https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/"):
        load_demucs("htdemucs", repo=empty)
    monkeypatch.setenv("STUDIO_DEMUCS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ModelNotFound, match=f"not installed in {tmp_path / 'nowhere'} \\(a folder that does not exist"):
        load_demucs()  # the folder named by the environment
    with pytest.raises(ModelNotFound, match=f"Demucs folder {tmp_path / 'nowhere'} does not exist"):
        load_demucs("nosuch")
    with pytest.raises(ModelNotFound, match="no Demucs model 'nosuch'"):
        load_demucs("nosuch", repo=empty)
    (empty / "955717e8-8726e21a.th").write_bytes(b"not a model")  # the right name, the wrong content
    with pytest.raises(ModelNotFound, match="could not load Demucs model 'htdemucs'.*checksum"):
        load_demucs("htdemucs", repo=empty)
    assert time.time() - t0 < 5


def test_stems_recipe(tmp_path, demucs_repo):
    songs = tmp_path / "songs"
    a = mixture(songs / "album" / "song one.wav", 44100, 2.0, 2, 55.0)  # CD-rate stereo
    b = mixture(songs / "song_two.flac", 32000, 1.5, 1, 73.4)  # another rate, mono
    sf.write(songs / "silence.wav", np.zeros(16000, np.float32), 16000)  # every stem silent: left out
    out = tmp_path / "data" / "bass"
    r = subprocess.run([sys.executable, "-m", "data_recipes.stems", "--songs", songs, "--out", out, "--stems", "bass",
                        "other", "--domain-prefix", "", "--model", "tiny", "--repo", demucs_repo, "--silence-db", "-80"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert "skipped silence: 'bass' is silent" in r.stdout
    rows = read_manifest(out)
    assert sorted((e.domain, e.piece) for e in rows) == [
        ("bass", "album/song one"), ("bass", "song_two"), ("other", "album/song one"), ("other", "song_two")]
    lengths = {"album/song one": len(a) / 44100, "song_two": len(b) / 32000}
    for e in rows:
        assert e.path == f"audio/{e.domain}/{e.piece.replace('/', '__')}.wav"
        assert e.sample_rate == 22050 and abs(e.duration - lengths[e.piece]) < 1e-3
        info = sf.info(str(out / e.path))
        assert (info.samplerate, info.channels) == (22050, 1) and abs(info.frames / 22050 - lengths[e.piece]) < 1e-3
        assert e.source.startswith(f"Demucs tiny '{e.domain}' stem of ")
        assert len({x.split for x in rows if x.piece == e.piece}) == 1  # the stems of a song share its split

    # in-process, with a domain prefix
    rows = read_manifest(build(StemsConfig(songs=songs, out=tmp_path / "prefixed", stems=("vocals",), model="tiny",
                                           repo=demucs_repo, domain_prefix="stem_", max_songs=1, silence_db=-80),
                               progress=False))
    assert [(e.domain, e.piece) for e in rows] == [("stem_vocals", "album/song one")]

    # a corrupt song stops the run before any separation, and the old dataset stays as it was
    before = (out / "manifest.csv").read_bytes()
    (songs / "broken.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(DatasetError, match="cannot use .*broken.wav"):
        build(StemsConfig(songs=songs, out=out, stems=("bass",), model="tiny", repo=demucs_repo), progress=False)
    assert (out / "manifest.csv").read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["bass"]


def test_stems_recipe_without_weights(tmp_path):
    songs = tmp_path / "songs"
    mixture(songs / "a.wav", 22050, 0.5, 1, 60.0)
    out = tmp_path / "out"
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "data_recipes.stems", "--songs", songs, "--out", out],
                       capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env={**os.environ, "STUDIO_DEMUCS_DIR": str(tmp_path / "empty")})
    assert r.returncode == 2 and time.time() - t0 < 30
    assert r.stderr.startswith("error: Demucs model 'htdemucs' is not installed in ") and "STUDIO_DEMUCS_DIR" in r.stderr
    assert "955717e8-8726e21a.th" in r.stderr
    assert not out.exists()
    (tmp_path / "no_songs").mkdir()
    with pytest.raises(DatasetError, match="no audio files in"):
        build(StemsConfig(songs=tmp_path / "no_songs", out=out), progress=False)
    with pytest.raises(DatasetError, match="songs folder .* does not exist"):
        build(StemsConfig(songs=tmp_path / "nowhere", out=out), progress=False)
    assert not out.exists()
