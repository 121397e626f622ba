"""MusicNet (330 freely-licensed classical recordings, 44.1 kHz, ~34 h) as the six domains of the Universal Music
Translation Network (Mor et al., 2018).

Expects the corpus as distributed (https://zenodo.org/record/5120004): the archive ``musicnet.tar.gz`` extracts
to ``musicnet/{train_data,test_data}/<id>.wav`` (plus ``*_labels``, unused here), and ``musicnet_metadata.csv``
is a separate download. ``--root`` may hold the metadata and the two data folders, or the metadata and a
``musicnet/`` folder with them; ``--metadata`` names the CSV if it lives elsewhere.

``musicnet_metadata.csv`` has one row per recording: ``id, composer, composition, movement, ensemble, source,
transcriber, catalog_name, seconds``. Composers are surnames ("Bach", "Beethoven", "Cambini", ...) and ensembles
are MusicNet's own labels ("Solo Piano", "Solo Cello", "String Quartet", "Accompanied Violin", "Wind Quintet",
"Violin and Harpsichord", "Piano Trio", ...). Domains (composer + ensemble, compared case-insensitively):

    ============================  ===========  =====================================================
    domain                        composer     ensemble
    ============================  ===========  =====================================================
    bach_solo_cello               Bach         Solo Cello           (cello suites)
    bach_solo_piano               Bach         Solo Piano           (Well-Tempered Clavier on piano)
    beethoven_accompanied_violin  Beethoven    Accompanied Violin   (violin sonatas; "Violin and Piano"
                                               and "Violin and Harpsichord" also accepted - in the real
                                               metadata the latter is Bach's BWV 1014-1019 only)
    beethoven_solo_piano          Beethoven    Solo Piano           (piano sonatas)
    beethoven_string_quartet      Beethoven    String Quartet
    cambini_wind_quintet          Cambini      Wind Quintet
    ============================  ===========  =====================================================

MusicNet's own train/test folders are ignored: splits are made per domain by a stable hash of the recording id
(so every domain gets valid and test recordings). Each recording keeps its MusicNet id in ``piece``.

    python -m data_recipes.musicnet --root ~/data/musicnet --out data/musicnet
    python -m data_recipes.musicnet --root ~/data/musicnet --out data/umt2 --domains bach_solo_cello beethoven_solo_piano

Nothing is downloaded without ``--download``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path

from studio.data import Entry, write_manifest
from studio.errors import DatasetError

from ._common import assign_splits, finalize_dataset, staging_dir
from ._corpus import Job, check_out, convert_all, download, find_corpus, missing_files, run

URLS = ("https://zenodo.org/record/5120004/files/musicnet.tar.gz",
        "https://zenodo.org/record/5120004/files/musicnet_metadata.csv")
METADATA = "musicnet_metadata.csv"
DATA_DIRS = ("train_data", "test_data")
LICENSE = "MusicNet: freely-licensed recordings (see source); labels CC BY 4.0"
HINT = f"download {URLS[0]} and {URLS[1]} and extract the archive beside the CSV (or pass --download)."

# domain -> (composer, accepted ensembles), all lower case
DOMAINS: dict[str, tuple[str, tuple[str, ...]]] = {
    "bach_solo_cello": ("bach", ("solo cello",)),
    "bach_solo_piano": ("bach", ("solo piano",)),
    "beethoven_accompanied_violin": ("beethoven", ("accompanied violin", "violin and piano", "violin and harpsichord")),
    "beethoven_solo_piano": ("beethoven", ("solo piano",)),
    "beethoven_string_quartet": ("beethoven", ("string quartet",)),
    "cambini_wind_quintet": ("cambini", ("wind quintet",)),
}
REQUIRED_COLUMNS = ("id", "composer", "ensemble")


@dataclass
class MusicNetConfig:
    root: Path
    out: Path
    domains: tuple[str, ...] = field(default=tuple(DOMAINS))
    metadata: Path | None = None  # default: <root>/musicnet_metadata.csv
    sample_rate: int = 22050
    max_per_domain: int | None = None
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    workers: int = 2
    skip_unreadable: bool = False
    download: bool = False


def domain_of(composer: str, ensemble: str) -> str | None:
    c, e = composer.strip().lower(), " ".join(ensemble.strip().lower().split())
    for name, (comp, ensembles) in DOMAINS.items():
        if c == comp and e in ensembles:
            return name
    return None


def locate(cfg: MusicNetConfig) -> tuple[Path, Path]:
    """``(metadata csv, folder holding train_data/ and test_data/)``, checked."""
    root = find_corpus(cfg.root, METADATA, ("musicnet",), "MusicNet", HINT)
    meta = Path(cfg.metadata).expanduser() if cfg.metadata else root / METADATA
    if not meta.is_file():
        raise DatasetError(f"MusicNet metadata {meta} not found: expected {METADATA} in {root} "
                           f"(or pass --metadata FILE); {HINT}")
    for data in (root, root / "musicnet", meta.parent, meta.parent / "musicnet"):
        if any((data / d).is_dir() for d in DATA_DIRS):
            return meta, data
    raise DatasetError(f"{root} has no train_data/ or test_data/ folder (nor musicnet/train_data/): expected the "
                       f"MusicNet layout, <id>.wav files in train_data/ and test_data/; {HINT}")


def read_metadata(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{path} lacks the columns {missing}; expected MusicNet's metadata with "
                                   "id, composer, composition, movement, ensemble, source, ..., seconds.")
            rows = list(reader)
    except (csv.Error, UnicodeDecodeError) as e:
        raise DatasetError(f"{path} is not a readable CSV file ({e}).") from None
    for n, r in enumerate(rows, 2):
        if not (r.get("id") or "").strip().isdigit():
            raise DatasetError(f"{path} line {n}: recording id {r.get('id')!r} is not a number.")
    return rows


def build(cfg: MusicNetConfig, progress: bool = True) -> Path:
    """Convert the chosen domains into ``cfg.out`` (staged; an error leaves no output and any old dataset as is)."""
    unknown = set(cfg.domains) - set(DOMAINS)
    if unknown or not cfg.domains:
        raise DatasetError(f"unknown MusicNet domains {sorted(unknown)}; accepted: {', '.join(DOMAINS)}.")
    root = Path(cfg.root).expanduser()
    if cfg.download and not (root / METADATA).is_file():
        for url in URLS:
            download(url, root)
    meta, data = locate(cfg)
    check_out(cfg.out, data, meta.parent)
    by_domain: dict[str, list[dict]] = {d: [] for d in cfg.domains}
    for r in read_metadata(meta):
        d = domain_of(r.get("composer") or "", r.get("ensemble") or "")
        if d in by_domain:
            by_domain[d].append(r)
    empty = [d for d, rows in by_domain.items() if not rows]
    if empty:
        raise DatasetError(f"{meta} has no recordings for domains {empty} (composer/ensemble as in this recipe's "
                           "docstring); is it MusicNet's metadata?")
    jobs, rows_of, splits = [], {}, {}
    for d, rows in by_domain.items():
        rows = sorted(rows, key=lambda r: int(r["id"]))[: cfg.max_per_domain]
        splits.update(assign_splits([r["id"].strip() for r in rows], cfg.valid_fraction, cfg.test_fraction))
        for r in rows:
            rid = r["id"].strip()
            src = next((data / sub / f"{rid}.wav" for sub in DATA_DIRS if (data / sub / f"{rid}.wav").exists()),
                       data / DATA_DIRS[0] / f"{rid}.wav")
            job = Job(src, f"audio/{d}/{rid}.wav")
            jobs.append(job)
            rows_of[job.rel] = (d, r)
    missing_files(jobs, data)
    with staging_dir(cfg.out) as stage:
        durations, skipped = convert_all(jobs, stage, cfg.sample_rate, cfg.workers, cfg.skip_unreadable, progress)
        entries = []
        for j in jobs:
            if j.rel not in durations:
                continue
            d, r = rows_of[j.rel]
            rid = r["id"].strip()
            what = ", ".join(x.strip() for x in (r.get("composer"), r.get("composition"), r.get("movement")) if x)
            origin = f" ({r['source'].strip()})" if (r.get("source") or "").strip() else ""
            entries.append(Entry(j.rel, d, splits[rid], durations[j.rel], cfg.sample_rate, f"musicnet/{rid}",
                                 f"MusicNet {rid}: {what}{origin}", LICENSE))
        if not entries:
            raise DatasetError(f"no usable recordings in {data}.")
        write_manifest(stage, entries)
    finalize_dataset(cfg.out, entries, skipped)
    return cfg.out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="folder with musicnet_metadata.csv and the data folders")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--domains", nargs="+", default=list(DOMAINS), help=", ".join(DOMAINS))
    p.add_argument("--metadata", type=Path, default=None, help=f"{METADATA} if not in --root")
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--max-per-domain", type=int, default=None, help="first N recordings (by id) of each domain")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--skip-unreadable", action="store_true", help="leave out unreadable files instead of stopping")
    p.add_argument("--download", action="store_true",
                   help="fetch MusicNet (archive and metadata) into --root if it is not there")
    a = p.parse_args(argv)
    return run(build, MusicNetConfig(root=a.root, out=a.out, domains=tuple(a.domains), metadata=a.metadata,
                                     sample_rate=a.sample_rate, max_per_domain=a.max_per_domain,
                                     valid_fraction=a.valid_fraction, test_fraction=a.test_fraction,
                                     workers=a.workers, skip_unreadable=a.skip_unreadable, download=a.download))


if __name__ == "__main__":
    sys.exit(main())
