"""Fast inference for the MelGAN generator: ``optimize(vocoder, mode)`` -> a ``FastVocoder`` (mel -> audio).

Every mode starts from a copy of the generator with weight norm folded (the vocoder itself is left untouched)
and runs under ``torch.inference_mode``:

- ``fp32``: the folded generator in float32 (PyTorch eager; oneDNN convolutions).
- ``bf16``: bfloat16 weights and activations, except the tail: the last residual stack and the output conv (32
  channels at the audio rate) stay float32. In bf16 that tail alone moves the log-mel distance by ~1%; in fp32 it
  costs ~5% of the speed-up. Fast only on CPUs with native bf16 (AVX512-BF16 / AMX) or on a GPU.
- ``onnx``: the folded generator exported to ONNX and run by ONNX Runtime (CPU, float32).
- ``auto``: the fastest of the candidates here (``FastVocoder.candidates``: ``bf16`` only on a CPU with native
  bf16, ``onnx`` when onnxruntime is installed, ``fp32``; ``fp32`` on a GPU), timed on a musical probe signal.
  ``bf16`` runs only if it first passes its quality check on the probe (``probe_fidelity``): it may change the
  log-mel distance to the probe by at most ``TOLERANCE`` (1%). A trained model passes easily (~0.1%); a
  random-init one does not (its output sits at the log floor in most mel bins, where rounding noise counts).
  ``Vocoder.inference()`` (what the CLI, the pipelines and the app run) is this mode, built once per vocoder.

Measured on a 2-core AMD EPYC (Zen 4, AVX512-BF16), torch 2.11, 1 thread, 5 s clip, under a background training
job (so ratios, not absolute times): weight-norm reference 0.75 s, folded fp32 0.72 s, TorchScript trace+freeze
fp32 0.72 s, torch.compile (inductor, freezing) fp32 0.83 s after ~50 s of compiling, ONNX Runtime fp32 0.53 s,
bf16 autocast 0.36 s, bf16 weights 0.35 s. TorchScript and torch.compile gave nothing here, so they are not
modes (TorchScript remains an export format, see ``studio.export``); bf16 weights beat autocast (no per-call
casts). ``studio bench`` measures the kept modes.

Quiet machine, 2 threads, 10 s clip (trained vocoder): the torch paths as channels-last 2-D convolutions
(``_TorchPath``) instead of 1-D modules: bf16 22x -> 34x real time, fp32 15x -> 19x; inductor compiling of the
1-D bf16 path gave 1.17x after 27 s of compiling, less than the layout change, so it is still not a mode.

Threads: torch defaults to one thread per core, the fastest on an idle machine. When other processes keep the
cores busy, fewer threads can be several times faster (OpenMP threads wait for each other at every layer); pass
``threads=1`` then, and compare with ``studio bench --threads``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import time

import numpy as np
import torch
from torch import nn

from ..errors import ConfigMismatch
from .generator import Generator
from .spectral import SpectralGenerator, window_state
from .base import _MelToAudio
from .graph import folded_copy
from .harmonic import summed_context
from ..nn import chunked, forward_2d, freeze_2d, stateless, to_2d

MODES = ("auto", "fp32", "bf16", "onnx")
CHUNK_FRAMES = {"fp32": 512, "bf16": 512, "onnx": 1024}  # frames x batch per chunk on long inputs (measured)
MAX_SPAN = {"fp32": 256, "bf16": 256, "onnx": 1024}  # frames per item per chunk, at most (measured)
MIN_CHUNK = 32
SPECTRAL_SPAN = 1024  # frames per window for the spectral generator (its state carries across windows)
TOLERANCE = 0.01  # max relative change of the log-mel distance allowed for a reduced-precision path


NATIVE_BF16_ENV = "STUDIO_NATIVE_BF16"  # 1 / 0: override the detection (e.g. to try the other choice)
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below its first bf16 ISA: a CPU limited to these computes bf16 emulated
_NO_BF16_ISAS = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def cpu_features() -> list[str]:
    """The CPU's SIMD flags that decide the fast path (x86 ``/proc/cpuinfo``; ARM ``asimd``/``bf16``/``sve``)."""
    keep = {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8",
            "avx_vnni", "asimd", "bf16", "sve", "sve2"}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return sorted(keep & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []


def native_bf16_reason() -> tuple[bool, str]:
    """Whether bf16 runs in hardware here, and why: the override env var, else an ISA cap that simulates an older
    CPU (``ATEN_CPU_CAPABILITY=avx2`` / ``default``, ``ONEDNN_MAX_CPU_ISA`` below bf16: the kernels then run as
    on that CPU), else the CPU flags (x86 AVX512-BF16 or AMX; emulated bf16 is several times slower than fp32)."""
    forced = os.environ.get(NATIVE_BF16_ENV, "").strip().lower()
    if forced in ("0", "1", "true", "false", "yes", "no"):
        return forced in ("1", "true", "yes"), f"{NATIVE_BF16_ENV}={forced}"
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).strip().upper()
    if isa in _NO_BF16_ISAS:
        return False, f"ONEDNN_MAX_CPU_ISA={isa}"
    cap = torch.backends.cpu.get_cpu_capability()
    if cap in ("DEFAULT", "AVX2"):  # ATEN_CPU_CAPABILITY capped, or a CPU without AVX-512
        return False, f"ATen CPU capability {cap}"
    flags = cpu_features()
    hw = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return bool(hw), "CPU flags " + (" ".join(hw) if hw else "without avx512_bf16/amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (see ``native_bf16_reason``)."""
    return native_bf16_reason()[0]


def onnxruntime_available() -> bool:
    """True when the onnx mode can run: onnxruntime, and onnx for the export (``pip install '.[export]'``)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _pad_short(mel: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Reflection padding (3) needs 4 frames: repeat the edge as ``Generator.forward`` does."""
    frames = mel.shape[-1]
    if frames < 4:
        mel = nn.functional.pad(mel, (0, 4 - frames), mode="replicate")
    return mel, frames


@contextlib.contextmanager
def num_threads(n: int | None):
    """Run with ``torch.set_num_threads(n)`` and restore the previous value (no-op for None)."""
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class _TorchPath(nn.Module):
    """The folded generator's layers, ``body`` in ``dtype`` and ``tail`` in float32, run as channels-last 2-D ops
    (``studio.nn.forward_2d``: measured here, 2 threads, 10 s clip: bf16 1.8x and fp32 1.15x faster than 1-D)."""

    def __init__(self, generator: Generator, dtype: torch.dtype):
        super().__init__()
        layers = list(generator.net)
        split = len(layers)
        if dtype != torch.float32:  # the tail starts at the last residual stack
            split = max(i for i, m in enumerate(layers) if isinstance(m, nn.Sequential))
        self.dtype = dtype
        self.body = freeze_2d(nn.Sequential(*layers[:split]).to(dtype))
        self.tail = freeze_2d(nn.Sequential(*layers[split:]))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = forward_2d(self.body, to_2d(mel.to(self.dtype)))
        return forward_2d(self.tail, x.float()).squeeze(2)


class _WindowPath(nn.Module):
    """A path that runs window by window (``studio.nn``'s chunk step) with its generator's settings and context."""

    generator: SpectralGenerator

    @property
    def config(self):
        return self.generator.config

    def context_frames(self) -> tuple[int, int]:
        return self.generator.context_frames()


class _SpectralPath(_WindowPath):
    """The spectral generator: its frame-rate backbone in ``dtype`` (bf16 autocast), the synthesis in float32
    (``SpectralGenerator.synthesize`` leaves autocast). Windows of long inputs carry the running phase."""

    def __init__(self, generator: SpectralGenerator, dtype: torch.dtype):
        super().__init__()
        self.generator, self.dtype = generator, dtype

    def chunk(self, mel, window_start, keep_from, keep_to, state=None):
        with torch.autocast(mel.device.type, dtype=torch.bfloat16, enabled=self.dtype == torch.bfloat16):
            return self.generator.chunk(mel, window_start, keep_from, keep_to, state)


class _SpectralOnnxPath(_WindowPath):
    """The spectral generator's ONNX graph (``studio.vocoder.graph.SpectralGraph``), window by window with its state."""

    def __init__(self, generator: SpectralGenerator, threads: int | None):
        super().__init__()
        self.generator = generator
        self.session = _OnnxPath(generator, threads).session

    def chunk(self, mel, window_start, keep_from, keep_to, state=None):
        f, D, rel, nxt = window_state(state, window_start, keep_to, mel.shape[-1])
        x = np.ascontiguousarray(mel.detach().float().cpu().numpy())
        phase = np.zeros((x.shape[0], self.generator.config.bins), np.float32) if D is None else D.cpu().numpy()
        i = lambda v: np.array([v], np.int64)
        y, D_next = self.session.run(None, {"mel": x, "phase": phase, "phase_at": i(rel),
                                            "start_frame": i(window_start), "carry_at": i(nxt - window_start)})
        hop = self.generator.config.audio.hop_length
        return torch.from_numpy(y[..., keep_from * hop: keep_to * hop]), (nxt, torch.from_numpy(D_next))


class _OnnxPath:
    def __init__(self, generator: Generator, threads: int | None):
        import onnxruntime as ort

        from .graph import cached_onnx_bytes

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(cached_onnx_bytes(generator), so, providers=["CPUExecutionProvider"])

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(mel.detach().float().cpu().numpy())
        return torch.from_numpy(self.session.run(None, {"mel": x})[0])


class FastVocoder(_MelToAudio):
    """Same interface as ``Vocoder``: ``fast(mel [B, n_mels, frames]) -> audio [B, 1, frames * hop]`` (float32),
    ``resynthesize(file_or_array)``; plus ``mode`` (the path in use), ``fidelity`` (the relative change of the
    probe's log-mel distance of bf16, when checked, else None) and ``timings`` (``auto``: seconds per probe run of
    each candidate that passed).

    Long inputs run in overlapping chunks of ``chunk_frames / batch`` frames (at least 32; ``streaming``), which
    gives the same output (context from the receptive field) and is faster on a CPU: the working set stays in
    cache and memory stays bounded. ``chunk_frames``: None for the measured default of the mode, 0 for one shot.
    Measured here (2 threads, quiet, channels-last path, bf16): 8 x 10 s 15x real time in one shot, 31x in chunks of
    512 frames x batch (64 per item; 23x at 32); a 10 s clip 31x in one shot, 36x in 256-frame chunks, 32x in 512.
    Hence chunks of ``CHUNK_FRAMES / batch`` frames, at most ``MAX_SPAN``. ONNX Runtime prefers 1024 frames.
    """

    def __init__(self, vocoder, mode: str = "auto", *, threads: int | None = None, verify: bool | None = None,
                 chunk_frames: int | None = None):
        super().__init__()
        if mode not in MODES:
            raise ConfigMismatch(f"unknown inference mode {mode!r}; accepted: {', '.join(MODES)}.")
        self.config = vocoder.config
        self.generator_config = vocoder.generator_config
        self.mel = vocoder.mel
        self.generator = folded_copy(vocoder.generator)
        bank = getattr(vocoder, "harmonic", None)  # the oscillator bank: float32 eager on every path (cheap)
        self.harmonic = copy.deepcopy(bank).eval().requires_grad_(False) if bank is not None else None
        self.threads = threads
        self.chunk_frames = chunk_frames  # frames x batch per chunk; None: per mode (CHUNK_FRAMES); 0: one shot
        self.context = self.generator.context_frames()  # the path's (the bank runs after it, one shot)
        self.fidelity: float | None = None
        self.timings: dict[str, float] = {}  # auto: seconds per probe run of each candidate that passed its check
        device = self.device
        if mode == "onnx" and device.type != "cpu":
            raise ConfigMismatch("the onnx mode runs on the CPU; move the vocoder to the CPU or use fp32/bf16.")
        if mode == "auto":
            self._pick_fastest(device, verify is not False)
        else:
            self._set_path(mode)
            if verify and mode == "bf16":
                self.fidelity = probe_fidelity(self)
                if self.fidelity > TOLERANCE:
                    self._set_path("onnx" if device.type == "cpu" and onnxruntime_available() else "fp32")
        self.name = f"{getattr(vocoder, 'name', 'melgan')}[{self.mode}]"

    @staticmethod
    def candidates(device: torch.device) -> list[str]:
        """The modes ``auto`` tries here: bf16 only where it is native (emulated it is several times slower than
        fp32), onnx on a CPU with onnxruntime, fp32 always."""
        if device.type == "cuda":
            return ["fp32"]
        return (["bf16"] if cpu_has_native_bf16() else []) + (["onnx"] if onnxruntime_available() else []) + ["fp32"]

    def _pick_fastest(self, device: torch.device, verify: bool = True) -> None:
        """``auto``: the fastest candidate on the probe that keeps the log-mel distance within ``TOLERANCE``.
        Which wins depends on the CPU and on its load (the shipped vocoder on a 2-core machine under other jobs:
        ONNX Runtime 1.4-7x faster than eager fp32 and bf16 1.1-1.8x where native; in one earlier run bf16 was
        ahead of ONNX, 13.6x vs 7.4x the reference), so it is timed here."""
        x = torch.from_numpy(probe_audio(self.config.sample_rate, 1.0)).to(device)
        with torch.inference_mode():
            mel = self.mel(x)  # 1 s: long enough to rank the paths, short enough to start in well under a second
        built = {}
        for mode in self.candidates(device):
            self._set_path(mode)
            if mode == "bf16" and verify:
                self.fidelity = probe_fidelity(self)
                if self.fidelity > TOLERANCE:
                    continue
            built[mode] = (self.path, self._onnx)
            t0 = time.perf_counter()
            self.run(mel)  # warm-up: first-call allocations and kernel selection (an upper bound of a run)
            warm = time.perf_counter() - t0
            if self.timings and warm > 3 * min(self.timings.values()):
                self.timings[mode] = warm  # clearly slower: not worth a second run
                continue
            t0 = time.perf_counter()
            self.run(mel)
            self.timings[mode] = min(warm, time.perf_counter() - t0)
        best = min(self.timings, key=self.timings.get)
        self._use(best, *built[best])

    def _set_path(self, mode: str) -> None:
        dtype = torch.bfloat16 if mode == "bf16" else torch.float32
        if self.windowed:  # the spectral generator: its state goes window to window
            self._use(mode, _SpectralOnnxPath(self.generator, self.threads) if mode == "onnx"
                      else _SpectralPath(self.generator, dtype), None)
        elif mode == "onnx":
            self._use(mode, None, _OnnxPath(self.generator, self.threads))
        else:  # the path rewrites its layers in place: give it its own copy
            self._use(mode, _TorchPath(folded_copy(self.generator), dtype), None)

    def _use(self, mode: str, path, onnx) -> None:
        self.mode, self.path, self._onnx = mode, path, onnx
        self.dtype = torch.bfloat16 if mode == "bf16" else torch.float32

    def run(self, mel: torch.Tensor, start_frame: int = 0) -> torch.Tensor:
        """The selected path on a checked mel, without the input checks (used by the probe and benchmarks).
        ``start_frame``: where ``mel`` starts in a longer signal (the oscillator bank's phase, if any)."""
        if self.windowed:
            return self._run_windows(mel, start_frame)
        mel, frames = _pad_short(mel)
        fn = self._onnx if self._onnx is not None else self.path
        budget = CHUNK_FRAMES[self.mode] if self.chunk_frames is None else self.chunk_frames
        span = max(MIN_CHUNK, budget // mel.shape[0]) if budget else 0
        if self.chunk_frames is None:
            span = min(span, MAX_SPAN[self.mode])
        with torch.inference_mode(), num_threads(self.threads):
            if span and mel.shape[-1] > span + sum(self.context):
                # the paths take no start frame: the oscillator bank, the one part that needs it, comes after
                y = chunked(stateless(lambda m, start_frame: fn(m), self.config.hop_length), mel, span, self.context,
                            self.config.hop_length)
            else:
                y = fn(mel)
            # the oscillator bank (if any) is cheap and needs absolute time: float32, one shot, after the chunks
            if self.harmonic is not None:
                y = self.harmonic.add_to(y.float(), mel, start_frame)
        return y[..., : frames * self.config.hop_length]

    @property
    def windowed(self) -> bool:
        """Whether the generator carries state between windows (the spectral one) and runs window by window."""
        return isinstance(self.generator, SpectralGenerator)

    def _run_windows(self, mel: torch.Tensor, start_frame: int = 0) -> torch.Tensor:
        """Generators with state between windows (the spectral one): ``vocode_long`` over the path."""
        from .streaming import vocode_long

        # its context is wide (left 56 frames): windows of 1024 frames keep the recomputed context under 6%
        span = SPECTRAL_SPAN if self.chunk_frames is None else (self.chunk_frames or mel.shape[-1])
        with torch.inference_mode(), num_threads(self.threads):
            return vocode_long(self.path, mel, span, self.context, start_frame=start_frame)

    def chunk(self, mel: torch.Tensor, window_start: int, keep_from: int, keep_to: int, state=None):
        """``studio.nn``'s chunk step (one window of a long signal) on the selected path."""
        mel = self._check_mel(mel).to(self.device)
        if self.windowed:
            with torch.inference_mode(), num_threads(self.threads):
                return self.path.chunk(mel, window_start, keep_from, keep_to, state)
        return stateless(self.run, self.config.hop_length)(mel, window_start, keep_from, keep_to)

    def context_frames(self) -> tuple[int, int]:
        """Mel frames ``(left, right)`` that the samples of one frame depend on (the generator's and the bank's)."""
        return summed_context(self.generator, self.harmonic)

    def reference(self, mel: torch.Tensor) -> torch.Tensor:
        """The float32 folded generator and the bank (the output every mode is compared with)."""
        with torch.inference_mode(), num_threads(self.threads):
            y = self.generator(mel.float())
            return y if self.harmonic is None else self.harmonic.add_to(y, mel.float())

    def forward(self, mel: torch.Tensor, start_frame: int = 0) -> torch.Tensor:
        return self.run(self._check_mel(mel).to(self.device), start_frame)


def optimize(vocoder, mode: str = "auto", *, threads: int | None = None, verify: bool | None = None,
             chunk_frames: int | None = None) -> FastVocoder:
    """A fast ``mel -> audio`` callable for ``vocoder`` (see the module docstring for the modes).

    ``threads``: torch / ONNX Runtime intra-op threads during each call (None: torch's current setting).
    ``verify``: check a reduced-precision path on a probe and fall back to float32 (onnx, else fp32) beyond
    ``TOLERANCE`` (default: only in ``auto`` mode).
    ``chunk_frames``: frames x batch per chunk on long inputs (None: the mode's default; 0: never chunk).
    """
    return FastVocoder(vocoder, mode, threads=threads, verify=verify, chunk_frames=chunk_frames)


def probe_audio(sample_rate: int, seconds: float = 2.0) -> np.ndarray:
    """A deterministic musical probe: decaying harmonic notes (a C-major arpeggio over two octaves) and a bit of
    noise, peak 0.5."""
    rng = np.random.default_rng(0)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    y = np.zeros(n)
    notes = [48, 52, 55, 60, 64, 67, 72]
    step = n // len(notes)
    for i, midi in enumerate(notes):
        f0 = 440.0 * 2 ** ((midi - 69) / 12)
        tt = t[: n - i * step]
        env = np.exp(-3.0 * tt) * (1 - np.exp(-tt / 0.005))
        tone = sum(np.sin(2 * math.pi * f0 * k * tt) / k**1.5 for k in range(1, 9) if f0 * k < sample_rate / 2)
        y[i * step:] += env * tone
    y += 0.003 * rng.standard_normal(n)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def relative_change(x, y_ref, y_fast, config) -> float:
    """``|mel_l1(x, y_fast) - mel_l1(x, y_ref)| / mel_l1(x, y_ref)``: how much a fast path moves the quality."""
    from ..metrics import mel_l1

    d_ref = mel_l1(x, y_ref, config)
    return abs(mel_l1(x, y_fast, config) - d_ref) / max(d_ref, 1e-12)


def probe_fidelity(fast: FastVocoder) -> float:
    """The relative change of the log-mel distance on ``probe_audio`` between ``fast``'s path and float32."""
    x = torch.from_numpy(probe_audio(fast.config.sample_rate)).to(fast.device)
    with torch.inference_mode():
        mel = fast.mel(x)
        y_ref, y_fast = fast.reference(mel)[0, 0].cpu(), fast.run(mel)[0, 0].float().cpu()
    return relative_change(x.cpu(), y_ref, y_fast, fast.config)
