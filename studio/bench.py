"""``studio bench``: time vocoder inference, streaming and training on this machine, in one run.

Every speed-up is a ratio to a reference measured in the same run, so a busy or slow machine still gives fair
comparisons: inference rows are compared with the paper generator as a plain float32 PyTorch module with weight
norm kept (not folded), training rows with the paper config in float32. Each row reports the median wall time of
several runs after a warm-up, throughput (kHz of audio and x real time), the process's peak RSS while the row ran
(``VmHWM``, reset per row on Linux), threads and dtype. The header records the machine (CPU model, cores, torch
version, native bf16) and the load average before and after, so figures taken on a loaded machine show it.

More rows (e.g. the translation and generation pipelines) plug in through ``EXTRA_ROWS``: functions taking the
``Bench`` and adding rows with ``bench.row(...)`` from a ``bench.measure(...)`` timing. Add one with ``@register``
or list it lazily as a ``"module:function"`` string (imported only when the bench runs), e.g.
``EXTRA_ROWS.append("studio.translation.bench:translation_rows")``.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .errors import StudioError

RowFunction = Callable[["Bench"], object]
EXTRA_ROWS: list[RowFunction | str] = []  # run after the built-in rows, in order


def register(fn: RowFunction) -> RowFunction:
    """Add a row function (``fn(bench)``, adding rows with ``bench.row``) to every later ``studio bench`` run."""
    EXTRA_ROWS.append(fn)
    return fn


def _resolve(fn: RowFunction | str) -> RowFunction:
    if callable(fn):
        return fn
    import importlib

    module, _, name = fn.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass
class BenchOptions:
    seconds: tuple[float, ...] = (10.0, 60.0)
    batches: tuple[int, ...] = (1, 8)
    repeats: int = 3
    threads: int | None = None  # torch intra-op threads (None: torch's default, one per core)
    train_batches: tuple[int, ...] = (16, 4)
    segment: int = 8192
    stream_chunks: tuple[int, ...] = (32, 8)  # frames per streamed chunk
    max_row_seconds: float = 60.0  # stop repeating a row after this long (at least one timed run)
    warmup: bool = True  # one untimed call before each row's timed runs
    model: str | None = None  # vocoder name or folder; default: the shipped one if installed, else random init
    data: str | None = None  # dataset folder for the training rows (default: random audio)
    train: bool = True
    stream: bool = True
    quick: bool = False

    @classmethod
    def quick_options(cls, **kw) -> "BenchOptions":
        """Short clips, one run without warm-up, one thread unless told: a smoke test of every row that costs
        the same on a busy machine (its numbers include first-call overheads)."""
        return cls(**{"seconds": (0.5,), "batches": (1, 2), "repeats": 1, "train_batches": (1,), "threads": 1,
                      "stream_chunks": (16,), "max_row_seconds": 10.0, "warmup": False, "quick": True, **kw})


@dataclass
class Timing:
    median_s: float
    runs: int
    peak_rss_mb: float  # the process's peak RSS during the row
    start_rss_mb: float  # its RSS when the row started (models, interpreter, retained heap)
    times: list[float] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------- measuring

def _status_kb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> None:
    """Hand freed heap back to the OS (glibc ``malloc_trim``), then reset the kernel's peak-RSS mark (Linux
    ``clear_refs`` 5), so the next peak is this row's; elsewhere the peak stays process-wide."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:  # ru_maxrss: KiB on Linux, bytes on macOS
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kb = r / 1024 if platform.system() == "Darwin" else r
    return kb / 1024


def machine_info() -> dict:
    from .vocoder.fast import cpu_features, native_bf16_reason, onnxruntime_available

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"cpu": cpu, "logical_cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_features": cpu_features(),
            "native_bf16": native_bf16_reason()[0], "native_bf16_reason": native_bf16_reason()[1],
            "isa_caps": {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                                                    "STUDIO_NATIVE_BF16") if os.environ.get(k)},
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
    if onnxruntime_available():
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    return info


class Bench:
    """Runs the rows; row functions use ``measure`` and ``row`` so every row is timed the same way."""

    def __init__(self, options: BenchOptions, log: Callable[[str], None] = print):
        self.options, self.log = options, log
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self.threads = options.threads or torch.get_num_threads()

    def measure(self, fn: Callable[[], object], warmup: Callable[[], object] | None = None) -> Timing:
        """Median wall time of ``fn`` over up to ``repeats`` runs (stopping after ``max_row_seconds``), after one
        warm-up call (``warmup`` if given, e.g. the same call on a shorter input); peak RSS over the row."""
        gc.collect()
        reset_peak_rss()
        start_rss = (_status_kb("VmRSS") or 0.0) / 1024
        if self.options.warmup:
            (warmup or fn)()
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < self.options.repeats and (not times or time.perf_counter() - start < self.options.max_row_seconds):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return Timing(statistics.median(times), len(times), peak_rss_mb(), start_rss, times)

    def row(self, group: str, name: str, timing: Timing, *, audio_s: float, batch: int, dtype: str,
            reference: str | None = None, threads: int | None = None, **extra) -> dict:
        """One result: ``audio_s`` seconds of audio per item, ``batch`` items per call. ``reference``: the name
        of an earlier row (any group) with the same ``audio_s`` and ``batch`` to take the speed ratio against
        (None: this row is a reference, ratio 1)."""
        xrt = audio_s * batch / timing.median_s
        sr = extra.pop("sample_rate", 22050)
        r = {"group": group, "name": name, "batch": batch, "audio_s": audio_s, "dtype": dtype,
             "threads": threads or self.threads, "time_s": timing.median_s, "runs": timing.runs,
             "khz": xrt * sr / 1000, "x_realtime": xrt, "peak_rss_mb": timing.peak_rss_mb,
             "start_rss_mb": timing.start_rss_mb, "ratio": 1.0,
             "reference": reference or name, **extra}
        if reference is not None:
            ref = next((q for q in self.rows if q["name"] == reference
                        and q["batch"] == batch and q["audio_s"] == audio_s), None)
            r["ratio"] = xrt / ref["x_realtime"] if ref else float("nan")
        self.rows.append(r)
        self.log(format_row(r))
        return r

    def run(self) -> dict:
        """All rows: vocoder inference (with the HiFi-GAN baseline when installed), streaming, training, then the
        registered extra rows."""
        from . import bench_rows
        from .vocoder.fast import num_threads

        o = self.options
        started, load0 = time.strftime("%Y-%m-%dT%H:%M:%S%z"), _loadavg()
        machine = {**machine_info(), "torch_threads": self.threads}
        self.log(format_machine(machine))
        self.log(format_header())
        with num_threads(o.threads):
            setup = bench_rows.vocoder_rows(self)
            bench_rows.baseline_rows(self, setup[0])
            if o.stream:
                bench_rows.streaming_rows(self, *setup)
            if o.train:
                bench_rows.training_rows(self)
            for fn in EXTRA_ROWS:
                _resolve(fn)(self)
        return {"machine": machine, "options": _jsonable(asdict(o)), "started": started,
                "load_avg_before": load0, "load_avg_after": _loadavg(), "notes": self.notes, "rows": self.rows}


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _jsonable(x):
    return json.loads(json.dumps(x, default=str))


# -------------------------------------------------------------------------------------------------- printing

_COLUMNS = [("group", 7, "s"), ("name", 40, "s"), ("batch", 5, "d"), ("audio_s", 7, ".1f"), ("dtype", 9, "s"),
            ("threads", 7, "d"), ("time_s", 9, ".3f"), ("khz", 9, ".1f"), ("x_realtime", 9, ".1f"),
            ("peak_rss_mb", 8, ".0f"), ("ratio", 6, ".2f")]
_TITLES = {"audio_s": "audio s", "time_s": "time s", "khz": "kHz", "x_realtime": "x RT", "peak_rss_mb": "RSS MB",
           "ratio": "ratio"}


def format_header() -> str:
    cols = " ".join(f"{_TITLES.get(k, k):>{w}s}" if f != "s" else f"{_TITLES.get(k, k):{w}s}" for k, w, f in _COLUMNS)
    return cols + "  notes\n" + "-" * len(cols)


def format_row(r: dict) -> str:
    cells = []
    for k, w, f in _COLUMNS:
        v = r.get(k)
        cells.append(f"{v:{w}{f}}" if f == "s" else (f"{v:>{w}{f}}" if isinstance(v, (int, float)) else f"{'-':>{w}s}"))
    return " ".join(cells) + ("  " + r["note"] if r.get("note") else "")


def format_machine(m: dict) -> str:
    """The machine lines: CPU, torch, the CPU features found, native bf16 and why, any ISA cap (simulation)."""
    caps = ", ".join(f"{k}={v}" for k, v in m.get("isa_caps", {}).items())
    return (f"machine: {m['cpu']}, {m['usable_cores']} usable cores, torch {m['torch']} ({m['cpu_capability']}), "
            f"onnxruntime: {m.get('onnxruntime', 'no')}\n"
            f"CPU features: {' '.join(m.get('cpu_features', [])) or 'unknown'}; native bf16: {m['native_bf16']} "
            f"({m.get('native_bf16_reason', '')})" + (f"; ISA capped by {caps} (simulating an older CPU)" if caps else ""))


def format_table(result: dict) -> str:
    m = result["machine"]
    head = format_machine(m) + f"\nload average before/after: {result['load_avg_before']} / {result['load_avg_after']}"
    notes = "".join(f"\nnote: {n}" for n in result.get("notes", []))
    return "\n".join([head + notes, format_header(), *map(format_row, result["rows"])])


# ------------------------------------------------------------------------------------------------------- CLI

def cmd_bench(a) -> int:
    kw = {k: v for k, v in {"seconds": tuple(a.seconds) if a.seconds else None,
                            "batches": tuple(a.batch) if a.batch else None, "repeats": a.repeats,
                            "threads": a.threads, "train_batches": tuple(a.train_batch) if a.train_batch else None,
                            "model": a.model, "data": a.data}.items() if v is not None}
    kw.update(train=not a.no_train, stream=not a.no_stream)
    options = BenchOptions.quick_options(**kw) if a.quick else BenchOptions(**kw)
    if min(options.seconds) <= 0 or min(options.batches) < 1 or options.repeats < 1:
        raise BenchError("--seconds must be positive, --batch and --repeats at least 1.")
    if options.threads is not None and options.threads < 1:
        raise BenchError(f"--threads must be at least 1, got {options.threads}.")
    result = Bench(options).run()
    print()
    print(format_table(result))
    if a.json:
        path = Path(a.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, allow_nan=True) + "\n")
        print(f"wrote {path}")
    return 0


class BenchError(StudioError):
    """Benchmark options that cannot be run."""


def add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="time vocoder inference, streaming and training on this machine")
    p.add_argument("--quick", action="store_true", help="short clips, one run, one thread: a smoke test of every row")
    p.add_argument("--seconds", type=float, nargs="+", default=None, help="clip lengths (default: 10 60)")
    p.add_argument("--batch", type=int, nargs="+", default=None, help="inference batch sizes (default: 1 8)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per row after the warm-up (default: 3)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core)")
    p.add_argument("--train-batch", type=int, nargs="+", default=None, help="training batch sizes (default: 16 4)")
    p.add_argument("--model", default=None, help="vocoder name or folder (default: shipped, else random init)")
    p.add_argument("--data", default=None, help="dataset folder for the training rows (default: random audio)")
    p.add_argument("--no-train", action="store_true", help="skip the training rows")
    p.add_argument("--no-stream", action="store_true", help="skip the streaming rows")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.set_defaults(func=cmd_bench)


__all__ = ["Bench", "BenchOptions", "Timing", "register", "EXTRA_ROWS", "add_bench_parser", "format_table",
           "machine_info", "peak_rss_mb", "reset_peak_rss"]
