"""An oscillator bank beside the MelGAN generator (``Vocoder.harmonic``; not in the paper): the phase that a mel
does not carry.

Why: the generator is a stack of convolutions whose upsampling strides multiply to the hop, so wherever its input
mel is steady (a held note) its output repeats every hop: a comb at multiples of sr / hop (86.1 Hz here) instead of
the note's partials. The magnitude mel holds no phase for the network to continue from one frame to the next, and
on speech, whose pitch always moves, the adversarial training of the paper hides this; on sustained music it does
not (``studio.metrics.frame_locked`` measures the comb). This bank supplies the missing running phase: one sinusoid
per equal-tempered pitch whose phase runs on in absolute time, ``sin(2 pi f_k t / sr)``, each scaled by an
amplitude that a small convolutional net predicts from the mel (one value per frame, interpolated linearly between
frame centres). The generator's output and the bank's are summed.

Shapes: mel ``[B, n_mels, frames]`` -> audio ``[B, 1, frames * hop]``. The phase is a function of the absolute
sample index, so a chunk of a longer signal must say where it starts (``start_frame``): chunked and streamed
outputs then equal the one-shot output. In training, each item gets random phases instead (absolute time means
nothing in a random segment).

Cost: per frame, the net (about 0.9 M multiply-adds at 384 channels) and four ``[K] x [K, hop]`` products for the
synthesis, with no ``[K, samples]`` tensor ever built: memory grows with frames, not with ``K * samples``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..audio import AudioConfig
from ..errors import ConfigMismatch
from ..nn import input_span, residual_stack


@dataclass(frozen=True)
class HarmonicConfig:
    """Oscillators on the equal-tempered grid from MIDI note ``lowest`` to ``highest`` (``steps_per_semitone``
    per semitone, A4 = ``tuning`` Hz; pitches above 0.45 * sample rate are dropped), amplitudes from a net of
    ``channels`` with a residual stack of ``dilations`` over the mel frames."""

    lowest: int = 24  # C1, 32.7 Hz
    highest: int = 108  # C8, 4186 Hz: the partials above come from the generator
    steps_per_semitone: int = 1
    tuning: float = 440.0
    channels: int = 384
    dilations: tuple[int, ...] = (1, 2, 4)

    def __post_init__(self):
        if not 0 <= self.lowest <= self.highest or self.steps_per_semitone < 1 or self.tuning <= 0:
            raise ConfigMismatch(f"invalid oscillator bank {self}: need 0 <= lowest <= highest, steps >= 1, tuning > 0.")

    def frequencies(self, sample_rate: int) -> torch.Tensor:
        """The oscillators' frequencies in Hz, float64, ascending."""
        s = self.steps_per_semitone
        midi = torch.arange(self.lowest * s, self.highest * s + 1, dtype=torch.float64) / s
        f = self.tuning * 2.0 ** ((midi - 69.0) / 12.0)
        return f[f < 0.45 * sample_rate]


class HarmonicBank(nn.Module):
    """Log-mel ``[B, n_mels, frames]`` -> sum of amplitude-scaled running sinusoids ``[B, 1, frames * hop]``."""

    def __init__(self, audio: AudioConfig, config: HarmonicConfig = HarmonicConfig()):
        super().__init__()
        self.audio, self.config = audio, config
        freqs = config.frequencies(audio.sample_rate)
        if len(freqs) == 0:
            raise ConfigMismatch(f"no oscillator of {config} lies below 0.45 x {audio.sample_rate} Hz.")
        self.top_hz = float(freqs.max())  # the highest oscillator: the bank's band ends here
        omega = 2 * math.pi * freqs / audio.sample_rate  # rad / sample
        self.register_buffer("omega", omega, persistent=False)  # float64: phases of long signals stay exact
        hop = audio.hop_length
        j = torch.arange(hop, dtype=torch.float64)
        self.register_buffer("cos_hop", torch.cos(omega[:, None] * j).float(), persistent=False)  # [K, hop]
        self.register_buffer("sin_hop", torch.sin(omega[:, None] * j).float(), persistent=False)
        self.register_buffer("ramp", (j / hop).float(), persistent=False)
        ch = config.channels
        self.net = nn.Sequential(nn.ReflectionPad1d(2), nn.Conv1d(audio.n_mels, ch, 5),
                                 residual_stack(ch, config.dilations, norm=False), nn.LeakyReLU(0.2),
                                 nn.Conv1d(ch, len(freqs), 1))
        # Start silent: amplitudes of sigmoid(-9) ~ 1e-4, and no dependence on the mel yet.
        nn.init.zeros_(self.net[-1].weight)
        nn.init.constant_(self.net[-1].bias, -9.0)

    @property
    def size(self) -> int:
        return len(self.omega)

    def context_frames(self) -> tuple[int, int]:
        """Mel frames ``(left, right)`` that the samples of one frame depend on: the net's, +-1 for interpolation."""
        lo, hi = input_span(self.net, -1, 1)
        return -lo, hi

    def add_to(self, y: torch.Tensor, mel: torch.Tensor, start_frame: int = 0, phase: torch.Tensor | None = None,
               keep_from: int = 0, run: nn.Module | None = None) -> torch.Tensor:
        """``y`` (a generator's audio of frames ``keep_from ...`` of ``mel``) plus the bank's; clamped to [-1, 1]
        outside training (the sum of two bounded outputs is not). ``run``: the module to call for the bank's output
        (its DDP wrapper in a distributed training step; default the bank itself)."""
        a = keep_from * self.audio.hop_length
        h = (run or self)(mel, start_frame, phase)
        y = y + h[..., a: a + y.shape[-1]]  # float32 (a bf16 ``y`` is promoted)
        return y if self.training else y.clamp(-1.0, 1.0)

    def amplitudes(self, mel: torch.Tensor) -> torch.Tensor:
        """Linear amplitudes ``[B, K, frames]`` in (0, 1), one per oscillator and frame (at the frame centre).
        A sigmoid: like ``exp`` for quiet oscillators, bounded without a clamp's dead gradient for loud ones."""
        frames = mel.shape[-1]
        need = max(2, *self.config.dilations) + 1  # reflection padding needs more frames than it pads
        if frames < need:  # repeat the edge, as the generator does for its own padding, then cut back
            mel = nn.functional.pad(mel, (0, need - frames), mode="replicate")
        return torch.sigmoid(self.net(mel.float()))[..., :frames]

    def forward(self, mel: torch.Tensor, start_frame: int = 0, phase: torch.Tensor | None = None) -> torch.Tensor:
        """``phase``: ``[B, K]`` radians at sample 0 (training: random); default 0, i.e. absolute time from the
        start of the signal, of which ``mel`` starts at frame ``start_frame``."""
        with torch.autocast(mel.device.type, enabled=False):  # sinusoids in bf16 would add a -50 dB noise floor
            return self._synthesize(self.amplitudes(mel), start_frame, phase)

    def _synthesize(self, a: torch.Tensor, start_frame: int, phase: torch.Tensor | None) -> torch.Tensor:
        B, K, N = a.shape
        hop = self.audio.hop_length
        # Frame n is centred on sample n * hop + hop / 2 (``AudioConfig``). Block i (i = 0..N) runs from the centre
        # of frame i - 1 to that of frame i and ramps the amplitude linearly between them (held at the edges).
        a_pad = torch.cat([a[..., :1], a, a[..., -1:]], dim=-1)
        a0, a1 = a_pad[..., :-1], a_pad[..., 1:]  # [B, K, N + 1]
        starts = (torch.arange(N + 1, dtype=torch.float64, device=a.device) + start_frame - 1) * hop + hop // 2
        theta = self.omega[:, None] * starts  # [K, N + 1]: phase at each block's first sample
        if phase is not None:  # [B, K, N + 1]; otherwise shared by the batch, broadcast below
            theta = theta + phase.to(theta)[..., None]
        theta = torch.remainder(theta, 2 * math.pi).float()
        s, c = torch.sin(theta), torch.cos(theta)
        # sin(theta + w j) = sin(theta) cos(w j) + cos(theta) sin(w j), summed over k as two matrix products
        def blocks(amp):
            return (amp * s).transpose(1, 2) @ self.cos_hop + (amp * c).transpose(1, 2) @ self.sin_hop  # [B, N+1, hop]

        y = blocks(a0) * (1 - self.ramp) + blocks(a1) * self.ramp
        off = hop - hop // 2  # sample 0 sits half a hop into block 0
        return y.reshape(B, 1, -1)[..., off: off + N * hop]


def summed_context(generator, bank: HarmonicBank | None) -> tuple[int, int]:
    """Context frames ``(left, right)`` of ``generator``'s output summed with ``bank``'s (None: no bank)."""
    lo, hi = generator.context_frames()
    if bank is None:
        return lo, hi
    b_lo, b_hi = bank.context_frames()
    return max(lo, b_lo), max(hi, b_hi)
