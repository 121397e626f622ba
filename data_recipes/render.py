"""Offline multi-instrument dataset: scores from music21's bundled corpus (and your MIDI files) rendered with
FluidSynth and a General-MIDI SoundFont into several instruments from the *same* score.

Every piece is rendered once per instrument with identical notes and timing, cut to one common span, so the
instruments are parallel (same duration, same notes, different timbre). Splits are made by piece. The notes
played go to ``notes/<piece>.csv`` (``studio.notes``; not with ``--transpose``), for the notes translator.

    python -m data_recipes.render --out data/render            # the default dataset
    python -m data_recipes.render --out data/piano --instruments piano --max-pieces 60

Needs the ``fluidsynth`` program and a SoundFont (Debian: ``apt-get install fluidsynth fluid-soundfont-gm``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from studio.audio import save_audio
from studio.data import Entry, write_manifest
from studio.errors import DatasetError
from studio.notes import notes_path, write_notes, write_ranges

from ._common import assign_splits, finalize_dataset, staging_dir
from ._corpus import run

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"

# General-MIDI programs (0-based).
INSTRUMENTS = {
    "piano": 0, "guitar": 24, "violin": 40, "viola": 41, "cello": 42, "contrabass": 43, "trumpet": 56,
    "oboe": 68, "bassoon": 70, "clarinet": 71, "flute": 73, "organ": 19, "harp": 46, "marimba": 12,
}
DEFAULT_INSTRUMENTS = ("piano", "violin", "cello", "flute", "clarinet", "guitar")
SOURCE = "music21 corpus score, rendered with FluidSynth"
LICENSE = "public-domain score; FluidR3_GM SoundFont (MIT)"


@dataclass
class RenderConfig:
    out: Path
    instruments: tuple[str, ...] = DEFAULT_INSTRUMENTS
    sample_rate: int = 22050
    max_pieces: int = 24
    soundfont: str = DEFAULT_SOUNDFONT
    midi_dir: Path | None = None
    transpose: tuple[int, ...] = (0,)
    max_seconds: float = 90.0  # per piece, so one long score does not dominate
    target_db: float = -20.0  # RMS loudness of each file
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    workers: int = 2
    corpus_sources: tuple[str, ...] = field(default=("bach", "ryansMammoth"))


def _check_tools(cfg: RenderConfig) -> None:
    if shutil.which("fluidsynth") is None:
        raise DatasetError("the 'fluidsynth' program is not installed (Debian/Ubuntu: apt-get install fluidsynth).")
    if not Path(cfg.soundfont).is_file():
        raise DatasetError(f"SoundFont {cfg.soundfont} not found (Debian/Ubuntu: apt-get install fluid-soundfont-gm, "
                           "or pass --soundfont FILE.sf2).")
    unknown = set(cfg.instruments) - set(INSTRUMENTS)
    if unknown:
        raise DatasetError(f"unknown instruments {sorted(unknown)}; accepted: {', '.join(sorted(INSTRUMENTS))}.")


def list_pieces(cfg: RenderConfig) -> list[tuple[str, str]]:
    """``(piece_id, source)`` pairs: user MIDI files first, then corpus scores alternating between sources."""
    pieces: list[tuple[str, str]] = []
    if cfg.midi_dir is not None:
        if not Path(cfg.midi_dir).is_dir():
            raise DatasetError(f"MIDI folder {cfg.midi_dir} does not exist.")
        for p in sorted(Path(cfg.midi_dir).rglob("*.mid*")):
            pieces.append((f"midi/{p.stem}", str(p)))
    if len(pieces) < cfg.max_pieces:
        from music21 import corpus

        paths = sorted(corpus.getPaths(fileExtensions=("mxl", "xml", "abc", "krn")), key=str)
        per_source = [[p for p in paths if f"/{s}/" in str(p)] for s in cfg.corpus_sources]
        i = 0
        while len(pieces) < cfg.max_pieces and any(i < len(ps) for ps in per_source):
            for ps in per_source:
                if i < len(ps) and len(pieces) < cfg.max_pieces:
                    p = ps[i]
                    pieces.append((f"{p.parent.name}/{p.stem}", str(p)))
            i += 1
    return pieces[: cfg.max_pieces]


def _score(source: str, transpose: int):
    from music21 import converter, corpus, instrument, stream

    s = converter.parse(source) if source.lower().endswith((".mid", ".midi")) else corpus.parse(source)
    if isinstance(s, stream.Opus):
        s = s.scores[0]
    if transpose:
        s = s.transpose(transpose)
    for el in list(s.recurse().getElementsByClass(instrument.Instrument)):
        el.activeSite.remove(el)
    return s


def render_piece(piece: str, source: str, transpose: int, cfg: RenderConfig,
                 workdir: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Render one score on every instrument; returns instrument -> audio, all of one length (parallel), and the notes
    played (``studio.notes`` form, times in the renders)."""
    from music21 import instrument

    s = _score(source, transpose)
    seconds = min(float(s.seconds) if s.seconds == s.seconds else cfg.max_seconds, cfg.max_seconds) + 4.0  # + release
    audio = {}
    for name in cfg.instruments:
        score = s.__deepcopy__()
        for part in score.parts if score.parts else [score]:
            inst = instrument.Instrument()
            inst.midiProgram = INSTRUMENTS[name]
            part.insert(0, inst)
        mid = workdir / f"{name}.mid"
        score.write("midi", fp=str(mid))
        x = _fluidsynth(mid, cfg, seconds)
        if x is None:
            raise DatasetError(f"fluidsynth produced no audio for {piece} ({name}).")
        audio[name] = x
    audio, start = _make_parallel(audio, cfg)
    return audio, _midi_notes(mid, start / cfg.sample_rate, len(next(iter(audio.values()))) / cfg.sample_rate)


def _midi_notes(mid: Path, offset: float, length: float) -> np.ndarray:
    """The notes of a MIDI file as ``studio.notes`` rows, shifted by ``-offset`` s, those sounding in ``[0, length)``."""
    import pretty_midi

    rows = [[n.start - offset, n.end - offset, n.pitch, n.velocity / 127]
            for inst in pretty_midi.PrettyMIDI(str(mid)).instruments if not inst.is_drum for n in inst.notes]
    rows = sorted(r for r in rows if r[1] > 0 and r[0] < length)
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def _fluidsynth(mid: Path, cfg: RenderConfig, seconds: float) -> np.ndarray | None:
    """Render a MIDI file to mono float32, reading at most ``seconds`` from FluidSynth's raw stdout.

    Reading a bounded stream (instead of ``-F file.wav``) matters: some SoundFont samples loop forever after the
    last note-off, and FluidSynth then writes gigabytes.
    """
    cmd = ["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(cfg.sample_rate), "-T", "raw", "-O", "s16", "-F", "-",
           cfg.soundfont, str(mid)]
    n_bytes = int(seconds * cfg.sample_rate) * 4  # stereo s16
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        raw = proc.stdout.read(n_bytes)
    finally:
        proc.stdout.close()
        proc.kill()
        proc.wait()
    if len(raw) < 4:
        return None
    x = np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<i2").reshape(-1, 2).astype(np.float32) / 32768.0
    return x.mean(axis=1)


def _make_parallel(audio: dict[str, np.ndarray], cfg: RenderConfig) -> tuple[dict[str, np.ndarray], int]:
    """Cut every instrument to the same span (union of their non-silent parts), capped at ``max_seconds``; returns
    the cut audio and the span's first sample."""
    import librosa

    spans = [librosa.effects.trim(x, top_db=50)[1] for x in audio.values()]
    start = min(s[0] for s in spans)
    end = max(s[1] for s in spans)
    end = min(end, start + int(cfg.max_seconds * cfg.sample_rate))
    out = {}
    for name, x in audio.items():
        y = np.zeros(end - start, dtype=np.float32)
        seg = x[start:end]
        y[: len(seg)] = seg
        if end - start < len(x) - start and end < len(x):  # cut inside the music: fade out over 50 ms
            fade = min(len(y), int(0.05 * cfg.sample_rate))
            y[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
        rms = float(np.sqrt(np.mean(y**2)))
        if rms < 1e-4:
            raise DatasetError(f"rendering on {name} is silent")
        y *= 10 ** (cfg.target_db / 20) / rms
        peak = float(np.abs(y).max())
        if peak > 0.95:
            y *= 0.95 / peak
        out[name] = y
    return out, start


def _work(args) -> tuple[str, int, tuple[dict[str, np.ndarray], np.ndarray] | str]:
    piece, source, transpose, cfg = args
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return piece, transpose, render_piece(piece, source, transpose, cfg, Path(tmp))
        except DatasetError as e:
            return piece, transpose, str(e)
        except Exception as e:  # music21 raises many kinds on odd scores; skip the piece, say why
            return piece, transpose, f"{type(e).__name__}: {e}"


def build(cfg: RenderConfig, progress: bool = True) -> Path:
    """Render the dataset into ``cfg.out`` (staged in a temp folder, moved into place when complete)."""
    from tqdm import tqdm

    _check_tools(cfg)
    pieces = list_pieces(cfg)
    if not pieces:
        raise DatasetError("no pieces to render (empty MIDI folder and corpus sources).")
    splits = assign_splits([p for p, _ in pieces], cfg.valid_fraction, cfg.test_fraction)
    jobs = [(p, src, t, cfg) for p, src in pieces for t in cfg.transpose]
    entries: list[Entry] = []
    skipped = []
    with staging_dir(cfg.out) as stage, ProcessPoolExecutor(max(1, cfg.workers)) as pool:
        bar = tqdm(pool.map(_work, jobs), total=len(jobs), desc="rendering", disable=not progress)
        for piece, t, result in bar:
            if isinstance(result, str):
                skipped.append(f"{piece}: {result}")
                continue
            variant = piece if t == 0 else f"{piece}_t{t:+d}"
            result, played = result
            if cfg.transpose == (0,):  # notes are kept per piece: only when each piece is rendered once
                write_notes(notes_path(stage, piece), played)
            for name, y in result.items():
                rel = Path("audio") / name / f"{variant.replace('/', '__')}.wav"
                save_audio(stage / rel, y, cfg.sample_rate)
                entries.append(Entry(str(rel), name, splits[piece], round(len(y) / cfg.sample_rate, 4),
                                     cfg.sample_rate, piece, SOURCE, LICENSE))
        if not entries:
            raise DatasetError("every piece failed to render: " + "; ".join(skipped[:3]))
        write_manifest(stage, entries)
        if cfg.transpose == (0,):  # a General MIDI SoundFont plays every key: nothing is folded
            write_ranges(stage, {name: (0, 127) for name in cfg.instruments})
    finalize_dataset(cfg.out, entries, skipped)
    return cfg.out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--instruments", nargs="+", default=list(DEFAULT_INSTRUMENTS), help=", ".join(INSTRUMENTS))
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--max-pieces", type=int, default=24)
    p.add_argument("--max-seconds", type=float, default=90.0, help="cap per piece")
    p.add_argument("--soundfont", default=DEFAULT_SOUNDFONT)
    p.add_argument("--midi-dir", type=Path, default=None, help="also render your own .mid files")
    p.add_argument("--transpose", type=int, nargs="+", default=[0], help="semitone shifts, e.g. -2 0 2")
    p.add_argument("--sources", nargs="+", default=["bach", "ryansMammoth"], help="music21 corpus folders")
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args(argv)
    cfg = RenderConfig(out=a.out, instruments=tuple(a.instruments), sample_rate=a.sample_rate, max_pieces=a.max_pieces,
                       soundfont=a.soundfont, midi_dir=a.midi_dir, transpose=tuple(a.transpose),
                       max_seconds=a.max_seconds, workers=a.workers, corpus_sources=tuple(a.sources))
    return run(build, cfg)


if __name__ == "__main__":
    sys.exit(main())
