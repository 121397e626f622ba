"""What the translator's input goes through in training and evaluation.

- Local pitch shifts of the encoder input (Mor et al. 2019; universal mode): random parts of each clip are shifted
  by up to ±0.5 semitone, so the encoder cannot identify the instrument from exact tuning and the latent stays
  about notes.
- ``room_and_recording`` (notes mode, ``--recorded``): a clean render's mel made to sound recorded, on the mel.
- (the same kind of conditions on audio: ``studio.rooms.room_audio``)

Pitch shifts are done on the log-mel itself: a pitch shift by factor r moves energy at frequency f to r·f, i.e. the
new mel bin k reads the old mel at frequency f_k / r (linear interpolation on the mel axis).
"""

from __future__ import annotations

import librosa
import numpy as np
import torch
from torchaudio.functional import fftconvolve

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


def room_and_recording(mel: torch.Tensor, config: AudioConfig, generator: torch.Generator | None = None,
                       p: float = 0.5) -> torch.Tensor:
    """A clean render's log-mel ``[B, n_mels, T]`` made to sound recorded, each item with its own draw: a room's
    exponential tail (RT60 0.3-2.5 s, wet share 0.2-1), a stationary noise floor 35-70 dB below the clip's peak
    (tilted ±10 dB across the bands, flickering ±15% per band and frame), and a low-pass (at 4.7 kHz or above) as old
    or lossy recordings have; each part applies with probability ``p``.

    Why: the translator reads the source's mel, and real recordings (e.g. ../shared/audio/music) carry a room, hiss
    and a band limit that parallel renders never do; a decoder trained only on clean sources holds the room's ringing
    as notes. Done on magnitudes (10 ** log-mel): the tail is a causal convolution along time per mel band; the parts
    add as magnitudes, not powers (a little louder than uncorrelated sound would be: +6 dB rather than +3 dB for two
    equal parts), which only shifts the draw's ranges."""
    g = generator
    B, M, T = mel.shape
    rand = lambda *s: torch.rand(*s, generator=g).to(mel.device)
    lin = 10.0 ** mel.float()
    t = torch.arange(T, device=mel.device, dtype=torch.float32)
    # room: h[k] = wet * (1 - a) * a^k for k >= 1 (magnitude decays 60 dB over rt60, i.e. by 10^-3)
    rt60 = 0.3 + 2.2 * rand(B, 1)
    a = 10.0 ** (-3.0 / (rt60 * config.frame_rate))
    wet = (0.2 + 0.8 * rand(B, 1)) * (rand(B, 1) < p)
    h = wet * (1 - a) * a ** (t[None] - 1).clamp(min=0) * (t[None] >= 1)  # [B, T]
    tail = fftconvolve(lin, h[:, None, :])[..., :T]
    lin = lin + tail.clamp(min=0)
    # noise floor: a tilted stationary spectrum relative to the peak frame's mean magnitude, flickering
    peak = lin.mean(1).amax(-1)[:, None, None]
    tilt = torch.linspace(-1, 1, M, device=mel.device)[None, :, None]
    db = -(35 + 35 * rand(B, 1, 1)) + (rand(B, 1, 1) - 0.5) * 20 * tilt
    wobble = 1 + 0.3 * (rand(B, M, T) - 0.5)
    lin = lin + peak * 10 ** (db / 20) * wobble * (rand(B, 1, 1) < p)
    # band limit: bands above a cut at the floor (the recording holds nothing there)
    fmel = torch.linspace(0, 1, M, device=mel.device)[None, :, None]
    cut = 0.75 + 0.25 * rand(B, 1, 1)  # share of the mel axis kept (0.75 of 80 bands at 22.05 kHz: 4.7 kHz)
    lin = torch.where((fmel > cut) & (rand(B, 1, 1) < p), torch.zeros_like(lin), lin)
    return torch.log10(lin.clamp(min=config.log_floor)).to(mel.dtype)
