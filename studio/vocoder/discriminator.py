"""The MelGAN multi-scale window discriminator (Kumar et al. 2019, Sec. 2.2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn import conv, conv1d_space_to_depth


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Paper defaults: 3 scales, 16 base channels, 4 strided grouped layers (stride 4, 41 taps), up to 1024 ch."""

    scales: int = 3
    channels: int = 16
    layers: int = 4
    stride: int = 4
    max_channels: int = 1024
    weight_norm: bool = True


class ScaleDiscriminator(nn.Module):
    """Waveform ``[B, 1, T]`` -> list of feature maps, the last being the per-window score ``[B, 1, T']``."""

    def __init__(self, c: DiscriminatorConfig):
        super().__init__()
        wn = c.weight_norm
        blocks = [nn.Sequential(nn.ReflectionPad1d(7), conv(1, c.channels, 15, norm=wn), nn.LeakyReLU(0.2))]
        ch = c.channels
        for _ in range(c.layers):
            out = min(ch * c.stride, c.max_channels)
            blocks.append(nn.Sequential(
                conv(ch, out, c.stride * 10 + 1, stride=c.stride, padding=c.stride * 5, groups=ch // 4, norm=wn),
                nn.LeakyReLU(0.2),
            ))
            ch = out
        out = min(ch * 2, c.max_channels)
        blocks.append(nn.Sequential(conv(ch, out, 5, padding=2, norm=wn), nn.LeakyReLU(0.2)))
        blocks.append(conv(out, 1, 3, padding=1, norm=wn))
        self.blocks = nn.ModuleList(blocks)
        self.strided = range(1, 1 + c.layers)  # the blocks (strided grouped conv, LeakyReLU)
        self.space_to_depth = False  # strided convs as stride-1 convs (``conv1d_space_to_depth``): faster on a CPU

    def forward(self, x) -> list[torch.Tensor]:
        feats = []
        for i, b in enumerate(self.blocks):
            if self.space_to_depth and i in self.strided:
                x = b[1](conv1d_space_to_depth(b[0], x))
            else:
                x = b(x)
            feats.append(x)
        return feats


class MultiScaleDiscriminator(nn.Module):
    """``scales`` identical discriminators on the waveform downsampled by 1, 2, 4 (AvgPool1d(4, 2, 1)).

    Returns one feature list per scale.
    """

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()):
        super().__init__()
        self.config = config
        self.discriminators = nn.ModuleList(ScaleDiscriminator(config) for _ in range(config.scales))
        self.pool = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    @property
    def space_to_depth(self) -> bool:
        return self.discriminators[0].space_to_depth

    @space_to_depth.setter
    def space_to_depth(self, on: bool) -> None:
        for d in self.discriminators:
            d.space_to_depth = on

    def forward(self, x) -> list[list[torch.Tensor]]:
        outs = []
        for i, d in enumerate(self.discriminators):
            if i:
                x = self.pool(x)
            outs.append(d(x))
        return outs
