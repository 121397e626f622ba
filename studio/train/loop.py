"""The one training loop of the studio: every model (vocoder, translator, VQ-VAE, prior) is a ``Task`` run here.

The loop owns what is common: device and distributed set-up (``torchrun`` -> DDP), the data order, progress bar
and ETA, TensorBoard, periodic validation, atomic checkpoints with exact resume, a wall-clock budget, and a
graceful stop on SIGTERM/SIGINT (checkpoint first). A task only adds its modules, optimizers and losses.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data import StepSampler, summarize
from ..errors import StudioError
from .checkpoint import _rng_state, _set_rng_state, load_checkpoint, save_checkpoint

CHECKPOINT = "checkpoint.safetensors"
PRECISIONS = ("fp32", "bf16", "auto")


def resolve_precision(precision: str, device: torch.device, warn=None) -> str:
    """``auto`` -> ``bf16`` autocast where bf16 is native (a CUDA GPU with bf16, a CPU with AVX512-BF16 / AMX:
    ``studio.vocoder.fast.native_bf16_reason``), else ``fp32``: emulated bf16 made a training step 3.7x slower
    than fp32 on an AVX2 CPU. An explicit ``bf16`` without native bf16 runs as asked, with a warning (``warn``,
    default stderr)."""
    import sys

    from ..vocoder.fast import native_bf16_reason

    if precision not in PRECISIONS:
        raise StudioError(f"unknown precision {precision!r}; accepted: {', '.join(PRECISIONS)}.")
    if precision == "fp32":
        return precision
    if device.type == "cuda":
        native, why = torch.cuda.is_bf16_supported(), "this GPU"
    else:
        native, why = native_bf16_reason()
    if precision == "auto":
        return "bf16" if native else "fp32"
    if not native:
        (warn or (lambda m: print(m, file=sys.stderr)))(
            f"warning: --precision bf16 on a device without native bf16 ({why}): it runs emulated, several times "
            f"slower than fp32; use --precision auto (or fp32).")
    return precision


@dataclass
class LoopConfig:
    max_steps: int = 1000
    batch_size: int = 16  # per process
    log_every: int = 10
    val_every: int = 500
    ckpt_every: int = 500
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 (autocast) | auto (bf16 where native: resolve_precision)
    max_minutes: float | None = None  # stop cleanly (with a checkpoint) after this much wall time
    ckpt_minutes: float | None = None  # also checkpoint whenever this much wall time has passed since the last one
    threads: int | None = None  # torch intra-op threads on CPU (None: torch's default)
    # early stopping on a validation metric (lower is better): every improvement is exported to <out>/best, and
    # ``patience`` validations in a row without one stop the run (0: never stop early)
    best_metric: str | None = None
    patience: int = 0


class Task:
    """What a model adds to the loop. Subclasses fill ``nets`` and ``opts`` and implement ``train_step``.

    ``self.run`` maps each net name to the module to call in ``train_step``: the DDP wrapper under torchrun, the
    plain module otherwise. ``self.device`` and ``self.autocast()`` are set by the loop.
    """

    name = "task"
    # The shipped model this training produces, for the estimates' "time to the shipped model's steps": its registry
    # kind and, where that model holds several stages (the generator: vqvae, prior), this one's key in its config and
    # training record. None: the kind is ``name``, one stage.
    shipped: tuple[str, str | None] | None = None
    # Tensor-name prefixes of an older checkpoint layout -> now (``load_checkpoint``'s ``renames``), where a task's
    # modules moved; resumed checkpoints are rewritten in the new layout at the next save.
    checkpoint_renames: dict[str, str] = {}

    def __init__(self):
        self.nets: dict[str, nn.Module] = {}
        self.opts: dict[str, torch.optim.Optimizer] = {}
        self.run: dict[str, nn.Module] = {}
        self.device = torch.device("cpu")
        self.precision = "fp32"

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        raise NotImplementedError

    def item_seconds(self) -> float:
        """Seconds of training audio one batch item covers (the estimates' epochs)."""
        return self.cfg.segment_length / self.audio.sample_rate

    def validate(self) -> dict[str, float]:
        """Metrics on held-out data (the loop logs them under ``val/``)."""
        return {}

    def samples(self) -> dict[str, tuple[np.ndarray, int]]:
        """Audio examples for TensorBoard: name -> (audio, sample_rate)."""
        return {}

    def state_extra(self) -> dict:
        """JSON-able configs stored in every checkpoint."""
        return {}

    def export(self, folder: Path) -> None:
        """Write the inference model folder (weights, config, card) from the current state."""


def seed_everything(seed: int) -> None:
    """Seed torch, NumPy and Python; call before building a task so that its initial weights are reproducible."""
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _distributed() -> tuple[int, int, int]:
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def param_checksum(module: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


class Trainer:
    """Run ``task`` for ``cfg.max_steps`` steps on ``dataset`` (indexed by global sample number)."""

    def __init__(self, task: Task, dataset, cfg: LoopConfig, out_dir: str | os.PathLike, *, resume: bool = False,
                 log=print):
        self.task, self.dataset, self.cfg, self.out = task, dataset, cfg, Path(out_dir)
        self.log = log
        self.rank, self.world, local = _distributed()
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo")
        if cfg.device == "auto":
            dev = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
        else:
            dev = torch.device(f"cuda:{local}" if cfg.device == "cuda" else cfg.device)
        if cfg.threads and dev.type == "cpu":
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        task.device, task.precision = dev, resolve_precision(cfg.precision, dev, self.log)
        if cfg.precision == "auto" and self.rank == 0:
            self.log(f"precision auto: {task.precision}")
        for m in task.nets.values():
            m.to(dev)
        self.step = 0
        ckpt = self.out / CHECKPOINT
        if resume and ckpt.is_file():
            meta = load_checkpoint(ckpt, modules=task.nets, optimizers=task.opts, renames=task.checkpoint_renames)
            self.step = meta["step"]
            self.log(f"resumed from {ckpt} at step {self.step}")
        elif resume:
            self.log(f"no checkpoint in {self.out}; starting from scratch")
        if self.world > 1:  # DDP broadcasts rank 0's parameters at construction
            ids = [dev.index] if dev.type == "cuda" else None
            task.run = {k: DDP(m, device_ids=ids) if any(p.requires_grad for p in m.parameters()) else m
                        for k, m in task.nets.items()}
        else:
            task.run = dict(task.nets)
        self.writer = None
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "tb"))
        self._stop = False
        self.best: dict | None = None  # {"step", metric: value} of the best validation so far
        best_file = self.out / "best" / "best.json"
        if resume and best_file.is_file():
            self.best = json.loads(best_file.read_text())

    # ---------------------------------------------------------------------------------------------- helpers
    def _handle_signal(self, signum, frame):
        self._stop = True

    def save(self) -> None:
        if self.rank == 0:
            save_checkpoint(self.out / CHECKPOINT, modules=self.task.nets, optimizers=self.task.opts, step=self.step,
                            extra=self.task.state_extra())
            # exporting builds fresh modules, which draws from the RNGs; a resumed run restores them as they were at
            # the checkpoint, so the uninterrupted run must continue from that same state
            tensors, meta = _rng_state()
            try:
                self.task.export(self.out / "export")
            finally:
                _set_rng_state(tensors, meta)

    def _validate(self) -> dict[str, float]:
        if self.rank != 0:
            return {}
        for m in self.task.nets.values():
            m.eval()
        with torch.no_grad():
            metrics = self.task.validate()
            for name, (audio, sr) in self.task.samples().items():
                self.writer.add_audio(f"samples/{name}", torch.as_tensor(audio).reshape(1, -1), self.step, sr)
        for m in self.task.nets.values():
            m.train()
        for k, v in metrics.items():
            self.writer.add_scalar(f"val/{k}", v, self.step)
        return metrics

    def _track_best(self, val: dict) -> bool:
        """Export ``val``'s step to ``<out>/best`` if it improves ``best_metric``; True when patience is used up."""
        key = self.cfg.best_metric
        if self.rank != 0 or not key:
            return False
        if key not in val:
            raise StudioError(f"validation reports no {key!r} to keep the best checkpoint by (it has {sorted(val)}).")
        if self.best is None or val[key] < self.best[key]:
            self.best = {"step": self.step, key: float(val[key]), "stale": 0}
            tensors, meta = _rng_state()  # as in save(): exporting must not move the run's RNGs
            try:
                self.task.export(self.out / "best")
            finally:
                _set_rng_state(tensors, meta)
        else:
            self.best["stale"] += 1
        (self.out / "best").mkdir(parents=True, exist_ok=True)
        (self.out / "best" / "best.json").write_text(json.dumps(self.best))
        return bool(self.cfg.patience) and self.best["stale"] >= self.cfg.patience

    def _estimate(self, per: float, done: int) -> str:
        """The same estimate as ``studio plan``, from this run's own first steps."""
        from .estimate import PeakMemory, format_estimate, targets

        rows = []
        try:
            hours = sum(summarize(self.dataset.root).get("train", {}).values()) if hasattr(self.dataset, "root") else 0.0
            rows = targets(self.task, per, self.cfg.batch_size * self.world, hours)
        except (KeyError, AttributeError, StudioError, ImportError):  # a task or dataset the planner does not know
            pass
        dev = self.task.device
        peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else PeakMemory.lifetime_peak()
        return format_estimate(self.task.name, per, done, self.step, self.cfg.max_steps, rows, peak / 2**20,
                               "CUDA max allocated" if dev.type == "cuda" else "process peak RSS")

    def _replica_checksums(self) -> list[dict[str, str]]:
        mine = {k: param_checksum(m) for k, m in self.task.nets.items()}
        if self.world == 1:
            return [mine]
        out = [None] * self.world
        dist.all_gather_object(out, mine)
        return out

    # --------------------------------------------------------------------------------------------- the loop
    def fit(self) -> dict:
        cfg = self.cfg
        sampler = StepSampler(cfg.batch_size, self.step, cfg.max_steps, self.rank, self.world)
        loader = DataLoader(self.dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                            drop_last=True,
                            # its own generator: creating the iterator must not draw from the global RNG, or a
                            # resumed run would see different random numbers than an uninterrupted one
                            generator=torch.Generator().manual_seed(cfg.seed))
        old = {s: signal.signal(s, self._handle_signal) for s in (signal.SIGTERM, signal.SIGINT)} \
            if self.rank == 0 and _main_thread() else {}
        start, start_step = time.monotonic(), self.step
        last_save = start
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=self.rank != 0, desc=self.task.name,
                   dynamic_ncols=True, mininterval=2)
        for m in self.task.nets.values():
            m.train()
        history: list[dict] = []
        val: dict = {}
        estimate_printed = False
        try:
            for batch in loader:
                t0 = time.monotonic()
                logs = self.task.train_step(batch, self.step)
                self.step += 1
                bar.update(1)
                if self.rank == 0 and (self.step % cfg.log_every == 0 or self.step == cfg.max_steps):
                    bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items()})
                    for k, v in logs.items():
                        self.writer.add_scalar(f"train/{k}", v, self.step)
                    self.writer.add_scalar("train/step_seconds", time.monotonic() - t0, self.step)
                    history.append({"step": self.step, **logs})
                done = self.step - start_step
                if not estimate_printed and done == min(5, cfg.max_steps - start_step) and self.rank == 0:
                    estimate_printed = True
                    self.log(self._estimate((time.monotonic() - start) / done, done))
                patience_out = False
                if cfg.val_every and self.step % cfg.val_every == 0:
                    val = self._validate()
                    patience_out = self._track_best(val)
                timed = cfg.ckpt_minutes is not None and time.monotonic() - last_save > cfg.ckpt_minutes * 60
                if (cfg.ckpt_every and self.step % cfg.ckpt_every == 0) or timed:
                    self.save()
                    last_save = time.monotonic()
                over_time = cfg.max_minutes is not None and time.monotonic() - start > cfg.max_minutes * 60
                stop = torch.tensor(int(self._stop or over_time or patience_out))
                if self.world > 1:
                    dist.all_reduce(stop, op=dist.ReduceOp.MAX)
                if stop.item():
                    why = "time budget" if over_time else "signal" if self._stop else \
                        f"no better val/{cfg.best_metric} in {cfg.patience} validations; best at step {self.best['step']}"
                    self.log(f"stopping at step {self.step} ({why}); checkpoint saved")
                    break
        finally:
            bar.close()
            for s, h in old.items():
                signal.signal(s, h)
        if not (cfg.ckpt_every and self.step % cfg.ckpt_every == 0):
            self.save()
        if not (cfg.val_every and self.step % cfg.val_every == 0):
            val = self._validate()
            self._track_best(val)
        replicas = self._replica_checksums()
        elapsed = time.monotonic() - start
        summary = {"step": self.step, "steps_run": self.step - start_step, "seconds": elapsed,
                   "seconds_per_step": elapsed / max(1, self.step - start_step), "world_size": self.world,
                   "val": val, "best": self.best, "replicas": replicas, "history": history[-50:]}
        if self.rank == 0:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
            self.writer.close()
        if self.world > 1:
            dist.barrier()
        return summary


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
