"""Unconditional generation: VQ-VAE codes sampled from a Transformer prior, decoded to mels, vocoded by MelGAN."""

from .pipeline import Generator, save_generator
from .prior import Prior, PriorConfig
from .vqvae import VQVAE, VQVAEConfig

__all__ = ["Generator", "Prior", "PriorConfig", "VQVAE", "VQVAEConfig", "save_generator"]
