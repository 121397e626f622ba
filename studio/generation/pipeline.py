"""``MusicGenerator``: new music from the prior -> VQ-VAE decoder -> mel -> the shared MelGAN vocoder.

A generator model folder holds both networks: ``config.json`` ``{"kind": "generator", "config": {"vqvae": ...,
"prior": ...}}`` and ``model.safetensors`` with ``vqvae.*`` and ``prior.*`` weights.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import registry
from ..audio import audio_input, rms_dbfs
from ..config import from_dict, to_dict
from ..errors import ConfigMismatch, ModelNotFound, StudioError
from ..latent import crop_to_multiple
from ..nn import chunked, stateless
from ..weights import load_weights, save_model
from ..vocoder import Vocoder
from .prior import Prior, PriorConfig
from .vqvae import VQVAE, VQVAEConfig

MAX_SECONDS = 120.0
SILENT_DBFS = -45.0  # a clip whose RMS is below this is "near-silent" (the prior's rest mode, not music)
SILENCE_RETRIES = 4  # further draws before giving up on an audible clip


class NearSilentWarning(UserWarning):
    """Every draw for a seed came out near-silent; the loudest is returned."""


@dataclass
class GenerationInfo:
    """How the last ``generate`` call went: the draws it took and the returned clip's level."""

    seed: int
    attempts: int  # 1 when the first draw was audible
    rms_dbfs: float
    near_silent: bool

    def message(self) -> str | None:
        """A one-line note for the user, or None when there is nothing to say."""
        if self.near_silent:
            return (f"seed {self.seed}: all {self.attempts} draws were near-silent (loudest {self.rms_dbfs:.1f} dBFS "
                    f"< {SILENT_DBFS:.0f}); try another seed or a higher temperature.")
        if self.attempts > 1:
            return (f"seed {self.seed}: {self.attempts - 1} near-silent draw(s) discarded "
                    f"(the prior's rest mode); kept draw {self.attempts} at {self.rms_dbfs:.1f} dBFS.")
        return None


def save_vqvae(vqvae: VQVAE, folder) -> Path:
    return save_model(folder, vqvae.state_dict(), {"kind": "vqvae", "config": to_dict(vqvae.config)})


def load_vqvae(name_or_dir, device="cpu") -> VQVAE:
    """A VQ-VAE folder (a run's ``export/``), or the VQ-VAE inside a generator (e.g. the shipped one)."""
    entry = registry.resolve(name_or_dir)
    tensors = load_weights(entry.weights)
    if entry.kind == "generator":
        config, tensors = entry.config["vqvae"], {k[6:]: v for k, v in tensors.items() if k.startswith("vqvae.")}
    elif entry.kind == "vqvae":
        config = entry.config
    else:
        raise ModelNotFound(f"{entry.path} holds a {entry.kind!r} model, not a VQ-VAE or a generator.")
    m = VQVAE(from_dict(VQVAEConfig, config))
    m.load_state_dict(tensors)
    return m.to(device).eval()


def save_generator(vqvae: VQVAE, prior: Prior, folder, card: str | None = None, half: bool = False) -> Path:
    tensors = {f"vqvae.{k}": v for k, v in vqvae.state_dict().items()}
    tensors |= {f"prior.{k}": v for k, v in prior.state_dict().items()}
    return save_model(folder, tensors, {"kind": "generator", "config": {"vqvae": to_dict(vqvae.config),
                                                                        "prior": to_dict(prior.config)}}, card, half)


class MusicGenerator:
    """``generate(seconds=8, temperature=1.0, seed=0, prompt=None) -> (audio, sr)``."""

    def __init__(self, vqvae: VQVAE, prior: Prior, vocoder: Vocoder):
        vqvae.config.audio.check_same(vocoder.config, "the vocoder")
        if prior.config.vocab != vqvae.config.codebook_size:
            raise ConfigMismatch(f"prior vocabulary {prior.config.vocab} != codebook size {vqvae.config.codebook_size}.")
        self.vqvae, self.prior, self.vocoder = vqvae.eval(), prior.eval(), vocoder
        self.config = vqvae.config.audio
        self.name = "generator"
        self.last_info: GenerationInfo | None = None

    @classmethod
    def from_pretrained(cls, name_or_dir=None, vocoder: Vocoder | str | None = None, device="cpu") -> "MusicGenerator":
        entry = registry.resolve(name_or_dir or registry.DEFAULTS["generator"], kind="generator")
        vq = VQVAE(from_dict(VQVAEConfig, entry.config["vqvae"]))
        pr = Prior(from_dict(PriorConfig, entry.config["prior"]))
        tensors = load_weights(entry.weights)
        vq.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("vqvae.")})
        pr.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("prior.")})
        if not isinstance(vocoder, Vocoder):
            vocoder = Vocoder.from_pretrained(vocoder, device=device)
        g = cls(vq.to(device), pr.to(device), vocoder)
        g.name = entry.name
        return g

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def codes_per_second(self) -> float:
        return self.config.frame_rate / self.vqvae.config.down

    def encode_audio(self, audio: np.ndarray) -> torch.Tensor:
        mel = self.vocoder.mel(torch.from_numpy(audio).to(self.vocoder.device)[None])
        return self.vqvae.encode(crop_to_multiple(mel, self.vqvae.config.down))

    @torch.inference_mode()
    def codes_to_audio(self, codes: torch.Tensor) -> np.ndarray:
        down = self.vqvae.config.down
        mel = chunked(stateless(lambda c, start_frame: self.vqvae.decode(c), down), codes, 256,
                      self.vqvae.context_frames(), down)
        y = self.vocoder.vocode_long(mel)
        return y.reshape(-1).float().cpu().numpy()

    @torch.inference_mode()
    def generate(self, seconds: float = 8.0, temperature: float = 1.0, seed: int = 0, prompt=None,
                 prompt_sr: int | None = None, prompt_seconds: float | None = None, top_k: int | None = None,
                 top_p: float | None = None) -> tuple[np.ndarray, int]:
        """New audio of ``seconds``. With ``prompt`` (file or array), its first ``prompt_seconds`` (default: all,
        up to ``seconds``) are kept as they are and the prior continues from their codes."""
        if not 0 < seconds <= MAX_SECONDS:
            raise StudioError(f"seconds must be in (0, {MAX_SECONDS:.0f}], got {seconds}.")
        if temperature <= 0:
            raise StudioError(f"temperature must be positive, got {temperature}.")
        sr = self.sample_rate
        n = int(round(seconds * sr))
        prompt_audio, prompt_codes = None, None
        if prompt is not None:
            prompt_audio = audio_input(prompt, prompt_sr, sr, missing_sr="pass prompt_sr with a prompt array.")
            keep = min(len(prompt_audio), n, int((prompt_seconds or seconds) * sr))
            prompt_audio = prompt_audio[:keep]
            prompt_codes = self.encode_audio(prompt_audio)
        length = int(np.ceil(n / sr * self.codes_per_second))
        # The prior has a rest mode: some draws stay near-silent for the whole clip. Such a draw is discarded and
        # the seed drawn again (a fixed sequence of sub-seeds, so a seed still always gives the same clip); if
        # every draw is silent the loudest is returned with a NearSilentWarning, never silently.
        best = None
        for attempt in range(1 + SILENCE_RETRIES):
            g = torch.Generator().manual_seed(int(seed) if attempt == 0 else
                                              int(np.random.SeedSequence([int(seed), attempt]).generate_state(1)[0]))
            codes = self.prior.sample(length, prompt=prompt_codes, temperature=temperature, top_k=top_k, top_p=top_p,
                                      generator=g)
            y = self.codes_to_audio(codes)
            y = np.pad(y, (0, max(0, n - len(y))))[:n]
            level = rms_dbfs(y[len(prompt_audio):] if prompt_audio is not None and len(prompt_audio) < n else y)
            if best is None or level > best[1]:
                best = (y, level)
            if level >= SILENT_DBFS:
                break
        y, level = best
        self.last_info = GenerationInfo(int(seed), attempt + 1, level, level < SILENT_DBFS)
        if self.last_info.near_silent:
            warnings.warn(self.last_info.message(), NearSilentWarning, stacklevel=2)
        if prompt_audio is not None and len(prompt_audio):
            k = len(prompt_audio)
            fade = min(k, int(0.05 * sr), n - k) if n > k else 0
            out = y.copy()
            out[:k] = prompt_audio
            if fade > 0:  # crossfade the kept prompt into the continuation
                ramp = np.linspace(0, 1, fade, dtype=np.float32)
                out[k - fade:k] = prompt_audio[k - fade:] * (1 - ramp) + y[k - fade:k] * ramp
            y = out
        return y.astype(np.float32), sr


# The old name, kept for existing code (``from studio import Generator``); not ``studio.vocoder.Generator``.
Generator = MusicGenerator
