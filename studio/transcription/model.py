"""The studio's own note transcriber: audio -> per-key note and onset posteriors at the mel frame rate.

Why not only basic-pitch: on real recordings it holds a ringing note and drops others (on ``bach_solo_cello/0.wav``
it never reports the arpeggio's D3), and the translator plays exactly what it is given. This model is trained on
the parallel renders' *exact* notes, heard through synthetic rooms and mixed with other renders, so what it learns
is what the translator needs: which notes start and sound in a recording.

Front end: two STFTs (4096 points resolve a low note's partials, 1024 points place its onset) mapped onto a
log-frequency grid of ``bins_per_semitone`` bins per semitone, each stacked at ``harmonics`` (the grid shifted so
that bin ``b`` of channel ``h`` holds frequency ``h * f(b)``: a note's partials line up in one column, as in
basic-pitch's harmonic CQT). A few 2-D convolutions over (frequency, time) pool to the 88 keys, then convolutions
over (keys, time) give the logits ``[B, 2, 88, T]``: channel 0 the note sounds, channel 1 it starts. Frame ``n``
is centred at ``(n + 0.5) * hop``, as ``studio.audio.MelSpectrogram``'s and ``studio.notes.piano_roll``'s are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..audio import AudioConfig
from ..config import from_dict
from ..errors import ConfigMismatch
from ..notes import LOWEST_MIDI, PITCHES

LOG_FLOOR = 1e-4  # the log-spectrogram's floor (-80 dB): the input level is normalised to LEVEL_DBFS first
LEVEL_DBFS = -20.0  # RMS the audio is brought to before the front end (training: each window's, +-gain_db;
# inference: the clip's active level, LearnedTranscriber)


@dataclass(frozen=True)
class TranscriberConfig:
    audio: AudioConfig = field(default_factory=AudioConfig)
    n_ffts: tuple[int, ...] = (4096, 1024)  # STFT sizes; each is a front-end channel group
    bins_per_semitone: int = 3  # log-frequency resolution (a bent or out-of-tune note stays within its key)
    harmonics: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0)  # 0.5: the sub-octave (octave errors)
    channels: int = 16  # of the frequency-resolution convolutions
    key_channels: int = 32  # of the per-key convolutions
    key_span: int = 13  # keys each key-level convolution sees, odd (an octave either side reaches the partials' keys)

    def __post_init__(self):
        if self.key_span < 1 or self.key_span % 2 == 0:
            raise ConfigMismatch(f"key_span must be odd (centred on the key), got {self.key_span}.")


def transcriber_config(d: dict) -> TranscriberConfig:
    return from_dict(TranscriberConfig, d)


def _midi_hz(m):
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69.0) / 12.0)


def log_frequency_filterbank(sample_rate: int, n_fft: int, bins: int, bins_per_semitone: int) -> torch.Tensor:
    """``[bins, n_fft // 2 + 1]``: triangular filters centred on a grid of ``bins_per_semitone`` bins per semitone
    whose bin ``bps * k + bps // 2`` is piano key ``k``; each is at least one FFT bin wide either side, so where the
    FFT is coarser than the grid (low notes, short FFT) a filter interpolates between FFT bins instead of missing
    them. Rows sum to 1 (0 above Nyquist)."""
    step = 1.0 / bins_per_semitone
    midi = LOWEST_MIDI - (bins_per_semitone // 2) * step + np.arange(-1, bins + 1) * step
    hz = _midi_hz(midi)
    fft_hz = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    df = sample_rate / n_fft
    fb = np.zeros((bins, len(fft_hz)))
    for b in range(bins):
        lo, c, hi = hz[b], hz[b + 1], hz[b + 2]
        if c >= sample_rate / 2:
            break
        lo, hi = min(lo, c - df), max(hi, c + df)
        up = (fft_hz - lo) / (c - lo)
        down = (hi - fft_hz) / (hi - c)
        fb[b] = np.clip(np.minimum(up, down), 0.0, None)
        fb[b] /= max(fb[b].sum(), 1e-12)
    return torch.from_numpy(fb).float()


class HarmonicSpectrogram(nn.Module):
    """Audio ``[B, N]`` (level-normalised) -> ``[B, len(n_ffts) * len(harmonics), 88 * bps, N // hop]``."""

    def __init__(self, cfg: TranscriberConfig):
        super().__init__()
        a, bps = cfg.audio, cfg.bins_per_semitone
        self.hop, self.n_ffts, self.bins = a.hop_length, cfg.n_ffts, PITCHES * bps
        self.shifts = [int(round(12 * bps * math.log2(h))) for h in cfg.harmonics]
        grid = self.bins + max(0, max(self.shifts))
        for n in cfg.n_ffts:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)
            self.register_buffer(f"fb_{n}", log_frequency_filterbank(a.sample_rate, n, grid, bps), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        frames = audio.shape[-1] // self.hop
        audio = audio[..., : frames * self.hop]
        out = []
        for n in self.n_ffts:
            pad = (n - self.hop) // 2  # frame t centred at (t + 0.5) * hop
            x = F.pad(audio[:, None], (pad, pad), mode="reflect" if audio.shape[-1] > pad else "constant")[:, 0]
            spec = torch.stft(x, n, self.hop, window=getattr(self, f"window_{n}"), center=False,
                              return_complex=True).abs()[..., :frames]
            grid = torch.log10(getattr(self, f"fb_{n}") @ spec + LOG_FLOOR) / 2.0 + 1.0  # -1 at the floor, ~2 at a loud partial
            for s in self.shifts:
                if s >= 0:
                    out.append(grid[:, s: s + self.bins])
                else:
                    out.append(F.pad(grid[:, : self.bins + s], (0, 0, -s, 0), value=math.log10(LOG_FLOOR) / 2 + 1))
        return torch.stack(out, 1)


class TranscriberModel(nn.Module):
    """Audio ``[B, N]`` -> logits ``[B, 2, 88, N // hop]`` (note sounding, note onset)."""

    def __init__(self, cfg: TranscriberConfig):
        super().__init__()
        self.config = cfg
        self.front = HarmonicSpectrogram(cfg)
        c, k, bps = cfg.channels, cfg.key_channels, cfg.bins_per_semitone
        cin = len(cfg.n_ffts) * len(cfg.harmonics)
        self.bins = nn.Sequential(
            nn.Conv2d(cin, c, (5, 5), padding=2), nn.GELU(),
            nn.Conv2d(c, c, (5, 5), padding=2), nn.GELU(),
            nn.Conv2d(c, k, (bps, 1), stride=(bps, 1)))  # -> one row per key
        self.keys = nn.Sequential(
            nn.GELU(), nn.Conv2d(k, k, (cfg.key_span, 3), padding=(cfg.key_span // 2, 1)),
            nn.GELU(), nn.Conv2d(k, k, (1, 9), padding=(0, 4)),
            nn.GELU(), nn.Conv2d(k, k, (1, 9), padding=(0, 8), dilation=(1, 2)),
            nn.GELU())
        self.head = nn.Conv2d(k, 2, 1)

    def context_frames(self) -> int:
        """Frames of context either side a chunk needs so that its output equals the whole clip's: the convolutions'
        reach in time (2 + 2 + 1 + 4 + 8) and the longest STFT's half window."""
        return 17 + -(-max(self.config.n_ffts) // (2 * self.config.audio.hop_length))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.front(audio)
        x = self.keys(self.bins(x))
        return self.head(x)


def normalise_level(audio: torch.Tensor) -> torch.Tensor:
    """Each row of ``[B, N]`` scaled to ``LEVEL_DBFS`` RMS (silence left as is)."""
    rms = audio.pow(2).mean(-1, keepdim=True).sqrt()
    return audio * (10 ** (LEVEL_DBFS / 20) / rms.clamp_min(1e-6))
