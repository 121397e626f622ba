"""``studio plan``: measure a training run before starting it.

Runs a few real training steps of the user's config on the user's device and data (after warm-up), then answers
the questions users otherwise find out after days: seconds per step, peak memory and whether the next batch size
fits, the wall time to reach the shipped model's step count (from its card) and the paper's, the epochs that
implies, and whether the dataset is below the documented minimum (README, "How much data").

The same estimate is what ``studio train`` prints after its own first steps (``studio.train.estimate``).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from torch.utils.data import Dataset

from .data import StepSampler, summarize
from .errors import DatasetError, StudioError
from .tasks import shipped_task, task_for
from .train.estimate import PeakMemory, _epochs, _hours, targets

# where each task's minimum training audio (``TrainTask.min_hours``) is documented, with its reasons
MIN_HOURS_SOURCE = "README.md, section 'How much data'"

def memory_limit(device: torch.device) -> int:
    """Bytes this process could use: device memory on CUDA; on the CPU, available RAM plus what it already holds."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info["MemAvailable"] + PeakMemory.rss()
    except (OSError, KeyError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass
class Plan:
    model: str
    device: str
    precision: str
    batch: int
    threads: int
    steps_run: int  # timed steps actually run (after warm-up)
    warmup_steps: int
    seconds_per_step: float
    steps_per_hour: float
    peak_memory_mb: float
    memory_kind: str
    memory_limit_mb: float
    next_batch: int
    next_batch_memory_mb: float | None
    next_batch_fits: bool | None
    item_seconds: float  # seconds of training audio one batch item covers
    data_hours: dict = field(default_factory=dict)  # split -> domain -> hours
    targets: list = field(default_factory=list)  # [{"name", "steps", "hours", "epochs", "source"}]
    minimum: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    machine: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def check_data(model: str, hours: dict, domains: list[str] | None = None) -> tuple[dict, list[str]]:
    """(the minimum that applies, warnings) for the train split of ``hours`` (split -> domain -> hours)."""
    scope, minimum = task_for(model).min_hours
    train = hours.get("train", {})
    if domains:
        train = {d: h for d, h in train.items() if d in domains}
    info = {"hours": minimum, "scope": scope, "source": MIN_HOURS_SOURCE}
    warnings = []
    if scope == "total":
        total = sum(train.values())
        if total < minimum:
            warnings.append(f"only {total:.2f} h of training audio; the documented minimum for the {model} is "
                            f"{minimum:g} h ({MIN_HOURS_SOURCE}). Expect overfitting and poor held-out quality.")
    else:
        low = {d: h for d, h in train.items() if h < minimum}
        if low:
            listed = ", ".join(f"{d} {h * 60:.1f} min" for d, h in sorted(low.items()))
            warnings.append(f"below the documented minimum of {minimum * 60:.0f} min per domain for the {model} "
                            f"({MIN_HOURS_SOURCE}): {listed}.")
    return info, warnings


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise StudioError("--device cuda: no CUDA device is visible to torch on this machine.")
    return torch.device(name)


def measure(model: str, task, dataset, data_root, *, batch: int, device: str = "auto", precision: str = "fp32",
            threads: int | None = None, steps: int = 5, warmup: int = 2, max_steps: int | None = None,
            domains: list[str] | None = None, seed: int = 0) -> Plan:
    """Run ``warmup`` then ``steps`` real training steps of ``task`` on ``dataset`` and build the ``Plan``.

    Memory: one step at half the batch, then the full batch; the difference per item extrapolates to the next
    batch size (2x), since activations grow linearly with the batch and weights/optimizer state do not.
    """
    from .train.loop import resolve_precision, seed_everything

    if steps < 1 or batch < 1:
        raise StudioError("--steps and --batch must be at least 1.")
    hours = summarize(data_root) if data_root is not None else {}
    if data_root is not None and not hours.get("train"):
        raise DatasetError(f"{data_root} has no training audio (split 'train').")
    dev = _device(device)
    if threads and dev.type == "cpu":
        torch.set_num_threads(threads)
    seed_everything(seed)
    precision = resolve_precision(precision, dev)
    task.device, task.precision = dev, precision
    for m in task.nets.values():
        m.to(dev).train()
    task.run = dict(task.nets)
    total = warmup + steps + 1
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=StepSampler(batch, 0, total),
                                         drop_last=True, generator=torch.Generator().manual_seed(seed))
    batches = iter(loader)
    # the step number of the run's last step: schedules (e.g. the vocoder's --adversarial-from) are timed as they
    # will be for most of the run
    step_no = max(0, (max_steps or 10**9) - 1)

    try:
        return _measure(model, task, batches, data_root, hours, dev, batch, precision, steps, warmup, step_no,
                        max_steps, domains)
    except torch.cuda.OutOfMemoryError:
        total_gb = torch.cuda.get_device_properties(dev).total_memory / 2**30
        raise StudioError(f"batch {batch} does not fit in the memory of {machine_name(dev)} ({total_gb:.0f} GB); "
                          f"try --batch {max(1, batch // 2)}.") from None


def _measure(model, task, batches, data_root, hours, dev, batch, precision, steps, warmup, step_no, max_steps,
             domains) -> Plan:
    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    first = next(batches)
    half = batch // 2
    peak_half = None
    if half:
        with PeakMemory(dev) as mem:
            task.train_step({k: v[:half] for k, v in first.items()}, step_no)
        peak_half = mem.peak
    with PeakMemory(dev) as mem:
        task.train_step(first, step_no)
        for _ in range(max(0, warmup - 1)):
            task.train_step(next(batches), step_no)
        sync()
        times = []
        for _ in range(steps):
            b = next(batches)
            t0 = time.perf_counter()
            task.train_step(b, step_no)
            sync()
            times.append(time.perf_counter() - t0)
    peak = mem.peak
    per = statistics.median(times)
    limit = memory_limit(dev)
    nxt = 2 * batch
    if peak_half is not None:
        per_item = max(0, peak - peak_half) / (batch - half)
        nxt_mem = peak + per_item * (nxt - batch)
        fits = nxt_mem < 0.9 * limit
    else:
        nxt_mem, fits = None, None
    isec = task.item_seconds()
    train_h = sum(h for d, h in hours.get("train", {}).items() if not domains or d in domains)
    minimum, warnings = check_data(model, hours, domains) if hours else ({}, [])
    if fits is False:
        warnings.append(f"batch {nxt} would need ≈ {nxt_mem / 2**20:.0f} MB, more than 90% of the "
                        f"{limit / 2**20:.0f} MB available.")
    return Plan(model=model, device=str(dev), precision=precision, batch=batch, threads=torch.get_num_threads(),
                steps_run=len(times), warmup_steps=warmup + (1 if half else 0), seconds_per_step=per,
                steps_per_hour=3600 / per, peak_memory_mb=peak / 2**20,
                memory_kind="CUDA max allocated" if dev.type == "cuda" else "process RSS",
                memory_limit_mb=limit / 2**20, next_batch=nxt,
                next_batch_memory_mb=None if nxt_mem is None else nxt_mem / 2**20, next_batch_fits=fits,
                item_seconds=isec, data_hours=hours,
                targets=targets(task, per, batch, train_h, max_steps), minimum=minimum, warnings=warnings,
                machine=machine_name(dev))


def machine_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def format_plan(p: Plan) -> str:
    fits = {True: "fits", False: "does NOT fit", None: "unknown (batch 1: no second point to extrapolate from)"}
    nxt = f" (≈ {p.next_batch_memory_mb:.0f} MB)" if p.next_batch_memory_mb else ""
    lines = [
        f"plan: {p.model} on {p.device} ({p.machine}), batch {p.batch}, {p.precision}, {p.threads} threads",
        f"  measured: {p.steps_run} steps after {p.warmup_steps} warm-up: {p.seconds_per_step:.3g} s/step, "
        f"{p.steps_per_hour:.0f} steps/h",
        f"  peak memory: {p.peak_memory_mb:.0f} MB ({p.memory_kind}) of {p.memory_limit_mb:.0f} MB; "
        f"batch {p.next_batch}: {fits[p.next_batch_fits]}{nxt}",
        "  data (hours): " + ("synthetic batches (no dataset)" if not p.data_hours else "; ".join(f"{s}: " + ", ".join(f"{d} {h:.2f}" for d, h in sorted(v.items()))
                                                 for s, v in sorted(p.data_hours.items()))),
    ]
    if p.minimum:
        lines.append(f"  minimum: {p.minimum['hours']:g} h {p.minimum['scope']} ({p.minimum['source']})")
    for r in p.targets:
        lines.append(f"  to {r['steps']:,} steps ({r['name']}; {r['source']}): ≈ {_hours(r['seconds'])}"
                     f"{_epochs(r.get('epochs'))}")
    lines += [f"  WARNING: {w}" for w in p.warnings]
    return "\n".join(lines)


class SyntheticData(Dataset):
    """Batches of the right shapes without a dataset (noise audio, random codes: ``TrainTask.synthetic``): the time
    and memory of a step do not depend on the content. Used for the app's estimates of the shipped models' runs."""

    def __init__(self, model: str, task):
        self.spec, self.task = task_for(model), task

    def __len__(self) -> int:
        return 2**31 - 1

    def __getitem__(self, i: int) -> dict:
        return self.spec.synthetic(self.task.cfg, i, torch.Generator().manual_seed(i))


def estimate_shipped(model: str, steps: int = 2, warmup: int = 1, threads: int | None = None) -> Plan:
    """The planner on this machine for the run that produced the shipped ``model`` (same architecture, batch,
    precision), on synthetic batches."""
    task, batch, rec = shipped_task(model)
    return measure(model, task, SyntheticData(model, task), None, batch=batch, device="cpu",
                   precision=rec.get("precision", "fp32"), threads=threads, steps=steps, warmup=warmup,
                   max_steps=rec.get("steps"))
