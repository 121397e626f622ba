"""The real-corpus recipes (LJSpeech, MusicNet, MAESTRO) on tiny fake corpora laid out exactly like the real ones:
short harmonic tones at each corpus's own sample rate and channel count, metadata files written here."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_recipes import ljspeech, maestro, musicnet
from data_recipes._common import assign_splits
from studio.data import read_manifest
from studio.errors import DatasetError

ROOT = Path(__file__).resolve().parents[1]
SR = 22050


def tone(path: Path, sr: int, seconds: float, f0: float, channels: int = 1) -> float:
    """A few harmonics with an attack/decay envelope, written as 16-bit PCM; returns the duration."""
    t = np.arange(int(sr * seconds)) / sr
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5)) * np.minimum(1, t / 0.02) * np.exp(-t)
    x = (0.3 * x / np.abs(x).max()).astype(np.float32)
    if channels == 2:
        x = np.stack([x, 0.8 * x], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sr, subtype="PCM_16")
    return len(t) / sr


def recipe(name: str, *args, timeout=300):
    """``python -m data_recipes.<name> ...`` as a real subprocess."""
    return subprocess.run([sys.executable, "-m", f"data_recipes.{name}", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def check_audio(out: Path, rows) -> None:
    for r in rows:
        assert r.sample_rate == SR
        info = sf.info(str(out / r.path))
        assert (info.samplerate, info.channels) == (SR, 1)
        assert abs(info.frames / SR - r.duration) < 1e-3
        x, _ = sf.read(str(out / r.path), dtype="float32")
        assert np.isfinite(x).all() and np.abs(x).max() > 0.05  # real audio, not silence


def leftovers(out: Path) -> list[str]:
    """Staging folders a failed build must not leave beside ``out``."""
    return [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


# ----------------------------------------------------------------------------------------------- fake corpora

def make_ljspeech(tmp: Path) -> dict:
    corpus = tmp / "corpus" / "LJSpeech-1.1"
    ids = [f"LJ001-{i:04d}" for i in range(1, 7)]
    lines, durations = [], {}
    for n, i in enumerate(ids):
        durations[i] = tone(corpus / "wavs" / f"{i}.wav", 22050, 0.5 + 0.1 * n, 150 + 30 * n)
        lines.append(f'{i}|Printing, in the "only sense" {n}|Printing, in the only sense {n}')
    (corpus / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"root": corpus.parent, "corpus": corpus, "metadata": corpus / "metadata.csv", "ids": ids,
            "durations": durations, "audio": [corpus / "wavs" / f"{i}.wav" for i in ids]}


MUSICNET_ROWS = [  # (composer, composition, ensemble) -> domain; three recordings each, plus two that map nowhere
    ("Bach", "Cello Suite 1", "Solo Cello", "bach_solo_cello"),
    ("Bach", "Prelude and Fugue in C major", "Solo Piano", "bach_solo_piano"),
    ("Beethoven", "Violin Sonata No 5", "Accompanied Violin", "beethoven_accompanied_violin"),
    ("Beethoven", "Piano Sonata No 8", "Solo Piano", "beethoven_solo_piano"),
    ("Beethoven", "String Quartet No 13", "String Quartet", "beethoven_string_quartet"),
    ("Cambini", "Wind Quintet No 1", "Wind Quintet", "cambini_wind_quintet"),
    ("Mozart", "String Quartet No 19 in C major", "String Quartet", None),
    ("Bach", "Violin Sonata No 4", "Violin and Harpsichord", None),
]


def make_musicnet(tmp: Path, nested: bool = False) -> dict:
    """``musicnet_metadata.csv`` + ``train_data/`` and ``test_data/`` (or, ``nested``, the archive's ``musicnet/``)."""
    root = tmp / "musicnet"
    data = root / "musicnet" if nested else root
    rows, expected = [], {}
    rid = 1727
    for composer, composition, ensemble, domain in MUSICNET_ROWS:
        for k in range(3):
            sub = "test_data" if k == 2 and rid % 2 else "train_data"
            d = tone(data / sub / f"{rid}.wav", 44100, 0.4 + 0.1 * k, 110 * (1 + k))
            rows.append({"id": rid, "composer": composer, "composition": composition, "movement": f"{k + 1}. Allegro",
                         "ensemble": ensemble, "source": "European Archive", "transcriber": "www.jsbach.net",
                         "catalog_name": f"OP{rid}", "seconds": round(d)})
            if domain:
                expected[str(rid)] = (domain, d)
            rid += 1
    with open(root / "musicnet_metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    audio = sorted(p for p in data.glob("*_data/*.wav") if p.stem in expected)  # the recordings the recipe uses
    return {"root": root, "metadata": root / "musicnet_metadata.csv", "expected": expected, "audio": audio}


MAESTRO_ROWS = [  # composer, title, split, year, sample rate
    ("Frédéric Chopin", "Ballade No. 1 in G Minor, Op. 23", "train", 2018, 48000),
    ("Franz Liszt", "Transcendental Etude No. 4", "train", 2018, 48000),
    ("Johann Sebastian Bach", "Prelude and Fugue in D Major, WTC I", "train", 2009, 44100),
    ("Ludwig van Beethoven", "Sonata No. 23 in F Minor, Op. 57", "validation", 2009, 44100),
    ("Franz Schubert", "Impromptu Op. 90 No. 4", "validation", 2018, 48000),
    ("Claude Debussy", "Estampes", "test", 2009, 44100),
]
MAESTRO_COLUMNS = ["canonical_composer", "canonical_title", "split", "year", "midi_filename", "audio_filename",
                   "duration"]


def make_maestro(tmp: Path, fmt: str = "csv") -> dict:
    corpus = tmp / "maestro" / "maestro-v3.0.0"
    rows = []
    for n, (composer, title, split, year, sr) in enumerate(MAESTRO_ROWS):
        name = f"MIDI-Unprocessed_R1_D1-1-8_mid--AUDIO-from_mp3_0{n}_R1_{year}_wav--{n}"
        d = tone(corpus / str(year) / f"{name}.wav", sr, 0.5 + 0.2 * n, 220 + 20 * n, channels=2)
        rows.append(dict(zip(MAESTRO_COLUMNS, [composer, title, split, year, f"{year}/{name}.midi",
                                               f"{year}/{name}.wav", d])))
    if fmt == "csv":
        meta = corpus / "maestro-v3.0.0.csv"
        with open(meta, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=MAESTRO_COLUMNS)
            w.writeheader()
            w.writerows(rows)
    elif fmt == "json-v3":  # column-oriented, as maestro-v3.0.0.json
        meta = corpus / "maestro-v3.0.0.json"
        meta.write_text(json.dumps({c: {str(i): r[c] for i, r in enumerate(rows)} for c in MAESTRO_COLUMNS}))
    else:  # a list of rows, as maestro-v2.0.0.json
        corpus = corpus.rename(corpus.with_name("maestro-v2.0.0"))
        meta = corpus / "maestro-v2.0.0.json"
        meta.write_text(json.dumps(rows))
    return {"root": corpus.parent, "corpus": corpus, "metadata": meta, "rows": rows,
            "audio": [corpus / r["audio_filename"] for r in rows]}


BUILDERS = {
    "ljspeech": (make_ljspeech, lambda root, out, **kw: ljspeech.build(
        ljspeech.LJSpeechConfig(root=root, out=out, workers=1, **kw), progress=False)),
    "musicnet": (make_musicnet, lambda root, out, **kw: musicnet.build(
        musicnet.MusicNetConfig(root=root, out=out, workers=1, **kw), progress=False)),
    "maestro": (make_maestro, lambda root, out, **kw: maestro.build(
        maestro.MaestroConfig(root=root, out=out, workers=1, **kw), progress=False)),
}


# ------------------------------------------------------------------------------------------------- LJSpeech

def test_ljspeech_cli(tmp_path):
    c = make_ljspeech(tmp_path)
    out = tmp_path / "data" / "lj"
    r = recipe("ljspeech", "--root", c["root"], "--out", out, "--workers", "1")  # the folder *holding* LJSpeech-1.1
    assert r.returncode == 0, r.stderr
    assert "dataset written to" in r.stdout
    rows = read_manifest(out)
    assert [e.piece for e in rows] == c["ids"]
    assert {e.domain for e in rows} == {"speech"}
    expected = assign_splits(c["ids"], 0.05, 0.05)
    assert {e.piece: e.split for e in rows} == expected
    assert sorted({e.split for e in rows}) == ["test", "train", "valid"]
    assert all(e.license == "public domain (LJSpeech)" and "LJSpeech" in e.source for e in rows)
    assert all(e.path == f"audio/speech/{e.piece}.wav" for e in rows)
    for e in rows:
        assert abs(e.duration - c["durations"][e.piece]) < 1e-3
    check_audio(out, rows)


def test_ljspeech_max_files_and_bad_metadata_line(tmp_path):
    c = make_ljspeech(tmp_path)
    rows = read_manifest(BUILDERS["ljspeech"][1](c["corpus"], tmp_path / "a", max_files=2))
    assert [e.piece for e in rows] == c["ids"][:2]
    c["metadata"].write_text(c["metadata"].read_text() + "this line has no separator\n")
    with pytest.raises(DatasetError, match=r"metadata.csv line 7 is not 'id\|text\|normalized text'"):
        BUILDERS["ljspeech"][1](c["root"], tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_download_fails_fast_when_the_host_is_unreachable(tmp_path):
    t0 = time.time()
    with pytest.raises(DatasetError, match="cannot reach 127.0.0.1"):
        ljspeech.build(ljspeech.LJSpeechConfig(root=tmp_path / "lj", out=tmp_path / "out", download=True,
                                               url="http://127.0.0.1:9/LJSpeech-1.1.tar.bz2"), progress=False)
    assert time.time() - t0 < 5
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------- MusicNet

def test_musicnet_cli_all_domains(tmp_path):
    c = make_musicnet(tmp_path)
    out = tmp_path / "data" / "musicnet"
    r = recipe("musicnet", "--root", c["root"], "--out", out, "--workers", "2")
    assert r.returncode == 0, r.stderr
    rows = read_manifest(out)
    assert {e.piece.removeprefix("musicnet/"): e.domain for e in rows} == {k: v[0] for k, v in c["expected"].items()}
    assert sorted({e.domain for e in rows}) == sorted(musicnet.DOMAINS)
    for d in musicnet.DOMAINS:  # three recordings per domain: one each for train, valid and test
        assert sorted(e.split for e in rows if e.domain == d) == ["test", "train", "valid"]
    for e in rows:
        rid = e.piece.removeprefix("musicnet/")
        assert e.path == f"audio/{e.domain}/{rid}.wav"
        assert abs(e.duration - c["expected"][rid][1]) < 1e-3
        assert e.source.startswith(f"MusicNet {rid}: ") and "(European Archive)" in e.source
        assert "MusicNet" in e.license
    check_audio(out, rows)


def test_musicnet_chosen_domains_archive_layout(tmp_path):
    c = make_musicnet(tmp_path, nested=True)  # metadata beside musicnet/{train,test}_data, as downloaded
    out = BUILDERS["musicnet"][1](c["root"], tmp_path / "out", domains=("bach_solo_cello", "cambini_wind_quintet"),
                                  max_per_domain=2)
    rows = read_manifest(out)
    assert sorted(e.domain for e in rows) == ["bach_solo_cello"] * 2 + ["cambini_wind_quintet"] * 2
    with pytest.raises(DatasetError, match="unknown MusicNet domains \\['mozart'\\]"):
        BUILDERS["musicnet"][1](c["root"], tmp_path / "o2", domains=("mozart",))


def test_musicnet_metadata_without_a_domain(tmp_path):
    c = make_musicnet(tmp_path)
    lines = [ln for ln in c["metadata"].read_text().splitlines() if "Cambini" not in ln]
    c["metadata"].write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"no recordings for domains \['cambini_wind_quintet'\]"):
        BUILDERS["musicnet"][1](c["root"], tmp_path / "out")


# -------------------------------------------------------------------------------------------------- MAESTRO

def test_maestro_cli(tmp_path):
    c = make_maestro(tmp_path)
    out = tmp_path / "data" / "maestro"
    r = recipe("maestro", "--root", c["root"], "--out", out, "--workers", "1")
    assert r.returncode == 0, r.stderr
    rows = read_manifest(out)
    assert len(rows) == len(MAESTRO_ROWS)
    assert {e.domain for e in rows} == {"piano"}
    by_path = {e.path: e for e in rows}
    for src in c["rows"]:
        e = by_path[f"audio/piano/{src['audio_filename']}"]
        assert e.split == {"train": "train", "validation": "valid", "test": "test"}[src["split"]]
        assert abs(e.duration - src["duration"]) < 1e-3
        assert e.piece == f"{src['canonical_composer']} - {src['canonical_title']}"
        assert e.source.startswith("MAESTRO v3.0.0") and e.license == "CC BY-NC-SA 4.0 (MAESTRO)"
    check_audio(out, rows)


@pytest.mark.parametrize("fmt", ["json-v3", "json-v2"])
def test_maestro_json_metadata(tmp_path, fmt):
    c = make_maestro(tmp_path, fmt)
    rows = read_manifest(BUILDERS["maestro"][1](c["corpus"], tmp_path / "out"))
    assert sorted(e.split for e in rows) == ["test", "train", "train", "train", "valid", "valid"]


def test_maestro_max_files_and_hours(tmp_path):
    c = make_maestro(tmp_path)
    rows = read_manifest(BUILDERS["maestro"][1](c["root"], tmp_path / "a", max_files=3))
    assert sorted(e.split for e in rows) == ["test", "train", "valid"]  # a small subset keeps every split
    cap = 2.5 / 3600
    rows = read_manifest(BUILDERS["maestro"][1](c["root"], tmp_path / "b", max_hours=cap))
    assert 0 < sum(e.duration for e in rows) <= 2.5
    assert len(rows) < len(MAESTRO_ROWS)
    with pytest.raises(DatasetError, match="no MAESTRO file fits"):
        BUILDERS["maestro"][1](c["root"], tmp_path / "c", max_hours=0.1 / 3600)


# ------------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("name", list(BUILDERS))
def test_missing_folder(tmp_path, name):
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match=re.escape(f"{tmp_path / 'nowhere'} does not exist")):
        BUILDERS[name][1](tmp_path / "nowhere", out)
    assert not out.exists() and leftovers(out) == []


WRONG_LAYOUT = {  # recipe -> (how to break the corpus, what the error says)
    "ljspeech": (lambda c: c["metadata"].unlink(), "has no metadata.csv"),
    "musicnet": (lambda c: c["metadata"].unlink(), "musicnet_metadata.csv not found"),
    "maestro": (lambda c: c["metadata"].unlink(), "has no MAESTRO metadata"),
}
def _flatten_wavs(c):  # LJSpeech clips beside metadata.csv instead of in wavs/
    for p in c["audio"]:
        p.rename(c["corpus"] / p.name)
    (c["corpus"] / "wavs").rmdir()


def _flatten_data(c):  # MusicNet recordings beside the metadata instead of in train_data/ and test_data/
    for p in c["root"].glob("*_data/*.wav"):
        p.rename(c["root"] / p.name)
    for d in ("train_data", "test_data"):
        (c["root"] / d).rmdir()


WRONG_LAYOUT_2 = {
    "ljspeech": (_flatten_wavs, "no wavs/ folder"),
    "musicnet": (_flatten_data, "has no train_data/ or test_data/"),
    "maestro": (lambda c: c["metadata"].write_text("split,file\ntrain,a.wav\n"), r"lacks the columns \['audio_filename'\]"),
}
MISSING_AUDIO = {"ljspeech": 3, "musicnet": 5, "maestro": 2}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_wrong_layout(tmp_path, name):
    for i, (breaks, message) in enumerate((WRONG_LAYOUT[name], WRONG_LAYOUT_2[name])):
        c = BUILDERS[name][0](tmp_path / str(i))
        breaks(c)
        out = tmp_path / f"out{i}"
        with pytest.raises(DatasetError, match=message):
            BUILDERS[name][1](c["root"], out)
        assert not out.exists() and leftovers(out) == []


@pytest.mark.parametrize("name", list(BUILDERS))
def test_missing_audio_file(tmp_path, name):
    c = BUILDERS[name][0](tmp_path)
    gone = c["audio"][MISSING_AUDIO[name]]
    gone.unlink()
    with pytest.raises(DatasetError, match=f"1 audio file\\(s\\) named in the metadata are missing .*{gone.name}"):
        BUILDERS[name][1](c["root"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", list(BUILDERS))
def test_corrupt_audio_keeps_the_old_dataset(tmp_path, name):
    c = BUILDERS[name][0](tmp_path)
    out = tmp_path / "data" / name
    BUILDERS[name][1](c["root"], out)  # a good dataset already in place
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = c["audio"][-1]
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEthis is not audio at all")
    with pytest.raises(DatasetError, match=f"cannot use .*{bad.name}.*not a readable audio file"):
        BUILDERS[name][1](c["root"], out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before and leftovers(out) == []
    # --skip-unreadable builds the rest and says what it left out
    rows = read_manifest(BUILDERS[name][1](c["root"], tmp_path / "skip", skip_unreadable=True))
    assert len(rows) == len(read_manifest(out)) - 1
    assert not any(Path(e.path).stem == bad.stem for e in rows)


def test_corrupt_audio_cli(tmp_path):
    c = make_ljspeech(tmp_path)
    c["audio"][2].write_bytes(b"\x00" * 100)
    out = tmp_path / "out"
    r = recipe("ljspeech", "--root", c["corpus"], "--out", out, "--workers", "1")
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]  # after the progress bar
    assert last.startswith("error: cannot use ") and "LJ001-0003.wav" in last
    assert "Traceback" not in r.stderr
    assert not out.exists() and leftovers(out) == []


def test_out_may_not_replace_the_corpus(tmp_path):
    c = make_ljspeech(tmp_path)
    for out in (c["corpus"], c["root"]):
        with pytest.raises(DatasetError, match="would replace the input folder"):
            BUILDERS["ljspeech"][1](c["corpus"], out)
    assert (c["metadata"]).is_file() and all(p.is_file() for p in c["audio"])
