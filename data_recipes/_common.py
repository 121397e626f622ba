"""What every recipe shares: deterministic splits by piece, staged writing, and the closing summary."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from pathlib import Path

from studio.data import Entry


def assign_splits(pieces: list[str], valid_fraction: float = 0.1, test_fraction: float = 0.1) -> dict[str, str]:
    """piece -> split, by a hash of the piece id (stable whatever the order or number of other pieces).

    With 3 or more pieces, valid and test get at least one piece each; all renderings of a piece share a split.
    """
    unique = sorted(set(pieces), key=lambda p: hashlib.sha1(p.encode()).hexdigest())
    n = len(unique)
    n_test = max(1, round(n * test_fraction)) if n >= 3 else 0
    n_valid = max(1, round(n * valid_fraction)) if n >= 3 else 0
    out = {}
    for i, p in enumerate(unique):
        out[p] = "test" if i < n_test else "valid" if i < n_test + n_valid else "train"
    return out


@contextlib.contextmanager
def staging_dir(out: Path):
    """A temp folder beside ``out``; on success it replaces ``out`` whole, on failure it is removed.

    So an interrupted or failed recipe never leaves a half-written dataset (and never damages an old one).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{stage.name[-8:]}")
        out.rename(old)
    stage.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def finalize_dataset(out: Path, entries: list[Entry], skipped: list[str] | None = None) -> None:
    """Print minutes per split and domain, and what was skipped."""
    table: dict[tuple[str, str], float] = {}
    for e in entries:
        table[(e.split, e.domain)] = table.get((e.split, e.domain), 0.0) + e.duration / 60
    print(f"dataset written to {out} ({len(entries)} files, {sum(table.values()):.1f} min)")
    for (split, domain), minutes in sorted(table.items()):
        print(f"  {split:6s} {domain:28s} {minutes:7.1f} min")
    for s in skipped or []:
        print(f"  skipped {s}")
