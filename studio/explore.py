"""Latent exploration: interpolate between two clips in a trained model's latent space.

Both clips are encoded, their latents mixed, and the mix decoded to a mel and then to audio through the shared
MelGAN vocoder. Two latent spaces are available:

- a ``Generator`` (VQ-VAE + prior): the quantized VQ-VAE latents (codebook vectors). The mix is decoded as it is,
  without snapping back to the codebook, so the morph is smooth instead of jumping between codes;
- a ``Translator``: its encoder's latent (the universal mode's, or the notes mode's of the transcribed notes), decoded for one target instrument.

``steps`` mode returns N clips for mixing weights 0, 1/(N-1), ..., 1 (clip A ... clip B); ``morph`` returns one
clip whose weight moves from 0 to 1 over its length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .audio import audio_input
from .errors import ConfigMismatch, StudioError
from .latent import pad_to_multiple

MAX_STEPS = 16
MAX_SECONDS = 60.0


@dataclass
class Interpolation:
    """``audio``: one array per mixing weight in ``alphas`` (``steps``), or one morph (``alphas`` = [0, 1]);
    ``a`` and ``b``: the two source clips as used (mono, model rate, cut or looped to the requested length)."""

    audio: list[np.ndarray]
    alphas: list[float]
    morph: bool
    a: np.ndarray
    b: np.ndarray
    sample_rate: int

    def titles(self) -> list[str]:
        if self.morph:
            return ["morph A → B"]
        return [f"α = {x:.2f}" for x in self.alphas]


class LatentSpace:
    """``encode(mel [B, n_mels, T], audio [B, n]) -> z [B, D, T/down]`` and ``decode(z) -> mel`` of one model (the
    audio is what the notes translator transcribes; the others read the mel only)."""

    def __init__(self, model, target: str | None = None):
        from .generation.pipeline import MusicGenerator
        from .translation.pipeline import Translator

        self.vocoder = model.vocoder
        self.config = model.config
        if isinstance(model, MusicGenerator):
            vq = model.vqvae
            self.down = vq.config.down
            self.encode = lambda mel, audio: vq.quantizer.lookup(vq.encode(mel))
            self.decode = lambda z: vq._to_mel(vq.decoder(z))
            self.name = f"{model.name} (VQ-VAE latents)"
        elif isinstance(model, Translator):
            if target is None:
                raise StudioError(f"choose the instrument to decode to: {', '.join(model.domains)}.")
            w = model.domain_weights(target)
            m = model.model
            self.down = m.config.down
            self.decode = lambda z: m.decode(z, w.expand(z.shape[0], -1).to(z.device))
            if m.config.mode == "notes":  # the latent of each clip's transcribed notes and loudness
                self.encode = lambda mel, audio: m.encode(torch.cat(
                    [model.note_features(model.transcribe(x), mel[i:i + 1], target) for i, x in enumerate(audio)]))
                self.name = f"{model.name} (note encoder, decoded as {target})"
            else:
                self.encode = lambda mel, audio: m.encode(mel)
                self.name = f"{model.name} (universal encoder, decoded as {target})"
        else:
            raise ConfigMismatch(f"cannot explore a {type(model).__name__}: give a Generator or a Translator.")


def _clip(audio, sr, model_sr: int, n: int, what: str) -> np.ndarray:
    x = audio_input(audio, sr, model_sr, missing_sr=f"pass the sample rate of clip {what} with an audio array.")
    if len(x) == 0:
        raise StudioError(f"clip {what} is empty.")
    if len(x) < n:  # loop a short clip up to the requested length
        x = np.tile(x, -(-n // len(x)))
    return np.ascontiguousarray(x[:n], dtype=np.float32)


@torch.inference_mode()
def interpolate(model, a, b, sr_a: int | None = None, sr_b: int | None = None, *, steps: int = 5,
                morph: bool = False, seconds: float = 4.0, target: str | None = None) -> Interpolation:
    """Interpolate clips ``a`` and ``b`` (files or arrays) in ``model``'s latent space (see the module docstring).

    Every returned clip is ``seconds`` long. ``target``: the instrument to decode to, for a ``Translator``.
    """
    if not 0 < seconds <= MAX_SECONDS:
        raise StudioError(f"seconds must be in (0, {MAX_SECONDS:.0f}], got {seconds}.")
    if not morph and not 2 <= steps <= MAX_STEPS:
        raise StudioError(f"steps must be between 2 and {MAX_STEPS}, got {steps}.")
    space = LatentSpace(model, target)
    sr = space.config.sample_rate
    n = int(round(seconds * sr))
    xa, xb = _clip(a, sr_a, sr, n, "A"), _clip(b, sr_b, sr, n, "B")
    dev = space.vocoder.device
    mel = space.vocoder.mel(torch.from_numpy(np.stack([xa, xb])).to(dev))  # [2, n_mels, T]
    T = mel.shape[-1]
    mel = pad_to_multiple(mel, space.down)
    z = space.encode(mel, [xa, xb])  # [2, D, T']
    za, zb = z[:1], z[1:]
    if morph:
        alphas = [0.0, 1.0]
        w = torch.linspace(0, 1, z.shape[-1], device=z.device).view(1, 1, -1)
        mix = (1 - w) * za + w * zb
    else:
        alphas = [i / (steps - 1) for i in range(steps)]
        w = torch.tensor(alphas, device=z.device, dtype=z.dtype).view(-1, 1, 1)
        mix = (1 - w) * za + w * zb  # [steps, D, T']
    out_mel = space.decode(mix)[..., :T]
    audio = []
    for m in out_mel:
        y = space.vocoder.vocode_long(m[None]).reshape(-1).float().cpu().numpy()
        audio.append(np.pad(y, (0, max(0, n - len(y))))[:n].astype(np.float32))
    return Interpolation(audio, alphas, morph, xa, xb, sr)
