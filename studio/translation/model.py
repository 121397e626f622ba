"""Universal music translation on mels (after Mor et al. 2019, decoded by MelGAN as in Kumar et al. 2019).

One encoder shared by all domains; a domain-confusion classifier on its latent, trained adversarially through
gradient reversal so that the latent carries the notes rather than the instrument; and ONE decoder conditioned on a
learned domain embedding (FiLM), where the original uses one WaveNet decoder per domain. Why: the decoders of all
instruments share how notes become spectra, so one conditioned decoder needs less data per domain, keeps the
shipped model small, and makes blending two instruments a plain interpolation of their embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..audio import AudioConfig
from ..latent import MelDecoder, MelEncoder, denormalize_mel, normalize_mel, receptive_frames


@dataclass(frozen=True)
class TranslatorConfig:
    audio: AudioConfig = field(default_factory=AudioConfig)
    domains: tuple[str, ...] = ("piano", "violin")
    channels: int = 256
    latent: int = 64
    down: int = 2  # latent frame rate = mel frame rate / down (43 Hz at 22.05 kHz)
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2, 4, 8)
    domain_dim: int = 64
    dropout: float = 0.0


class GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.weight * grad, None


class DomainClassifier(nn.Module):
    """Latent ``[B, latent, T']`` -> domain logits ``[B, n_domains]`` (conv stack, then mean over time)."""

    def __init__(self, latent: int, n_domains: int, channels: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(latent, channels, 3, padding=1), nn.ELU(),
            nn.Conv1d(channels, channels, 3, padding=2, dilation=2), nn.ELU(),
            nn.Conv1d(channels, n_domains, 1),
        )

    def forward(self, z):
        return self.net(z).mean(dim=-1)


class TranslatorModel(nn.Module):
    """Log-mel ``[B, n_mels, T]`` (T a multiple of ``down``) -> latent -> log-mel for a target domain."""

    def __init__(self, config: TranslatorConfig = TranslatorConfig()):
        super().__init__()
        c = config
        self.config = c
        self.encoder = MelEncoder(c.audio.n_mels, c.channels, c.latent, c.down, c.dilations, c.dropout)
        self.decoder = MelDecoder(c.audio.n_mels, c.channels, c.latent, c.down, c.dilations, c.domain_dim)
        self.domain_embedding = nn.Embedding(len(c.domains), c.domain_dim)

    @property
    def context_frames(self) -> int:
        """Mel frames of context each side that an output frame depends on (for seamless chunking)."""
        d = self.config.down
        return receptive_frames(self.config.dilations) + 2 + d * (receptive_frames(self.config.dilations) + 2) + 2 * d

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        return self.encoder(normalize_mel(mel))

    def domain_vector(self, weights: torch.Tensor) -> torch.Tensor:
        """``[B, n_domains]`` mixture weights -> ``[B, domain_dim]`` embedding (one-hot = one instrument)."""
        return weights @ self.domain_embedding.weight

    def decode(self, z: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """``domain``: ``[B]`` indices or ``[B, n_domains]`` mixture weights."""
        if domain.dim() == 1:
            emb = self.domain_embedding(domain)
        else:
            emb = self.domain_vector(domain)
        return denormalize_mel(self.decoder(z, emb), math.log10(self.config.audio.log_floor))

    def forward(self, mel: torch.Tensor, domain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(latent, decoded mel)``: one call, so that DDP sees a single forward per step."""
        z = self.encode(mel)
        return z, self.decode(z, domain)
