"""MelGAN Studio: the MelGAN vocoder, music domain translation and unconditional generation.

Public API: ``AudioConfig``/``MelSpectrogram`` (the one mel), ``load_audio``/``save_audio``, ``Vocoder`` and
``GriffinLim`` (mel -> audio), ``Translator`` (audio -> audio on another instrument), ``MusicGenerator`` (new music
from the prior; ``Generator`` is its old name, kept as an alias: not ``studio.vocoder.Generator``, the MelGAN network
inside ``Vocoder``).
"""

import os

# librosa's JIT (numba): generic x86-64 code, not the host's. Segfaults in chroma_cqt (numba 0.67 on Zen 5, 0.68.1
# elsewhere) stopped with it; one was later traced to numba's disk cache filled by two processes at once (guarded in
# studio.metrics), which a new CPU name sidesteps by starting a fresh cache. Kept: the kernels are small and it is safe.
os.environ.setdefault("NUMBA_CPU_NAME", "generic")

from .audio import AudioConfig, MelSpectrogram, load_audio, save_audio
from .errors import ConfigMismatch, DatasetError, ModelNotFound, StudioError, UnsupportedAudio

# The pipelines load on first use (PEP 562): ``import studio.vocoder.spectral`` then needs no more than PyTorch and
# NumPy (the GPU training script runs on a stock PyTorch image without soundfile, torchaudio or librosa).
_LAZY = {"Generator": ".generation", "MusicGenerator": ".generation.pipeline", "Translator": ".translation", "GriffinLim": ".vocoder", "Vocoder": ".vocoder"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'studio' has no attribute {name!r}")

__all__ = ["AudioConfig", "MelSpectrogram", "load_audio", "save_audio", "Vocoder", "GriffinLim", "Translator",
           "MusicGenerator", "Generator", "StudioError", "UnsupportedAudio", "ModelNotFound", "ConfigMismatch", "DatasetError"]
__version__ = "0.1.0"
