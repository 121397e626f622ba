"""MelGAN Studio: the MelGAN vocoder, music domain translation and unconditional generation."""

from .audio import AudioConfig, MelSpectrogram, load_audio, save_audio
from .errors import ConfigMismatch, DatasetError, ModelNotFound, StudioError, UnsupportedAudio
from .vocoder import GriffinLim, Vocoder

__all__ = ["AudioConfig", "MelSpectrogram", "load_audio", "save_audio", "Vocoder", "GriffinLim", "StudioError",
           "UnsupportedAudio", "ModelNotFound", "ConfigMismatch", "DatasetError"]
__version__ = "0.1.0"
