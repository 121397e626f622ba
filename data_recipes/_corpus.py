"""What the real-corpus recipes (LJSpeech, MusicNet, MAESTRO, stems) share: finding the corpus on disk, checking
the output folder cannot clobber it, converting the audio files, the opt-in download, and the CLI's error exit.
"""

from __future__ import annotations

import shutil
import socket
import sys
import tarfile
import threading
import time
import urllib.parse
import urllib.request
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from studio.audio import load_audio, save_audio
from studio.errors import DatasetError, StudioError, UnsupportedAudio


def find_corpus(root: Path, marker: str, nested: tuple[str, ...], what: str, hint: str) -> Path:
    """The folder holding ``marker``: ``root`` itself or one of the ``nested`` sub-folders users often pass the
    parent of (e.g. ``~/data`` instead of ``~/data/LJSpeech-1.1``). Raises ``DatasetError`` naming the problem."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{what} folder {root} does not exist; {hint}")
    if not root.is_dir():
        raise DatasetError(f"{what} path {root} is a file, not a folder; {hint}")
    for cand in (root, *(root / n for n in nested)):
        if (cand / marker).exists():
            return cand
    return root


def check_out(out: Path, *inputs: Path) -> None:
    """Refuse an output folder that is, or contains, an input: building replaces ``out`` whole."""
    o = Path(out).expanduser().resolve()
    for i in inputs:
        i = Path(i).expanduser().resolve()
        if o == i or o in i.parents:
            raise DatasetError(f"--out {out} would replace the input folder {i}; choose another output folder.")


@dataclass(frozen=True)
class Job:
    src: Path  # the corpus file
    rel: str  # its path in the dataset, relative to the dataset root


def missing_files(jobs: list[Job], base: Path) -> None:
    """Raise ``DatasetError`` listing files named by the metadata that are not on disk (before any conversion)."""
    missing = [j.src for j in jobs if not j.src.is_file()]
    if missing:
        names = ", ".join(str(p.relative_to(base)) if p.is_relative_to(base) else str(p) for p in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DatasetError(f"{len(missing)} audio file(s) named in the metadata are missing from {base}: {names}{more}.")


def _convert(args) -> tuple[Job, float | str]:
    job, stage, sample_rate = args
    try:
        y, sr = load_audio(job.src, sample_rate, mono=True, max_seconds=None)
    except UnsupportedAudio as e:
        return job, f"{job.src}: {e}"
    save_audio(stage / job.rel, y, sr)
    return job, round(len(y) / sr, 4)


def _init_worker():
    import torch

    torch.set_num_threads(1)


def convert_all(jobs: list[Job], stage: Path, sample_rate: int, workers: int = 1, skip_unreadable: bool = False,
                progress: bool = True, desc: str = "converting") -> tuple[dict[str, float], list[str]]:
    """Resample every job's file to mono ``sample_rate`` WAV under ``stage``; returns ``{rel: duration}`` and the
    skipped files. An unreadable file raises ``DatasetError`` naming it (at once: pending work is cancelled) unless
    ``skip_unreadable``."""
    from tqdm import tqdm

    durations: dict[str, float] = {}
    skipped: list[str] = []
    args = [(j, stage, sample_rate) for j in jobs]
    pool = ProcessPoolExecutor(workers, initializer=_init_worker) if workers > 1 and len(jobs) > 1 else None
    try:
        results = pool.map(_convert, args, chunksize=8) if pool else map(_convert, args)
        for job, result in tqdm(results, total=len(jobs), desc=desc, disable=not progress):
            if isinstance(result, str):
                if not skip_unreadable:
                    raise DatasetError(f"cannot use {result} Pass --skip-unreadable to leave such files out.")
                skipped.append(result)
            else:
                durations[job.rel] = result
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return durations, skipped


# ------------------------------------------------------------------------------------------------------ download

def _reachable(url: str, timeout: float) -> None:
    """Raise ``DatasetError`` unless a TCP connection to ``url``'s host opens within ``timeout`` seconds (name
    resolution included, which ``socket`` alone does not bound)."""
    u = urllib.parse.urlparse(url)
    host, port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
    if not host or u.scheme not in ("http", "https"):
        raise DatasetError(f"cannot download {url}: only http(s) addresses are accepted.")
    outcome: list = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(e)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    err = outcome[0] if outcome else TimeoutError(f"no answer in {timeout:.0f} s")
    if err is not None:
        raise DatasetError(f"cannot reach {host} to download {url} ({err}); download it by hand and pass the "
                           "folder you extracted it into (downloading is never done without --download).")


def download(url: str, dest: Path, timeout: float = 10.0, extract: bool = True) -> Path:
    """Fetch ``url`` into folder ``dest`` (and extract a .zip/.tar.* archive there). Fails fast when the host is
    unreachable. The archive is written to a ``.partial`` file and renamed when complete."""
    _reachable(url, timeout)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    target = dest / name
    if not target.is_file():
        part = target.with_name(target.name + ".partial")
        print(f"downloading {url} -> {target}", file=sys.stderr)
        t0 = time.time()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(part, "wb") as f:
                shutil.copyfileobj(r, f, 1 << 20)
        except OSError as e:
            part.unlink(missing_ok=True)
            raise DatasetError(f"download of {url} failed ({e}).") from None
        part.rename(target)
        print(f"downloaded {target.stat().st_size / 1e9:.2f} GB in {time.time() - t0:.0f} s", file=sys.stderr)
    if extract and (zipfile.is_zipfile(target) or tarfile.is_tarfile(target)):
        print(f"extracting {target}", file=sys.stderr)
        try:
            if zipfile.is_zipfile(target):
                with zipfile.ZipFile(target) as z:
                    z.extractall(dest)
            else:
                with tarfile.open(target) as t:
                    t.extractall(dest, filter="data")
        except (OSError, zipfile.BadZipFile, tarfile.TarError) as e:
            raise DatasetError(f"could not extract {target} ({e}); delete it and try again.") from None
    return target


def run(build, cfg) -> int:
    """Call ``build(cfg)``; a ``StudioError`` becomes ``error: ...`` on stderr and exit status 2."""
    try:
        build(cfg)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
