"""What every mel -> audio module here shares (``Vocoder``, ``GriffinLim``, ``FastVocoder``): input checks,
``resynthesize`` from a file or an array, ``vocode``, ``device``. Below ``model`` and ``fast``, which both build on it."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from ..audio import AudioConfig, audio_input
from ..errors import ConfigMismatch


class _MelToAudio(nn.Module):
    """Shared plumbing: input checks, ``resynthesize`` from a file or array."""

    config: AudioConfig

    def _check_mel(self, mel: torch.Tensor) -> torch.Tensor:
        if not isinstance(mel, torch.Tensor):
            mel = torch.as_tensor(np.asarray(mel, dtype=np.float32))
        if mel.dim() == 2:
            mel = mel.unsqueeze(0)
        if mel.dim() != 3 or mel.shape[1] != self.config.n_mels or mel.shape[2] < 1:
            raise ConfigMismatch(
                f"expected a log-mel of shape [batch, {self.config.n_mels}, frames] or [{self.config.n_mels}, frames], "
                f"got {list(mel.shape)}."
            )
        if not torch.isfinite(mel).all():
            raise ConfigMismatch("the mel contains NaN or infinite values.")
        return mel

    @torch.inference_mode()
    def resynthesize(self, audio: str | os.PathLike | np.ndarray, sr: int | None = None) -> tuple[np.ndarray, int]:
        """Audio file or array -> mel -> audio. Returns ``(audio [T], sample_rate)``, ``T = frames * hop``."""
        x = audio_input(audio, sr, self.config.sample_rate,
                        missing_sr="pass the sample rate with an audio array: resynthesize(audio, sr).")
        mel = self.mel(torch.from_numpy(x).to(self.device))
        return self.vocode(mel)[0, 0].float().cpu().numpy(), self.config.sample_rate

    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """Mel -> audio as the user-facing calls run it (``resynthesize``); here the module itself."""
        return self(mel)

    @property
    def device(self) -> torch.device:
        return self.mel.window.device
