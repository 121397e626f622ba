"""GAN losses of the paper (hinge + feature matching). The optional multi-resolution STFT loss is
``studio.metrics.MultiResolutionSTFTLoss``, also the evaluation's MR-STFT distance."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_hinge(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Sum over scales of ``E[relu(1 - D(x))] + E[relu(1 + D(G(s)))]`` (last feature = score)."""
    return sum(F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(real, fake))


def generator_hinge(fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Sum over scales of ``-E[D(G(s))]``."""
    return sum(-f[-1].mean() for f in fake)


def feature_matching(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Mean L1 between real and fake intermediate features (scores excluded), summed over layers and scales."""
    return sum(F.l1_loss(ff, rf.detach()) for r, f in zip(real, fake) for rf, ff in zip(r[:-1], f[:-1]))
