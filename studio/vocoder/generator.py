"""The MelGAN generator (Kumar et al. 2019, Fig. 1 / Appendix A)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import nn

from ..audio import AudioConfig
from ..errors import ConfigMismatch
from ..nn import conv, forward_2d, input_span, residual_stack, stateless, to_2d
from torch.nn.utils.parametrizations import weight_norm


@dataclass(frozen=True)
class GeneratorConfig:
    """Paper defaults: 512 channels after the input conv, upsampling 8*8*2*2 = hop 256, dilations 1/3/9."""

    audio: AudioConfig = field(default_factory=AudioConfig)
    channels: int = 512  # generator width after the input conv (paper: 512)
    ratios: tuple[int, ...] = (8, 8, 2, 2)  # upsampling ratios; their product is the hop (paper: 8 8 2 2)
    dilations: tuple[int, ...] = (1, 3, 9)  # of each residual stack's convs (paper: 1 3 9)
    weight_norm: bool = True  # on every conv (paper: yes)

    def __post_init__(self):
        if math.prod(self.ratios) != self.audio.hop_length:
            raise ConfigMismatch(
                f"upsampling ratios {list(self.ratios)} multiply to {math.prod(self.ratios)}, "
                f"but the hop length is {self.audio.hop_length}; their product must equal the hop."
            )
        if self.channels % 2 ** len(self.ratios):
            raise ConfigMismatch(f"channels ({self.channels}) must be divisible by 2**{len(self.ratios)}.")


class Generator(nn.Module):
    """Log-mel ``[B, n_mels, frames]`` -> waveform ``[B, 1, frames * hop]`` in [-1, 1].

    Input conv (7 taps) to ``channels``; per ratio r: LeakyReLU, transposed conv (kernel 2r, stride r) halving the
    channels, then a residual stack; finally LeakyReLU, 7-tap conv to 1 channel, tanh. All convs weight-normed
    and reflection-padded as in the paper. (The oscillator bank, when a vocoder has one, sits beside it in
    ``Vocoder``.)
    """

    def __init__(self, config: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        self.config = config
        wn = config.weight_norm
        ch = config.channels
        layers = [nn.ReflectionPad1d(3), conv(config.audio.n_mels, ch, 7, norm=wn)]
        for r in config.ratios:
            up = nn.ConvTranspose1d(ch, ch // 2, 2 * r, stride=r, padding=r // 2 + r % 2, output_padding=r % 2)
            layers += [nn.LeakyReLU(0.2), weight_norm(up) if wn else up, residual_stack(ch // 2, config.dilations, norm=wn)]
            ch //= 2
        layers += [nn.LeakyReLU(0.2), nn.ReflectionPad1d(3), conv(ch, 1, 7, norm=wn), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        # Run as channels-last 2-D ops (``studio.nn.forward_2d``): same function and parameters, faster on a CPU.
        self.channels_last = False

    def forward(self, mel, start_frame: int = 0, phase=None):
        """``start_frame``, ``phase``: unused (the paper's generator is time-invariant); every architecture takes
        them (the spectral one carries a running phase)."""
        if mel.dim() != 3 or mel.shape[1] != self.config.audio.n_mels:
            raise ConfigMismatch(
                f"the generator expects a mel of shape [batch, {self.config.audio.n_mels}, frames], got {list(mel.shape)}."
            )
        frames = mel.shape[-1]
        if frames < 4:  # reflection padding (3) needs 4 frames: repeat the edge, then cut the output back
            mel = nn.functional.pad(mel, (0, 4 - frames), mode="replicate")
        y = forward_2d(self.net, to_2d(mel)).squeeze(2) if self.channels_last else self.net(mel)
        return y[..., : frames * self.config.audio.hop_length]

    def chunk(self, mel, window_start: int, keep_from: int, keep_to: int, state=None):
        """``studio.nn``'s chunk step: the audio of frames ``[keep_from, keep_to)`` of one window of a long signal;
        no state."""
        return stateless(self, self.config.audio.hop_length)(mel, window_start, keep_from, keep_to)

    def context_frames(self) -> tuple[int, int]:
        """Mel frames ``(left, right)`` of context that the samples of one frame depend on."""
        hop = self.config.audio.hop_length
        lo, hi = input_span(self.net, 0, hop - 1)  # the samples of frame 0
        return -lo, hi
