"""MAESTRO v2/v3 (~200 h of virtuoso piano from the International Piano-e-Competition, CC BY-NC-SA 4.0) as a
"piano" domain.

Expects the corpus as its archive extracts (https://magenta.tensorflow.org/datasets/maestro)::

    maestro-v3.0.0/maestro-v3.0.0.csv   (or .json) canonical_composer, canonical_title, split, year,
                                        midi_filename, audio_filename, duration
    maestro-v3.0.0/<year>/<name>.wav    44.1 or 48 kHz stereo

``--root`` may name the ``maestro-vX.Y.Z`` folder or the folder holding it. MAESTRO's own split column is kept
(train/validation/test -> train/valid/test): its splits never share a composition. ``--max-files`` and
``--max-hours`` take a deterministic subset that keeps every split represented.

    python -m data_recipes.maestro --root ~/data/maestro-v3.0.0 --out data/maestro --max-hours 20

Nothing is downloaded without ``--download`` (the v3 archive is about 100 GB).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from studio.audio import audio_info
from studio.data import Entry, write_manifest
from studio.errors import DatasetError, UnsupportedAudio

from ._common import finalize_dataset, staging_dir
from ._corpus import Job, check_out, convert_all, download, find_corpus, missing_files, run

URL = "https://storage.googleapis.com/magentadata/datasets/maestro/v3.0.0/maestro-v3.0.0.zip"
DOMAIN = "piano"
LICENSE = "CC BY-NC-SA 4.0 (MAESTRO)"
SPLITS = {"train": "train", "validation": "valid", "test": "test"}
REQUIRED_COLUMNS = ("split", "audio_filename")
HINT = f"download and extract {URL} (or pass --download)."
_METADATA = re.compile(r"^maestro-v(\d+)\.(\d+)\.(\d+)\.(csv|json)$")


@dataclass
class MaestroConfig:
    root: Path
    out: Path
    sample_rate: int = 22050
    max_files: int | None = None
    max_hours: float | None = None
    workers: int = 2
    skip_unreadable: bool = False
    download: bool = False


def _metadata_files(folder: Path) -> list[Path]:
    """``maestro-v*.csv/json`` in ``folder``, newest version first, CSV before JSON."""
    found = [(m, p) for p in folder.glob("maestro-v*") if (m := _METADATA.match(p.name)) and p.is_file()]
    found.sort(key=lambda mp: (tuple(-int(x) for x in mp[0].groups()[:3]), mp[0].group(4) != "csv"))
    return [p for _, p in found]


def locate(root: Path) -> tuple[Path, Path]:
    """``(metadata file, corpus folder)``: the folder holding ``maestro-v*.csv`` (or ``.json``), checked."""
    root = find_corpus(root, ".", (), "MAESTRO", HINT)  # checks that root is an existing folder
    candidates = [root, *sorted((p for p in root.glob("maestro-v*") if p.is_dir()), reverse=True)]
    for folder in candidates:
        meta = _metadata_files(folder)
        if meta:
            return meta[0], folder
    raise DatasetError(f"{root} has no MAESTRO metadata (maestro-v3.0.0.csv, maestro-v2.0.0.json, ...): expected the "
                       f"MAESTRO layout, the metadata file beside <year>/<file>.wav folders; {HINT}")


def read_metadata(path: Path) -> list[dict]:
    """Rows as dicts, from the CSV, the v3 JSON (``{column: {row: value}}``) or the v2 JSON (a list of rows)."""
    try:
        if path.suffix == ".csv":
            with open(path, newline="", encoding="utf-8-sig") as f:
                rows = list(csv.DictReader(f))
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):  # column-oriented: {"split": {"0": "train", ...}, ...}
                keys = list(next(iter(data.values()), {}) or {})
                rows = [{c: data[c].get(k) for c in data} for k in keys]
            elif isinstance(data, list):
                rows = [dict(r) for r in data]
            else:
                raise ValueError("neither a list of rows nor a table of columns")
    except (csv.Error, UnicodeDecodeError, ValueError, TypeError, AttributeError) as e:
        raise DatasetError(f"{path} is not readable MAESTRO metadata ({e}).") from None
    if not rows:
        raise DatasetError(f"{path} lists no recordings.")
    missing = [c for c in REQUIRED_COLUMNS if c not in rows[0]]
    if missing:
        raise DatasetError(f"{path} lacks the columns {missing}; expected canonical_composer, canonical_title, split, "
                           "year, midi_filename, audio_filename, duration.")
    for n, r in enumerate(rows):
        if r["split"] not in SPLITS:
            raise DatasetError(f"{path} row {n + 1}: unknown split {r['split']!r}; accepted: {', '.join(SPLITS)}.")
        if not r.get("audio_filename"):
            raise DatasetError(f"{path} row {n + 1} has no audio_filename.")
    return rows


def _hours(row: dict, corpus: Path) -> float:
    try:
        return float(row["duration"]) / 3600
    except (KeyError, TypeError, ValueError):
        try:
            info = audio_info(corpus / row["audio_filename"])
        except UnsupportedAudio as e:
            raise DatasetError(f"cannot use {corpus / row['audio_filename']}: {e}") from None
        return info.frames / info.samplerate / 3600


def select(rows: list[dict], corpus: Path, max_files: int | None, max_hours: float | None) -> list[dict]:
    """All rows, or a deterministic subset within the caps: one file of each split first, then a stable hash
    order (so a small subset still has train, valid and test files, in about MAESTRO's proportions)."""
    if max_files is None and max_hours is None:
        return rows
    order = sorted(rows, key=lambda r: hashlib.sha1(r["audio_filename"].encode()).hexdigest())
    firsts = [next(r for r in order if r["split"] == s) for s in SPLITS if any(r["split"] == s for r in order)]
    first_ids = {id(r) for r in firsts}
    order = firsts + [r for r in order if id(r) not in first_ids]
    picked, hours = [], 0.0
    for r in order:
        if max_files is not None and len(picked) >= max_files:
            break
        h = _hours(r, corpus)
        if max_hours is not None and hours + h > max_hours:
            continue
        picked.append(r)
        hours += h
    if not picked:
        raise DatasetError(f"no MAESTRO file fits in --max-hours {max_hours} (the shortest is longer).")
    return picked


def build(cfg: MaestroConfig, progress: bool = True) -> Path:
    """Convert MAESTRO into ``cfg.out`` (staged; an error leaves no output and any old dataset untouched)."""
    root = Path(cfg.root).expanduser()
    if cfg.download and not _has_metadata(root):
        download(URL, root)
    meta, corpus = locate(root)
    check_out(cfg.out, corpus)
    rows = select(read_metadata(meta), corpus, cfg.max_files, cfg.max_hours)
    version = meta.stem.removeprefix("maestro-")
    jobs = []
    for r in rows:
        rel = Path(r["audio_filename"])
        if rel.is_absolute() or ".." in rel.parts:
            raise DatasetError(f"{meta}: audio_filename {r['audio_filename']!r} is not a path inside the corpus.")
        jobs.append(Job(corpus / rel, str(Path("audio") / DOMAIN / rel.with_suffix(".wav"))))
    missing_files(jobs, corpus)
    with staging_dir(cfg.out) as stage:
        durations, skipped = convert_all(jobs, stage, cfg.sample_rate, cfg.workers, cfg.skip_unreadable, progress)
        entries = []
        for r, j in zip(rows, jobs):
            if j.rel not in durations:
                continue
            composer, title = (r.get("canonical_composer") or "").strip(), (r.get("canonical_title") or "").strip()
            piece = f"{composer} - {title}" if composer or title else r["audio_filename"]
            year = f" {r['year']}" if r.get("year") else ""
            entries.append(Entry(j.rel, DOMAIN, SPLITS[r["split"]], durations[j.rel], cfg.sample_rate, piece,
                                 f"MAESTRO {version}{year}: {piece}", LICENSE))
        if not entries:
            raise DatasetError(f"no usable recordings in {corpus}.")
        write_manifest(stage, entries)
    finalize_dataset(cfg.out, entries, skipped)
    return cfg.out


def _has_metadata(root: Path) -> bool:
    try:
        locate(root)
        return True
    except DatasetError:
        return False


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="maestro-vX.Y.Z folder (or the folder holding it)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--max-files", type=int, default=None)
    p.add_argument("--max-hours", type=float, default=None, help="cap on the total duration")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--skip-unreadable", action="store_true", help="leave out unreadable files instead of stopping")
    p.add_argument("--download", action="store_true", help=f"fetch {URL} into --root if the corpus is not there")
    a = p.parse_args(argv)
    return run(build, MaestroConfig(root=a.root, out=a.out, sample_rate=a.sample_rate, max_files=a.max_files,
                                    max_hours=a.max_hours, workers=a.workers, skip_unreadable=a.skip_unreadable,
                                    download=a.download))


if __name__ == "__main__":
    sys.exit(main())
