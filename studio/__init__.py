"""MelGAN Studio: the MelGAN vocoder, music domain translation and unconditional generation.

Public API: ``AudioConfig``/``MelSpectrogram`` (the one mel), ``load_audio``/``save_audio``, ``Vocoder`` and
``GriffinLim`` (mel -> audio), ``Translator`` (audio -> audio on another instrument), ``MusicGenerator`` (new music
from the prior; ``Generator`` is its old name, kept as an alias: not ``studio.vocoder.Generator``, the MelGAN network
inside ``Vocoder``).
"""

import os

# librosa's JIT (numba) compiles for the host CPU by default, and some numba/LLVM releases emit code that crashes on
# some CPUs (seen: numba 0.67 on AMD Zen 5, 0.68.1 on another machine, a segfault in chroma_cqt). Generic x86-64 code
# runs everywhere and these kernels are small; set NUMBA_CPU_NAME yourself to choose otherwise.
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
