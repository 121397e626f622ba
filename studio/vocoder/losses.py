"""GAN losses of the paper (hinge + feature matching) and the optional multi-resolution STFT loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def discriminator_hinge(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Sum over scales of ``E[relu(1 - D(x))] + E[relu(1 + D(G(s)))]`` (last feature = score)."""
    return sum(F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(real, fake))


def generator_hinge(fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Sum over scales of ``-E[D(G(s))]``."""
    return sum(-f[-1].mean() for f in fake)


def feature_matching(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Mean L1 between real and fake intermediate features (scores excluded), summed over layers and scales."""
    return sum(F.l1_loss(ff, rf.detach()) for r, f in zip(real, fake) for rf, ff in zip(r[:-1], f[:-1]))


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over three STFT resolutions (Yamamoto et al. 2020).

    Not in the paper; speeds convergence a lot, which matters when training on a CPU.
    """

    def __init__(self, resolutions=((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))):
        super().__init__()
        self.resolutions = resolutions
        for n_fft, _, win in resolutions:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(win), persistent=False)

    def _mag(self, x, n_fft, hop, win):
        x = x.float().reshape(-1, x.shape[-1])
        spec = torch.stft(x, n_fft, hop, win, getattr(self, f"window_{n_fft}"), return_complex=True)
        return spec.abs().clamp(min=1e-7)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = 0.0
        for n_fft, hop, win in self.resolutions:
            m_hat, m = self._mag(y_hat, n_fft, hop, win), self._mag(y, n_fft, hop, win)
            sc = torch.linalg.norm(m - m_hat, dim=(-2, -1)) / torch.linalg.norm(m, dim=(-2, -1)).clamp(min=1e-7)
            loss = loss + sc.mean() + F.l1_loss(torch.log(m_hat), torch.log(m))
        return loss / len(self.resolutions)
