"""Stems as domains: split a folder of songs (mixtures) with Demucs and keep chosen stems as training domains,
e.g. the bass lines or the vocals of your own music.

Every audio file under ``--songs`` (any depth; wav, flac, ogg, mp3, aiff...) is separated into Demucs's sources
(drums, bass, other, vocals for ``htdemucs``); each chosen stem is written mono at ``--sample-rate`` as domain
``<prefix><stem>``. A stem quieter than ``--silence-db`` (RMS, dBFS) in a song is left out (an instrumental has
no vocals). Splits are made by song, so all stems of a song share one.

Needs the Demucs weights on disk (see ``studio/separation.py``: e.g. ``models/demucs/955717e8-8726e21a.th`` for
``htdemucs``); nothing is downloaded.

    python -m data_recipes.stems --songs ~/music --out data/bass --stems bass
    python -m data_recipes.stems --songs ~/music --out data/stems --stems bass vocals --domain-prefix stem_
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from studio.audio import audio_info, is_silent, load_audio, prepare_audio, save_audio
from studio.data import Entry, write_manifest
from studio.errors import ConfigMismatch, DatasetError, UnsupportedAudio

from ._common import assign_splits, finalize_dataset, staging_dir
from ._corpus import check_out, run

DEFAULT_STEMS = ("bass",)


@dataclass
class StemsConfig:
    songs: Path
    out: Path
    stems: tuple[str, ...] = DEFAULT_STEMS
    model: str = "htdemucs"
    repo: Path | None = None  # default: $STUDIO_DEMUCS_DIR or models/demucs
    domain_prefix: str = ""
    sample_rate: int = 22050
    silence_db: float = -50.0
    max_songs: int | None = None
    shifts: int = 1
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    device: str = "cpu"
    skip_unreadable: bool = False
    source: str = ""  # default: "Demucs <model> <stem> stem of <song>"
    license: str = "as the source recordings"


def list_songs(folder: Path) -> list[Path]:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"songs folder {folder} {'is a file' if folder.exists() else 'does not exist'}; "
                           "give a folder of audio files.")
    exts = {f".{e.lower()}" for e in sf.available_formats()} | {".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff"}
    songs = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not songs:
        raise DatasetError(f"no audio files in {folder}; accepted: {', '.join(sorted(exts))}.")
    return songs


def build(cfg: StemsConfig, progress: bool = True) -> Path:
    """Separate every song and write the chosen stems into ``cfg.out`` (staged: an error leaves no output)."""
    from tqdm import tqdm

    from studio.separation import load_demucs, separate

    songs_dir = Path(cfg.songs).expanduser()
    songs = list_songs(songs_dir)[: cfg.max_songs]
    check_out(cfg.out, songs_dir)
    if Path(cfg.out).expanduser().resolve().is_relative_to(songs_dir.resolve()):
        raise DatasetError(f"--out {cfg.out} is inside the songs folder {songs_dir}; a later run would read it back.")
    skipped: list[str] = []
    for song in list(songs):  # headers first: a corrupt file stops the run before any slow separation
        try:
            audio_info(song)
        except UnsupportedAudio as e:
            if not cfg.skip_unreadable:
                raise DatasetError(f"cannot use {song}: {e} Pass --skip-unreadable to leave such files out.") from None
            skipped.append(f"{song}: {e}")
            songs.remove(song)
    model = load_demucs(cfg.model, cfg.repo, cfg.device)
    unknown = [s for s in cfg.stems if s not in model.sources]
    if unknown or not cfg.stems:
        raise ConfigMismatch(f"Demucs model '{cfg.model}' has no stems {unknown}; accepted: {', '.join(model.sources)}.")
    pieces = {p: str(p.relative_to(songs_dir).with_suffix("")) for p in songs}
    if len(set(pieces.values())) < len(pieces):  # "a.wav" and "a.flac": keep the extension in the name
        pieces = {p: str(p.relative_to(songs_dir)) for p in songs}
    splits = assign_splits(list(pieces.values()), cfg.valid_fraction, cfg.test_fraction)
    entries: list[Entry] = []
    with staging_dir(cfg.out) as stage:
        for song in tqdm(songs, desc="separating", disable=not progress):
            piece = pieces[song]
            try:
                audio, sr = load_audio(song, mono=False, max_seconds=None, max_decoded_mb=None)
            except UnsupportedAudio as e:
                if not cfg.skip_unreadable:
                    raise DatasetError(f"cannot use {song}: {e} Pass --skip-unreadable to leave such files out.") from None
                skipped.append(f"{song}: {e}")
                continue
            parts = separate(audio, sr, model, cfg.stems, shifts=cfg.shifts, device=cfg.device)
            for stem, y in parts.items():
                y, _ = prepare_audio(y, sr, cfg.sample_rate, mono=True, min_samples=1)
                if is_silent(y, cfg.silence_db):
                    skipped.append(f"{piece}: '{stem}' is silent (below {cfg.silence_db:g} dBFS)")
                    continue
                domain = f"{cfg.domain_prefix}{stem}"
                rel = Path("audio") / domain / f"{piece.replace('/', '__')}.wav"
                save_audio(stage / rel, y, cfg.sample_rate)
                source = cfg.source or f"Demucs {cfg.model} '{stem}' stem of {song.relative_to(songs_dir)}"
                entries.append(Entry(str(rel), domain, splits[piece], round(len(y) / cfg.sample_rate, 4),
                                     cfg.sample_rate, piece, source, cfg.license))
        if not entries:
            raise DatasetError("no stem was kept: every chosen stem was silent or unreadable: " + "; ".join(skipped[:3]))
        write_manifest(stage, entries)
    finalize_dataset(cfg.out, entries, skipped)
    return cfg.out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--songs", type=Path, required=True, help="folder of mixtures (searched recursively)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--stems", nargs="+", default=list(DEFAULT_STEMS), help="e.g. bass vocals drums other")
    p.add_argument("--domain-prefix", default="", help="domain name = prefix + stem")
    p.add_argument("--model", default="htdemucs", help="Demucs model name")
    p.add_argument("--repo", type=Path, default=None, help="folder with the Demucs weights (default: "
                   "$STUDIO_DEMUCS_DIR or models/demucs)")
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--silence-db", type=float, default=-50.0, help="leave out stems quieter than this (RMS dBFS)")
    p.add_argument("--max-songs", type=int, default=None)
    p.add_argument("--shifts", type=int, default=1, help="Demucs time-shift averaging (more: better, slower)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--license", default="as the source recordings", help="licence column of the manifest")
    p.add_argument("--skip-unreadable", action="store_true", help="leave out unreadable files instead of stopping")
    a = p.parse_args(argv)
    return run(build, StemsConfig(songs=a.songs, out=a.out, stems=tuple(a.stems), model=a.model, repo=a.repo,
                                  domain_prefix=a.domain_prefix, sample_rate=a.sample_rate, silence_db=a.silence_db,
                                  max_songs=a.max_songs, shifts=a.shifts, device=a.device, license=a.license,
                                  skip_unreadable=a.skip_unreadable))


if __name__ == "__main__":
    sys.exit(main())
