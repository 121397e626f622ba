"""LJSpeech-1.1 (13,100 clips of one English speaker, ~24 h, public domain) as a "speech" domain: the MelGAN
paper's own vocoder corpus.

Expects the corpus as its archive extracts (https://keithito.com/LJ-Speech-Dataset/)::

    LJSpeech-1.1/metadata.csv     id|transcription|normalized transcription, one clip per line, no header
    LJSpeech-1.1/wavs/<id>.wav    22.05 kHz mono 16-bit

``--root`` may name ``LJSpeech-1.1`` or the folder holding it. Splits are by clip id (stable hash).

    python -m data_recipes.ljspeech --root ~/data/LJSpeech-1.1 --out data/ljspeech
    python -m data_recipes.ljspeech --root ~/data --out data/ljspeech --download   # fetch 2.6 GB first

Nothing is downloaded without ``--download``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from studio.data import Entry, write_manifest
from studio.errors import DatasetError

from ._common import assign_splits, finalize_dataset, staging_dir
from ._corpus import Job, check_out, convert_all, download, find_corpus, missing_files, run

URL = "https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2"
DOMAIN = "speech"
SOURCE = "LJSpeech-1.1 (Keith Ito, LibriVox recordings)"
LICENSE = "public domain (LJSpeech)"
METADATA = "metadata.csv"
HINT = f"download and extract {URL} (or pass --download)."


@dataclass
class LJSpeechConfig:
    root: Path
    out: Path
    sample_rate: int = 22050
    max_files: int | None = None
    valid_fraction: float = 0.05
    test_fraction: float = 0.05
    workers: int = 2
    skip_unreadable: bool = False
    download: bool = False
    url: str = URL


def locate(root: Path) -> Path:
    """The ``LJSpeech-1.1`` folder under ``root``, checked: it holds ``metadata.csv`` and ``wavs/``."""
    corpus = find_corpus(root, METADATA, ("LJSpeech-1.1",), "LJSpeech", HINT)
    if not (corpus / METADATA).is_file():
        raise DatasetError(f"{corpus} has no {METADATA}: expected the LJSpeech-1.1 layout "
                           f"(metadata.csv and wavs/<id>.wav); {HINT}")
    if not (corpus / "wavs").is_dir():
        raise DatasetError(f"{corpus} has {METADATA} but no wavs/ folder: expected wavs/<id>.wav beside it.")
    return corpus


def read_metadata(path: Path) -> list[str]:
    """Clip ids in file order; raises ``DatasetError`` for a line that is not ``id|text|normalized text``."""
    ids: list[str] = []
    seen: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path} is not UTF-8 text ({e}).") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split("|")
        clip = fields[0].strip()
        if len(fields) < 2 or not clip or "/" in clip:
            raise DatasetError(f"{path} line {n} is not 'id|text|normalized text': {line[:60]!r}.")
        if clip in seen:
            raise DatasetError(f"{path} line {n}: clip id {clip!r} appears twice.")
        seen.add(clip)
        ids.append(clip)
    if not ids:
        raise DatasetError(f"{path} lists no clips.")
    return ids


def build(cfg: LJSpeechConfig, progress: bool = True) -> Path:
    """Convert the corpus into ``cfg.out`` (staged; an error leaves no output and any old dataset untouched)."""
    root = Path(cfg.root).expanduser()
    if cfg.download and not (root / METADATA).is_file() and not (root / "LJSpeech-1.1" / METADATA).is_file():
        download(cfg.url, root)
    corpus = locate(root)
    check_out(cfg.out, corpus)
    ids = read_metadata(corpus / METADATA)[: cfg.max_files]
    jobs = [Job(corpus / "wavs" / f"{i}.wav", f"audio/{DOMAIN}/{i}.wav") for i in ids]
    missing_files(jobs, corpus)
    splits = assign_splits(ids, cfg.valid_fraction, cfg.test_fraction)
    with staging_dir(cfg.out) as stage:
        durations, skipped = convert_all(jobs, stage, cfg.sample_rate, cfg.workers, cfg.skip_unreadable, progress)
        entries = [Entry(j.rel, DOMAIN, splits[i], durations[j.rel], cfg.sample_rate, i, SOURCE, LICENSE)
                   for i, j in zip(ids, jobs) if j.rel in durations]
        if not entries:
            raise DatasetError(f"no usable clips in {corpus}.")
        write_manifest(stage, entries)
    finalize_dataset(cfg.out, entries, skipped)
    return cfg.out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="LJSpeech-1.1 folder (or the folder holding it)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--max-files", type=int, default=None, help="first N clips of metadata.csv")
    p.add_argument("--valid-fraction", type=float, default=0.05)
    p.add_argument("--test-fraction", type=float, default=0.05)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--skip-unreadable", action="store_true", help="leave out unreadable files instead of stopping")
    p.add_argument("--download", action="store_true", help=f"fetch {URL} into --root if the corpus is not there")
    p.add_argument("--url", default=URL, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    return run(build, LJSpeechConfig(root=a.root, out=a.out, sample_rate=a.sample_rate, max_files=a.max_files,
                                     valid_fraction=a.valid_fraction, test_fraction=a.test_fraction,
                                     workers=a.workers, skip_unreadable=a.skip_unreadable, download=a.download,
                                     url=a.url))


if __name__ == "__main__":
    sys.exit(main())
