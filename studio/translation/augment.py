"""Local pitch shifts of the encoder input (Mor et al. 2019): random parts of each clip are shifted by up to
±0.5 semitone, so the encoder cannot identify the instrument from exact tuning and the latent stays about notes.

Done on the log-mel itself: a pitch shift by factor r moves energy at frequency f to r·f, i.e. the new mel bin k
reads the old mel at frequency f_k / r (linear interpolation on the mel axis).
"""

from __future__ import annotations

import librosa
import numpy as np
import torch

from ..audio import AudioConfig


def _shift_indices(config: AudioConfig, ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m_min, m_max = librosa.hz_to_mel(config.f_min), librosa.hz_to_mel(config.fmax)
    step = (m_max - m_min) / (config.n_mels + 1)
    centres = librosa.mel_to_hz(m_min + step * np.arange(1, config.n_mels + 1))
    pos = (librosa.hz_to_mel(centres / ratio) - m_min) / step - 1
    pos = np.clip(pos, 0, config.n_mels - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, config.n_mels - 1)
    return lo, hi, (pos - lo).astype(np.float32)


def pitch_shift_mel(mel: torch.Tensor, config: AudioConfig, semitones: float) -> torch.Tensor:
    """Shift a log-mel ``[..., n_mels, T]`` by ``semitones`` (interpolating magnitudes, not logs)."""
    lo, hi, w = _shift_indices(config, 2 ** (semitones / 12))
    lin = 10.0 ** mel
    w_t = torch.from_numpy(w).to(mel.device)[:, None]
    out = lin[..., lo, :] * (1 - w_t) + lin[..., hi, :] * w_t
    return torch.log10(out.clamp(min=config.log_floor))


def random_local_pitch_shift(mel: torch.Tensor, config: AudioConfig, generator: torch.Generator | None = None,
                             max_semitones: float = 0.5, segments: int = 2, seconds=(0.25, 1.0)) -> torch.Tensor:
    """Shift ``segments`` random spans of each item of ``mel`` ``[B, n_mels, T]`` by a random amount in ±max."""
    out = mel.clone()
    B, _, T = mel.shape
    g = generator
    for b in range(B):
        for _ in range(segments):
            length = int(torch.empty(1).uniform_(*seconds, generator=g).item() * config.frame_rate)
            length = max(1, min(T, length))
            start = int(torch.randint(0, T - length + 1, (1,), generator=g).item())
            st = float(torch.empty(1).uniform_(-max_semitones, max_semitones, generator=g).item())
            out[b, :, start: start + length] = pitch_shift_mel(out[b, :, start: start + length], config, st)
    return out
