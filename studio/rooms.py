"""A clean clip heard as a recording (room, noise floor, band limit), on audio: for evaluating on held-out renders
whose exact notes and targets are known (``studio eval translate --room``, ``studio eval transcribe --room``) and for
training the transcriber (``studio.transcription.train``)."""

from __future__ import annotations

import numpy as np
import torch
from torchaudio.functional import fftconvolve


def room_audio(x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A clean mono clip heard as a recording: a diffuse room (exponentially decaying noise, RT60 0.5-2 s, wet level
    0.3-1 x the dry), a white noise floor 40-60 dB below the peak and a low-pass at 5-9 kHz; the peak level kept.
    In evaluation the held-out renders keep their exact notes and target, so how well a model hears through a
    room is measured against ground truth, which real recordings never give."""
    x = np.asarray(x, dtype=np.float64)
    rt60 = rng.uniform(0.5, 2.0)
    t = np.arange(int(rt60 * sample_rate)) / sample_rate
    ir = rng.standard_normal(len(t)) * 10.0 ** (-3.0 * t / rt60)
    ir[: int(0.005 * sample_rate)] = 0.0  # the first reflections arrive after the direct sound
    wet = fftconvolve(torch.from_numpy(x), torch.from_numpy(ir))[: len(x)].numpy()
    wet *= rng.uniform(0.3, 1.0) * np.sqrt(np.mean(x**2) / max(np.mean(wet**2), 1e-20))
    peak = np.abs(x).max()
    y = x + wet + rng.standard_normal(len(x)) * peak * 10.0 ** (-rng.uniform(40, 60) / 20)
    spec = np.fft.rfft(y)
    f = np.fft.rfftfreq(len(y), 1 / sample_rate)
    cut = rng.uniform(5000, 9000)
    spec *= np.clip((cut - f) / (cut * 0.1), 0, 1)  # linear roll-off over the last 10% below the cut
    y = np.fft.irfft(spec, len(y))
    return (y * peak / max(np.abs(y).max(), 1e-9)).astype(np.float32)
