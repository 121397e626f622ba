"""Unconditional generation: VQ-VAE codes sampled from a Transformer prior, decoded to mels, vocoded by MelGAN."""

from .pipeline import SILENT_DBFS, GenerationInfo, Generator, NearSilentWarning, rms_dbfs, save_generator
from .prior import Prior, PriorConfig
from .vqvae import VQVAE, VQVAEConfig

__all__ = ["SILENT_DBFS", "GenerationInfo", "Generator", "NearSilentWarning", "rms_dbfs", "Prior", "PriorConfig", "VQVAE", "VQVAEConfig", "save_generator"]
