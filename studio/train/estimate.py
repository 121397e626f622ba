"""The training estimate: seconds per step -> wall time and epochs to the shipped model's steps, the paper's and
``--max-steps``, with peak memory. ``studio train`` prints it after its own first steps (``Trainer``) and
``studio plan`` reuses it after its measured steps; here, below both, so the loop does not import the planner.
"""

from __future__ import annotations

import os
import platform
import resource
import threading

import torch

from .. import registry
from ..errors import ModelNotFound

# Step counts of published settings; None where the paper gives no comparable count.
PAPER_STEPS = {
    "vocoder": (400_000, "MelGAN paper (Kumar et al. 2019): 400k iterations at batch 16"),
}


def shipped_of(task) -> tuple[str, str | None]:
    """(registry kind, stage) of the shipped model ``task``'s training produces (``Task.shipped``)."""
    return task.shipped or (task.name, None)


def shipped_entry(kind: str, stage: str | None = None) -> tuple[registry.ModelEntry, dict]:
    """The shipped model of ``kind`` and its ``training`` record (``stage``'s, for a model that holds one per stage).
    Raises ``ModelNotFound`` when it is not installed."""
    entry = registry.resolve(registry.DEFAULTS[kind], kind=kind)
    return entry, (entry.training.get(stage, {}) if stage else entry.training)


def _shipped_training(task) -> tuple[str, dict] | None:
    """``(name, record)`` of the shipped model ``task`` trains toward, if installed and recorded."""
    try:
        entry, record = shipped_entry(*shipped_of(task))
    except ModelNotFound:  # no shipped model: the plan just lacks that row
        return None
    return (entry.name, record) if record.get("steps") else None


class PeakMemory:
    """Peak memory while the block runs: process RSS sampled every 2 ms on the CPU, max allocated on CUDA."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def lifetime_peak() -> int:
        """The process's peak RSS since it started (bytes)."""
        scale = 1 if platform.system() == "Darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # not Linux: the lifetime peak is the best available
            return PeakMemory.lifetime_peak()

    def _watch(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.rss())

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak = self.rss()
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self.rss())


def _epochs(e: float | None) -> str:
    if e is None:
        return ""
    return f", {e:.2g} epochs" if e < 10 else f", {e:.0f} epochs"


def _hours(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def targets(task, seconds_per_step: float, batch: int, train_hours: float, max_steps: int | None = None) -> list[dict]:
    """Wall time and epochs to reach the shipped model's steps, the paper's, and this run's ``max_steps``, for a
    run of ``task``."""
    rows = []
    shipped = _shipped_training(task)
    if shipped:
        name, rec = shipped
        rows.append({"name": f"shipped {name}", "steps": int(rec["steps"]),
                     "source": f"models/{name} card: {rec.get('wall_minutes', '?')} min on {rec.get('hardware', '?')}"})
    if task.name in PAPER_STEPS:
        steps, source = PAPER_STEPS[task.name]
        rows.append({"name": "paper", "steps": steps, "source": source})
    if max_steps and all(r["steps"] != max_steps for r in rows):
        rows.append({"name": "this run (--max-steps)", "steps": int(max_steps), "source": "command line"})
    for r in rows:
        r["seconds"] = r["steps"] * seconds_per_step
        r["epochs"] = r["steps"] * batch * task.item_seconds() / (train_hours * 3600) if train_hours > 0 else None
    return rows


def format_estimate(name: str, seconds_per_step: float, steps_measured: int, step: int, max_steps: int,
                    rows: list[dict], peak_mb: float | None = None, memory_kind: str = "") -> str:
    """The lines ``studio train`` prints after its first steps (and ``studio plan`` reuses)."""
    lines = [f"[{name}] {seconds_per_step:.3g} s/step ({3600 / seconds_per_step:.0f} steps/h) over {steps_measured} "
             f"steps" + (f"; peak memory {peak_mb:.0f} MB ({memory_kind})" if peak_mb else "")]
    if max_steps > step:
        lines.append(f"[{name}] {max_steps - step} steps left to --max-steps {max_steps}: "
                     f"≈ {_hours((max_steps - step) * seconds_per_step)}")
    for r in rows:
        if r["name"].startswith("this run"):
            continue
        lines.append(f"[{name}] to {r['steps']:,} steps ({r['name']}): ≈ {_hours(r['seconds'])}{_epochs(r.get('epochs'))}")
    return "\n".join(lines)

