"""A VQ-VAE over mel frames whose decoded mels the shared MelGAN vocoder turns into audio (Kumar et al. 2019, Sec. 4.4).

Codebook learning: exponential moving averages of the assigned encoder outputs (van den Oord et al. 2017, App.),
plus a reset of dead codes (codes unused for a while are moved onto random encoder outputs of the batch), so that
the whole codebook stays in use; the encoder is held to its codes by the commitment loss; gradients pass the
quantiser by the straight-through estimator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..audio import AudioConfig
from ..latent import MelDecoder, MelEncoder, denormalize_mel, normalize_mel
from ..nn import input_span


@dataclass(frozen=True)
class VQVAEConfig:
    audio: AudioConfig = field(default_factory=AudioConfig)
    channels: int = 256  # width of the encoder and decoder
    latent: int = 64  # dimensions of a code vector
    down: int = 4  # codes per second = frame rate / down (21.5 at 22.05 kHz)
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2, 4, 8)  # of the residual stacks' convs
    codebook_size: int = 512  # codes in the codebook
    commitment: float = 0.25  # weight of the commitment loss
    ema_decay: float = 0.99  # of the codebook's moving averages
    dead_after: int = 200  # steps without use before a code is reset


class VectorQuantizer(nn.Module):
    """``z [B, D, T]`` -> ``(quantised z (straight-through), codes [B, T], commitment loss, perplexity)``."""

    def __init__(self, size: int, dim: int, decay: float = 0.99, dead_after: int = 200):
        super().__init__()
        self.size, self.dim, self.decay, self.dead_after = size, dim, decay, dead_after
        embed = torch.randn(size, dim) / math.sqrt(dim)
        self.register_buffer("embed", embed)
        self.register_buffer("ema_count", torch.ones(size))
        self.register_buffer("ema_sum", embed.clone())
        self.register_buffer("idle", torch.zeros(size))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` codes -> ``[B, D, T]`` vectors."""
        return F.embedding(codes, self.embed).transpose(1, 2)

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.transpose(1, 2).reshape(-1, self.dim).float()
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embed.T + self.embed.pow(2).sum(1)[None]
        return dist.argmin(1).view(z.shape[0], z.shape[2])

    def forward(self, z: torch.Tensor):
        if self.training and not self.initialized:
            self._init_from(z.detach().float())
        codes = self.assign(z)
        zq = self.lookup(codes)
        if self.training:
            self._update(z.detach().float(), codes)
        commit = F.mse_loss(z.float(), zq.detach())
        counts = torch.bincount(codes.flatten(), minlength=self.size).float()
        p = counts / counts.sum()
        perplexity = torch.exp(-(p * torch.log(p.clamp(min=1e-10))).sum())
        zq = z + (zq - z).detach()  # straight-through
        return zq, codes, commit, perplexity

    @torch.no_grad()
    def _init_from(self, z: torch.Tensor) -> None:
        """Start the codebook on encoder outputs (random picks from the first batch) so that codes get used."""
        flat = z.transpose(1, 2).reshape(-1, self.dim)
        if torch.distributed.is_initialized():
            torch.distributed.broadcast(flat, 0)
        g = torch.Generator(device="cpu").manual_seed(0)
        pick = torch.randint(0, flat.shape[0], (self.size,), generator=g).to(flat.device)
        self.embed.copy_(flat[pick] + 1e-3 * torch.randn(self.size, self.dim, generator=g).to(flat.device))
        self.ema_sum.copy_(self.embed)
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        flat = z.transpose(1, 2).reshape(-1, self.dim)
        onehot = F.one_hot(codes.flatten(), self.size).float()
        count, total = onehot.sum(0), onehot.T @ flat
        if torch.distributed.is_initialized():  # every replica must move its codebook the same way
            torch.distributed.all_reduce(count)
            torch.distributed.all_reduce(total)
            gathered = [torch.empty_like(flat) for _ in range(torch.distributed.get_world_size())]
            torch.distributed.all_gather(gathered, flat)
            flat = torch.cat(gathered)
        self.ema_count.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(total, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (n + self.size * 1e-5) * n
        self.embed.copy_(self.ema_sum / smoothed[:, None])
        self.idle.add_(1).masked_fill_(count > 0, 0)
        dead = (self.idle >= self.dead_after).nonzero().flatten()
        if len(dead):  # move dead codes onto encoder outputs of this batch (same choice on every replica)
            g = torch.Generator(device="cpu").manual_seed(int(self.idle.sum().item()) + len(dead))
            pick = torch.randint(0, flat.shape[0], (len(dead),), generator=g).to(flat.device)
            self.embed[dead] = flat[pick]
            self.ema_sum[dead] = flat[pick]
            self.ema_count[dead] = 1.0
            self.idle[dead] = 0


class VQVAE(nn.Module):
    """Log-mel ``[B, n_mels, T]`` (T a multiple of ``down``) -> codes ``[B, T / down]`` -> log-mel ``[B, n_mels, T]``."""

    def __init__(self, config: VQVAEConfig = VQVAEConfig()):
        super().__init__()
        c = self.config = config
        self.encoder = MelEncoder(c.audio.n_mels, c.channels, c.latent, c.down, c.dilations)
        self.quantizer = VectorQuantizer(c.codebook_size, c.latent, c.ema_decay, c.dead_after)
        self.decoder = MelDecoder(c.audio.n_mels, c.channels, c.latent, c.down, c.dilations)

    def forward(self, mel: torch.Tensor):
        """``(reconstructed mel, codes, commitment loss, perplexity)``."""
        zq, codes, commit, ppl = self.quantizer(self.encoder(normalize_mel(mel)))
        return self._to_mel(self.decoder(zq)), codes, commit, ppl

    def _to_mel(self, x):
        return denormalize_mel(x, math.log10(self.config.audio.log_floor))

    @torch.no_grad()
    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        return self.quantizer.assign(self.encoder(normalize_mel(mel)))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self._to_mel(self.decoder(self.quantizer.lookup(codes)))

    def context_frames(self) -> tuple[int, int]:
        """Codes ``(left, right)`` that the mel frames of one code depend on in ``decode`` (for ``studio.nn.chunked``)."""
        lo, hi = input_span(self.decoder, 0, self.config.down - 1)  # the mel frames of code 0
        return -lo, hi
