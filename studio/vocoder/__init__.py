"""The MelGAN vocoder: generator, multi-scale discriminator, losses, inference API and training task."""

from .discriminator import DiscriminatorConfig, MultiScaleDiscriminator
from .generator import Generator, GeneratorConfig
from .model import GriffinLim, Vocoder

__all__ = ["Generator", "GeneratorConfig", "MultiScaleDiscriminator", "DiscriminatorConfig", "Vocoder", "GriffinLim"]
