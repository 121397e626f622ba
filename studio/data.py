"""The dataset layout every recipe writes, and the one Dataset every model trains on.

Layout of a dataset folder::

    <root>/manifest.csv     one row per audio file (columns below)
    <root>/audio/...        the files, paths in the manifest relative to <root>

Sampling is a pure function of the sample index (``seed``, index -> file, offset), so a run resumed at step
``s`` sees exactly the batches an uninterrupted run would have seen, with any number of workers or ranks.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, asdict, fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .audio import AudioConfig, read_segment  # noqa: F401 (read_segment: also this module's, for training code)
from .errors import DatasetError
from .notes import (augment, fold, match_velocities, notes_path, piano_roll, read_notes, read_ranges,
                    transcribed_path, window)

MANIFEST = "manifest.csv"
SPLITS = ("train", "valid", "test")


@dataclass
class Entry:
    path: str  # relative to the dataset root
    domain: str  # instrument / domain name
    split: str  # train | valid | test
    duration: float  # seconds
    sample_rate: int
    piece: str = ""  # the score or recording it comes from (splits are made by piece)
    source: str = ""
    license: str = ""


COLUMNS = [f.name for f in fields(Entry)]


def write_manifest(root: str | os.PathLike, entries: list[Entry]) -> Path:
    """Write ``manifest.csv`` atomically (temp file + rename)."""
    root = Path(root)
    tmp = root / f".{MANIFEST}.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for e in entries:
            w.writerow(asdict(e))
    os.replace(tmp, root / MANIFEST)
    return root / MANIFEST


def read_manifest(root: str | os.PathLike, split: str | None = None, domains: list[str] | None = None) -> list[Entry]:
    """Rows of ``<root>/manifest.csv``, optionally filtered; raises ``DatasetError`` naming any problem."""
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist.")
    if not path.is_file():
        raise DatasetError(f"{root} has no {MANIFEST}; build a dataset with one of the recipes in data_recipes/.")
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = set(COLUMNS[:5]) - set(reader.fieldnames or [])
            if missing:
                raise DatasetError(f"{path} lacks the columns {sorted(missing)}.")
            rows = [
                Entry(**{k: r.get(k, "") for k in COLUMNS} | {"duration": float(r["duration"]), "sample_rate": int(r["sample_rate"])})
                for r in reader
            ]
    except (ValueError, csv.Error, UnicodeDecodeError) as e:
        raise DatasetError(f"{path} is not a valid manifest ({e}).") from None
    bad = [r.split for r in rows if r.split not in SPLITS]
    if bad:
        raise DatasetError(f"{path}: unknown split {bad[0]!r}; accepted: {', '.join(SPLITS)}.")
    if split is not None:
        rows = [r for r in rows if r.split == split]
    if domains:
        unknown = set(domains) - {r.domain for r in rows}
        if unknown:
            raise DatasetError(f"{path} has no {split or ''} audio for domains {sorted(unknown)}.")
        rows = [r for r in rows if r.domain in domains]
    if not rows:
        raise DatasetError(f"{path} has no rows{' in split ' + split if split else ''}.")
    return rows


def summarize(root: str | os.PathLike) -> dict:
    """Hours of audio per (split, domain)."""
    out: dict = {}
    for r in read_manifest(root):
        out.setdefault(r.split, {}).setdefault(r.domain, 0.0)
        out[r.split][r.domain] += r.duration / 3600
    return out


class SegmentDataset(Dataset):
    """Random fixed-length segments: item ``i`` -> ``{"audio": [1, segment], "domain": int}``.

    Files are chosen in proportion to their duration. Item ``i`` is the same for a given ``seed`` whatever the
    worker or process reading it. ``domains`` fixes the domain -> index mapping (default: sorted names).
    ``parallel``: also ``"target_audio"``/``"target_domain"``, the same window of the same piece on another domain
    (parallel renders of one score are sample-aligned); the item itself when the piece has no other domain.
    ``notes``: also ``"roll"`` ``[2, 88, segment // hop]`` (``studio.notes.piano_roll``), the notes the target plays in
    the window (folded into its range as its render folded them; ``augment_notes``: jittered as a transcription would
    be, ``studio.notes.augment``, leaving out a share ``note_drop``). Needs the dataset's ``notes/`` folder
    (``data_recipes.real``). ``transcribed``: the fraction of items whose roll is instead basic-pitch's transcription
    of the *source* window (folded into the target's range), exactly what the translator reads at inference
    (``data_recipes.transcribe`` writes them; files it has not transcribed keep the exact notes).
    """

    def __init__(self, root, config: AudioConfig, segment_length: int, split: str = "train",
                 domains: list[str] | None = None, seed: int = 0, min_rms: float = 1e-3, parallel: bool = False,
                 notes: bool = False, augment_notes: bool = True, transcribed: float = 0.0, note_drop: float = 0.05):
        self.root = Path(root)
        self.entries = read_manifest(root, split, domains)
        self.config = config
        self.segment_length = segment_length
        self.seed = seed
        self.min_rms = min_rms
        self.domains = list(domains) if domains else sorted({e.domain for e in self.entries})
        dur = np.array([e.duration for e in self.entries])
        self.weights = dur / dur.sum()
        self.parallel = parallel
        self.by_piece: dict[str, list[Entry]] = {}
        for e in self.entries:
            if e.piece:
                self.by_piece.setdefault(e.piece, []).append(e)
        self.notes, self.augment_notes, self.transcribed = notes, augment_notes, transcribed if notes else 0.0
        self.note_drop = note_drop
        self.ranges = read_ranges(root) if notes else {}
        if notes:
            missing = sorted({e.piece for e in self.entries if not notes_path(root, e.piece).is_file()})
            if missing:
                raise DatasetError(f"{root}: no notes for {len(missing)} pieces (e.g. {missing[0]}); domains with "
                                   "notes are the rendered ones (data_recipes.real writes notes/).")
        # files whose transcription exists now (data_recipes.transcribe is resumable: a partly transcribed dataset
        # trains, its other files keep their exact notes)
        self.has_transcription = {e.path for e in self.entries if self.transcribed
                                  and transcribed_path(root, e.path).is_file()}
        if self.transcribed and not self.has_transcription:
            raise DatasetError(f"{root}: no {split} file has a transcription; run "
                               f"python -m data_recipes.transcribe --data {root}")
        self._notes: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return 2**62  # indices come from the sampler; sampling is by index, not by enumeration

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        for _ in range(10):  # skip near-silent segments (rests, trimmed tails)
            e = self.entries[rng.choice(len(self.entries), p=self.weights)]
            total = int(e.duration * self.config.sample_rate)
            start = int(rng.integers(0, max(1, total - self.segment_length)))
            x = read_segment(self.root / e.path, start, self.segment_length, e.sample_rate, self.config.sample_rate)
            if np.sqrt(np.mean(x**2)) >= self.min_rms:
                break
        item = {"audio": torch.from_numpy(x)[None], "domain": self.domains.index(e.domain)}
        if self.parallel:
            others = [o for o in self.by_piece.get(e.piece, []) if o.domain != e.domain]
            t, y = e, x
            if others:
                t = others[rng.integers(len(others))]
                y = read_segment(self.root / t.path, start, self.segment_length, t.sample_rate, self.config.sample_rate)
            item.update(target_audio=torch.from_numpy(y)[None], target_domain=self.domains.index(t.domain))
        if self.notes:
            t = t if self.parallel else e
            at, seconds = start / self.config.sample_rate, self.segment_length / self.config.sample_rate
            if e.path in self.has_transcription and rng.random() < self.transcribed:
                played = self.transcribed_notes(e, t.domain, at, seconds)
            else:
                played = self.window_notes(t.piece, t.domain, at, seconds)
                if self.augment_notes:
                    played = augment(played, rng, drop=self.note_drop)
            item["roll"] = torch.from_numpy(piano_roll(played, self.segment_length // self.config.hop_length, self.config))
        return item

    def window_notes(self, piece: str, domain: str, start: float, seconds: float) -> np.ndarray:
        """The notes ``domain``'s render of ``piece`` plays in ``[start, start + seconds)``, times from ``start``."""
        if piece not in self._notes:
            self._notes[piece] = read_notes(notes_path(self.root, piece))
        lo, hi = self.ranges.get(domain, (0, 127))
        return window(fold(self._notes[piece], lo, hi), start, start + seconds)

    def transcribed_notes(self, source: Entry, domain: str, start: float, seconds: float) -> np.ndarray:
        """basic-pitch's notes of ``source`` in ``[start, start + seconds)``, as the translator's pipeline prepares
        them for ``domain`` (velocities matched, folded into its range)."""
        key = "transcribed:" + source.path
        if key not in self._notes:
            self._notes[key] = match_velocities(read_notes(transcribed_path(self.root, source.path)))
        lo, hi = self.ranges.get(domain, (0, 127))
        return window(fold(self._notes[key], lo, hi), start, start + seconds)


class StepSampler(Sampler):
    """Indices for steps ``start_step .. max_steps-1`` of one rank: step s, rank r, item j -> ``(s*world + r)*B + j``."""

    def __init__(self, batch_size: int, start_step: int, max_steps: int, rank: int = 0, world_size: int = 1):
        self.b, self.start, self.stop, self.rank, self.world = batch_size, start_step, max_steps, rank, world_size

    def __iter__(self):
        for s in range(self.start, self.stop):
            base = (s * self.world + self.rank) * self.b
            yield from range(base, base + self.b)

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.b


def fixed_clips(root, config: AudioConfig, split: str = "valid", max_clips: int = 8, seconds: float = 4.0,
                domains: list[str] | None = None) -> list[dict]:
    """Deterministic evaluation clips: the loudest ``seconds`` window of up to ``max_clips`` files, spread over domains.

    Returns ``[{"audio": np.ndarray [T], "domain": str, "piece": str, "path": str}]``, T a multiple of the hop.
    """
    entries = read_manifest(root, split, domains)
    by_domain: dict[str, list[Entry]] = {}
    for e in entries:
        by_domain.setdefault(e.domain, []).append(e)
    picked: list[Entry] = []
    while len(picked) < max_clips and any(by_domain.values()):
        for d in sorted(by_domain):
            if by_domain[d] and len(picked) < max_clips:
                picked.append(by_domain[d].pop(0))
    length = int(seconds * config.sample_rate) // config.hop_length * config.hop_length
    clips = []
    for e in picked:
        total = int(e.duration * config.sample_rate)
        x = read_segment(Path(root) / e.path, 0, total, e.sample_rate, config.sample_rate)
        if len(x) > length:  # loudest window, hop-aligned, so the clip is music rather than a fade
            energy = np.convolve(x**2, np.ones(config.hop_length), "valid")[:: config.hop_length]
            win = length // config.hop_length
            best = int(np.argmax(np.convolve(energy, np.ones(win), "valid")))
            x = x[best * config.hop_length: best * config.hop_length + length]
        clips.append({"audio": x[: len(x) // config.hop_length * config.hop_length], "domain": e.domain,
                      "piece": e.piece, "path": e.path})
    return clips


def parallel_clips(root, config: AudioConfig, split: str = "test", domains: list[str] | None = None,
                   seconds: float = 4.0, max_pieces: int = 8) -> list[dict]:
    """The same window of each piece on every domain (parallel renders): ``[{"piece", "clips": {domain: [T]}}]``.

    The window is the loudest ``seconds`` of the piece's first domain, hop-aligned; pieces lacking a domain are skipped.
    """
    entries = read_manifest(root, split, domains)
    by_piece: dict[str, dict[str, Entry]] = {}
    for e in entries:
        by_piece.setdefault(e.piece, {})[e.domain] = e
    wanted = sorted(domains or {e.domain for e in entries})
    length = int(seconds * config.sample_rate) // config.hop_length * config.hop_length
    out = []
    for piece in sorted(by_piece):
        if len(out) >= max_pieces or set(wanted) - set(by_piece[piece]):
            continue
        full = {d: read_segment(Path(root) / by_piece[piece][d].path, 0,
                                int(by_piece[piece][d].duration * config.sample_rate),
                                by_piece[piece][d].sample_rate, config.sample_rate) for d in wanted}
        n = min(len(x) for x in full.values())
        ref = full[wanted[0]][:n]
        start = 0
        if n > length:
            c = np.concatenate([[0.0], np.cumsum(ref.astype(np.float64) ** 2)])
            energy = (c[length:] - c[:-length])[:: config.hop_length]  # window energies (a direct convolution is O(n * length))
            start = int(np.argmax(energy)) * config.hop_length
        out.append({"piece": piece, "start": start / config.sample_rate,
                    "clips": {d: x[start: start + length] for d, x in full.items()}})
    return out


def note_clips(root, config: AudioConfig, split: str = "valid", domains: list[str] | None = None,
               seconds: float = 3.0, max_pieces: int = 6, transcribed: bool = False) -> list[dict]:
    """Deterministic (source, target) pairs of parallel renders with the target's notes, for the notes translator:
    ``[{"piece", "source", "target", "source_domain", "target_domain", "roll"}]``; piece ``i`` pairs domain ``i`` with
    a domain ``n // 2 + 1`` places on (all pairs turn up across pieces). ``transcribed``: the roll is basic-pitch's
    notes of the source (``SegmentDataset``'s ``transcribed``) instead of the target's exact notes."""
    domains = sorted(domains or {e.domain for e in read_manifest(root, split)})
    ds = SegmentDataset(root, config, int(seconds * config.sample_rate), split, domains, notes=True, augment_notes=False,
                        transcribed=float(transcribed))
    entries = {(e.piece, e.domain): e for e in ds.entries}
    out = []
    for i, p in enumerate(parallel_clips(root, config, split, domains, seconds, max_pieces)):
        a, b = domains[i % len(domains)], domains[(i + len(domains) // 2 + 1) % len(domains)]
        x, y = p["clips"][a], p["clips"][b]
        seconds = len(y) / config.sample_rate
        played = (ds.transcribed_notes(entries[p["piece"], a], b, p["start"], seconds) if transcribed
                  else ds.window_notes(p["piece"], b, p["start"], seconds))
        out.append({"piece": p["piece"], "source": x, "target": y, "source_domain": a, "target_domain": b,
                    "roll": piano_roll(played, len(y) // config.hop_length, config)})
    return out
