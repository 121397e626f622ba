"""basic-pitch's notes of every rendered file of a dataset, beside the exact notes the renders played.

The notes translator reads basic-pitch's transcription of the source at inference; training on the same
transcriptions of the source renders (``studio train translator --transcribed 0.5``) teaches the decoder what the
transcriber's notes mean (notes held while a room rings, missed repeated onsets, harmonics heard as notes) instead
of only jittered exact notes. Writes ``notes/transcribed/<file>.csv`` (``studio.notes.transcribed_path``) for each
file of a piece that has notes; resumable (files already written are skipped; each is written atomically).

    python -m data_recipes.transcribe --data data/real-large                    # every split
    python -m data_recipes.transcribe --data data/real-large --splits valid test
    python -m data_recipes.transcribe --data data/real-large --shard 0/2 &  # two processes, one thread each
    python -m data_recipes.transcribe --data data/real-large --shard 1/2

Measured here: 1.7 s per 60 s file with one thread (about 35x real time) on a 2-core Xeon with tests running beside it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from studio.audio import load_audio
from studio.data import read_manifest
from studio.errors import DatasetError
from studio.notes import Transcriber, notes_path, transcribed_path, write_notes

from ._corpus import run


def transcribe_dataset(root: Path, splits: list[str] | None = None, domains: list[str] | None = None,
                       shard: tuple[int, int] = (0, 1), threads: int = 1, progress: bool = True) -> int:
    """Transcribe each file of ``root`` (of ``splits``/``domains``) whose piece has notes; returns how many were new.
    ``shard`` ``(k, n)``: only the pieces ``k, k + n, ...`` of the sorted list, for ``n`` processes side by side."""
    from tqdm import tqdm

    entries = [e for s in (splits or [None]) for e in read_manifest(root, s, domains)
               if e.piece and notes_path(root, e.piece).is_file()]
    pieces = set(sorted({e.piece for e in entries})[shard[0]:: shard[1]])
    entries = [e for e in entries if e.piece in pieces]
    if not entries:
        raise DatasetError(f"{root}: no files of pieces with notes (notes/ is written by data_recipes.real or .render).")
    todo = [e for e in entries if not transcribed_path(root, e.path).is_file()]
    transcriber = Transcriber(threads=threads)  # the pipeline's own note settings
    for e in tqdm(todo, desc="transcribing", disable=not progress):
        audio, sr = load_audio(Path(root) / e.path, Transcriber.SAMPLE_RATE)
        write_notes(transcribed_path(root, e.path), transcriber(audio, sr))
    print(f"{len(todo)} files transcribed ({len(entries) - len(todo)} already were) into "
          f"{transcribed_path(root, 'x').parent}")
    return len(todo)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a dataset with notes/ (data_recipes.real or .render)")
    p.add_argument("--splits", nargs="+", default=None, choices=["train", "valid", "test"], help="default: all")
    p.add_argument("--domains", nargs="+", default=None, help="default: all with notes")
    p.add_argument("--shard", default="0/1", help="K/N: this process takes pieces K, K+N, ... (run N side by side)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads of this process")
    a = p.parse_args(argv)
    try:
        k, n = map(int, a.shard.split("/"))
        assert 0 <= k < n
    except (ValueError, AssertionError):
        p.error(f"--shard takes K/N with 0 <= K < N, got {a.shard!r}")
    return run(lambda _: transcribe_dataset(a.data, a.splits, a.domains, (k, n), a.threads), None)


if __name__ == "__main__":
    sys.exit(main())
