"""``Translator``: audio on one instrument -> the same notes on another, through the shared MelGAN vocoder.

audio -> (optional Demucs stem) -> mel (the shared AudioConfig) -> encoder -> latent -> decoder(target) -> mel
-> Vocoder -> audio. Long inputs are processed in overlapping chunks (seamless, bounded memory).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .. import registry
from ..audio import load_audio, prepare_audio
from ..config import from_dict, save_json, to_dict
from ..errors import ConfigMismatch, StudioError
from ..nn import chunked
from ..train.checkpoint import atomic_save_tensors, load_tensors
from ..vocoder import Vocoder
from .model import TranslatorConfig, TranslatorModel

CHUNK_FRAMES = 1024  # mel frames per chunk (~12 s at 22.05 kHz / hop 256)


def save_translator(model: TranslatorModel, folder: str | os.PathLike, card: str | None = None, half: bool = False) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(model.state_dict(), folder / registry.WEIGHTS, half=half)
    save_json({"kind": "translator", "config": to_dict(model.config)}, folder / registry.CONFIG)
    if card is not None:
        (folder / registry.CARD).write_text(card)
    return folder


def load_translator_model(name_or_dir=None, device="cpu") -> tuple[TranslatorModel, registry.ModelEntry]:
    entry = registry.resolve(name_or_dir or registry.DEFAULTS["translator"], kind="translator")
    model = TranslatorModel(from_dict(TranslatorConfig, entry.config))
    tensors, _ = load_tensors(entry.weights)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    except RuntimeError as e:
        raise ConfigMismatch(f"{entry.weights} does not match its config ({' '.join(str(e).split())[:200]}).") from None
    return model.to(device).eval(), entry


class Translator:
    """``translator(audio, sr, target="violin") -> (audio, sr)``; ``translator.domains`` lists the targets."""

    def __init__(self, model: TranslatorModel, vocoder: Vocoder):
        model.config.audio.check_same(vocoder.config, "the vocoder")
        self.model = model.eval()
        self.vocoder = vocoder
        self.config = model.config.audio
        self.name = "translator"

    @classmethod
    def from_pretrained(cls, name_or_dir=None, vocoder: Vocoder | str | None = None, device="cpu") -> "Translator":
        model, entry = load_translator_model(name_or_dir, device)
        if not isinstance(vocoder, Vocoder):
            vocoder = Vocoder.from_pretrained(vocoder, device=device)
        t = cls(model, vocoder)
        t.name = entry.name
        return t

    @property
    def domains(self) -> list[str]:
        return list(self.model.config.domains)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def domain_weights(self, target: str, blend_with: str | None = None, blend: float = 0.0) -> torch.Tensor:
        """Mixture weights ``[1, n_domains]``: ``target`` alone, or ``(1-blend)*target + blend*blend_with``."""
        w = torch.zeros(1, len(self.domains))
        for name in [target] + ([blend_with] if blend_with else []):
            if name not in self.domains:
                raise StudioError(f"unknown target instrument {name!r}; available: {', '.join(self.domains)}.")
        if not 0.0 <= blend <= 1.0:
            raise StudioError(f"blend must be between 0 and 1, got {blend}.")
        w[0, self.domains.index(target)] += 1.0 - (blend if blend_with else 0.0)
        if blend_with:
            w[0, self.domains.index(blend_with)] += blend
        return w

    @torch.inference_mode()
    def translate_mel(self, mel: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[1, n_mels, T]`` -> target log-mel ``[1, n_mels, T]`` (any T), in seamless chunks."""
        n_mels = self.config.n_mels
        if not isinstance(mel, torch.Tensor) or mel.dim() != 3 or mel.shape[1] != n_mels or mel.shape[2] < 1:
            shape = list(mel.shape) if hasattr(mel, "shape") else type(mel).__name__
            raise ConfigMismatch(f"expected a log-mel tensor of shape [1, {self.config.n_mels}, frames], got {shape}.")
        if not torch.isfinite(mel).all():
            raise ConfigMismatch("the mel contains NaN or infinite values.")
        down = self.model.config.down
        T = mel.shape[-1]
        pad = (-T) % down
        if pad:
            mel = torch.nn.functional.pad(mel, (0, pad), mode="replicate")
        w = weights.to(mel.device)
        context = -(-self.model.context_frames // down) * down + 2 * down
        out = chunked(lambda m: self.model.decode(self.model.encode(m), w.expand(m.shape[0], -1)), mel,
                      CHUNK_FRAMES, context)
        return out[..., :T]

    def prepare(self, audio, sr: int | None = None, stem: str | None = None, demucs=None) -> np.ndarray:
        """Any file/array, rate and channel count -> mono float32 at the model's rate (optionally one Demucs stem)."""
        if isinstance(audio, (str, os.PathLike)):
            # decoded straight to the rate used next (Demucs: 44.1 kHz stereo), block by block
            audio, sr = load_audio(audio, self.sample_rate if stem is None else 44100, mono=stem is None)
        elif sr is None:
            raise ConfigMismatch("pass the sample rate with an audio array: translator(audio, sr, target=...).")
        if stem is not None:
            from ..separation import isolate_stem

            audio, sr = isolate_stem(audio, sr, stem, model=demucs)
        x, _ = prepare_audio(audio, sr, self.sample_rate)
        return x

    @torch.inference_mode()
    def __call__(self, audio, sr: int | None = None, target: str | None = None, *, blend_with: str | None = None,
                 blend: float = 0.0, stem: str | None = None, demucs=None) -> tuple[np.ndarray, int]:
        if target is None:
            raise StudioError(f"choose a target instrument: {', '.join(self.domains)}.")
        weights = self.domain_weights(target, blend_with, blend)
        x = self.prepare(audio, sr, stem, demucs)
        dev = self.vocoder.device
        mel = self.vocoder.mel(torch.from_numpy(x).to(dev))
        out_mel = self.translate_mel(mel, weights)
        y = self.vocoder.vocode_long(out_mel, CHUNK_FRAMES)
        y = y.reshape(-1).float().cpu().numpy()
        y = np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]  # same duration as the input
        return y, self.sample_rate
