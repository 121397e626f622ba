"""Mel <-> latent convolutional networks shared by the translator and the VQ-VAE.

Both models map a log-mel ``[B, n_mels, T]`` to a latent ``[B, D, T / down]`` and back; they differ only in what
sits between (domain confusion and a domain-conditioned decoder, or a vector quantiser).
"""

from __future__ import annotations

import torch
from torch import nn

from .nn import input_span

# Fixed affine map of log10 mels (floor -5, loud music ~ +1) to roughly [-1, 1] for the networks.
MEL_CENTER, MEL_SCALE = -2.5, 2.5


def normalize_mel(mel: torch.Tensor) -> torch.Tensor:
    return (mel - MEL_CENTER) / MEL_SCALE


def denormalize_mel(x: torch.Tensor, floor: float) -> torch.Tensor:
    """Back to log10 mels, clamped at ``floor``: log10 of the model's ``AudioConfig.log_floor`` (its mels' floor)."""
    return (x * MEL_SCALE + MEL_CENTER).clamp(min=floor)


class FiLM(nn.Module):
    """Per-channel scale and shift from a conditioning vector: ``x * (1 + g(c)) + b(c)``."""

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x, cond):
        g, b = self.proj(cond).unsqueeze(-1).chunk(2, dim=1)
        return x * (1 + g) + b


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over channels at each frame (``[B, C, T]``): no statistics across time, so chunks stay seamless."""

    def forward(self, x):
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class DilatedBlock(nn.Module):
    """Non-causal dilated residual block ``[B, C, T] -> [B, C, T]`` with optional FiLM conditioning."""

    def __init__(self, channels: int, dilation: int, cond_dim: int = 0, dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.norm = ChannelNorm(channels)
        self.out = nn.Conv1d(channels, channels, 1)
        self.film = FiLM(cond_dim, channels) if cond_dim else None
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def input_span(self, lo: int, hi: int) -> tuple[int, int]:
        """``studio.nn.input_span``: the dilated conv's reach (norm, FiLM and the 1x1 conv act frame by frame)."""
        return input_span(self.conv, lo, hi)

    def forward(self, x, cond=None):
        h = self.norm(self.conv(x))
        if self.film is not None:
            h = self.film(h, cond)
        return x + self.drop(self.out(self.act(h)))


def crop_to_multiple(mel: torch.Tensor, down: int) -> torch.Tensor:
    """The longest start of ``mel [..., T]`` whose length is a multiple of ``down`` (what ``MelEncoder`` takes)."""
    return mel[..., : mel.shape[-1] // down * down]


def pad_to_multiple(mel: torch.Tensor, down: int) -> torch.Tensor:
    """``mel [B, n_mels, T]`` with its last frame repeated up to a multiple of ``down`` frames."""
    pad = (-mel.shape[-1]) % down
    return torch.nn.functional.pad(mel, (0, pad), mode="replicate") if pad else mel


class MelEncoder(nn.Module):
    """Normalised log-mel ``[B, n_mels, T]`` -> latent ``[B, latent, T // down]``. ``T`` must be a multiple of ``down``."""

    def __init__(self, n_mels=80, channels=256, latent=64, down=2, dilations=(1, 2, 4, 8, 1, 2, 4, 8), dropout=0.0):
        super().__init__()
        self.down = down
        self.inp = nn.Conv1d(n_mels, channels, 5, padding=2)
        self.blocks = nn.ModuleList(DilatedBlock(channels, d, dropout=dropout) for d in dilations)
        self.pool = nn.Conv1d(channels, channels, 2 * down, stride=down, padding=down // 2) if down > 1 else nn.Identity()
        self.out = nn.Conv1d(channels, latent, 1)

    def input_span(self, lo: int, hi: int) -> tuple[int, int]:
        """``studio.nn.input_span``: input frames that latent frames ``[lo, hi]`` depend on."""
        return input_span([self.inp, self.blocks, self.pool, self.out], lo, hi)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = b(h)
        h = self.pool(h)[..., : x.shape[-1] // self.down]
        return self.out(h)


class MelDecoder(nn.Module):
    """Latent ``[B, latent, T']`` (+ conditioning ``[B, cond]``) -> normalised log-mel ``[B, n_mels, T' * up]``."""

    def __init__(self, n_mels=80, channels=256, latent=64, up=2, dilations=(1, 2, 4, 8, 1, 2, 4, 8), cond_dim=0):
        super().__init__()
        self.up = up
        self.inp = nn.Conv1d(latent, channels, 3, padding=1)
        self.upsample = nn.ConvTranspose1d(channels, channels, 2 * up, stride=up, padding=up // 2) if up > 1 else nn.Identity()
        self.blocks = nn.ModuleList(DilatedBlock(channels, d, cond_dim) for d in dilations)
        self.out = nn.Sequential(nn.GELU(), nn.Conv1d(channels, n_mels, 5, padding=2))

    def input_span(self, lo: int, hi: int) -> tuple[int, int]:
        """``studio.nn.input_span``: latent frames that output frames ``[lo, hi]`` depend on."""
        return input_span([self.inp, self.upsample, self.blocks, self.out], lo, hi)

    def forward(self, z, cond=None):
        h = self.upsample(self.inp(z))[..., : z.shape[-1] * self.up]
        for b in self.blocks:
            h = b(h, cond)
        return self.out(h)

