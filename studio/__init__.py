"""MelGAN Studio: the MelGAN vocoder, music domain translation and unconditional generation.

Public API: ``AudioConfig``/``MelSpectrogram`` (the one mel), ``load_audio``/``save_audio``, ``Vocoder`` and
``GriffinLim`` (mel -> audio), ``Translator`` (audio -> audio on another instrument), ``Generator`` (new music from
the prior; not to be confused with ``studio.vocoder.Generator``, the MelGAN network inside ``Vocoder``).
"""

from .audio import AudioConfig, MelSpectrogram, load_audio, save_audio
from .errors import ConfigMismatch, DatasetError, ModelNotFound, StudioError, UnsupportedAudio
from .generation import Generator
from .translation import Translator
from .vocoder import GriffinLim, Vocoder

__all__ = ["AudioConfig", "MelSpectrogram", "load_audio", "save_audio", "Vocoder", "GriffinLim", "Translator",
           "Generator", "StudioError", "UnsupportedAudio", "ModelNotFound", "ConfigMismatch", "DatasetError"]
__version__ = "0.1.0"
