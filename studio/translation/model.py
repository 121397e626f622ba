"""Music translation on mels, two modes; both decoded by the shared MelGAN vocoder (Kumar et al. 2019).

``notes`` (the default): the source's notes, transcribed (basic-pitch; exact score notes in training), as a piano
roll, with the source's loudness contour, into ONE decoder conditioned on the target instrument, trained on parallel
renders (the same score on every instrument) to produce the target's mel. The notes are kept by construction: the
decoder never sees the source's timbre, only what is played and how loud. With ``source_mel`` the source's own
log-mel (its level made relative) goes in beside them: the onsets, vibrato and pitch detail that a transcription
smooths away. Parallel training (the target is always another instrument) teaches it to take the articulation from
there, not the timbre.

``universal`` (after Mor et al. 2019): one encoder shared by all domains; a domain-confusion classifier on its latent, trained adversarially through
gradient reversal so that the latent carries the notes rather than the instrument; and ONE decoder conditioned on a
learned domain embedding (FiLM), where the original uses one WaveNet decoder per domain. Why: the decoders of all
instruments share how notes become spectra, so one conditioned decoder needs less data per domain, keeps the
shipped model small, and makes blending two instruments a plain interpolation of their embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from ..audio import AudioConfig
from ..config import from_dict
from ..errors import ConfigMismatch
from ..latent import MelDecoder, MelEncoder, denormalize_mel, normalize_mel
from ..nn import input_span
from ..notes import PITCHES


MODES = ("notes", "universal")
NOTE_FEATURES = 2 * PITCHES + 1  # piano roll (sounding, onsets) + loudness


def _frame_level(mel: torch.Tensor) -> torch.Tensor:
    """Log-mel ``[B, n_mels, T]`` -> each frame's energy ``[B, 1, T]`` (log10)."""
    return torch.logsumexp(mel * math.log(10), dim=1, keepdim=True) / math.log(10)


def loudness(mel: torch.Tensor, range_log10: float = 3.0) -> torch.Tensor:
    """Log-mel ``[B, n_mels, T]`` -> ``[B, 1, T]`` in [0, 1]: frame energy relative to the loudest frame of the input
    (1 = loudest, 0 = 60 dB below or less). Relative, so a recording's gain does not matter."""
    level = _frame_level(mel)
    return ((level - level.amax(dim=-1, keepdim=True)) / range_log10 + 1).clamp(0, 1)


def relative_mel(mel: torch.Tensor, range_log10: float = 5.0) -> torch.Tensor:
    """Log-mel ``[B, n_mels, T]`` -> the same relative to the input's loudest frame, scaled to about [-1, 1] (1 = that
    frame's level, -1 = 100 dB below it or less): gain-free, as ``loudness``."""
    peak = _frame_level(mel).amax(dim=-1, keepdim=True)
    return ((mel - peak) / range_log10 * 2 + 1).clamp(min=-1)


@dataclass(frozen=True)
class TranslatorConfig:
    audio: AudioConfig = field(default_factory=AudioConfig)
    domains: tuple[str, ...] = ("piano", "violin")
    channels: int = 256  # width of the encoder's and the decoder's conv stacks
    latent: int = 64  # channels of the latent between encoder and decoder
    down: int | None = None  # latent frame rate = mel frame rate / down; None: 1 for notes, 2 (43 Hz) for universal
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2, 4, 8)
    domain_dim: int = 64  # size of the instrument embedding the decoder is conditioned on (FiLM)
    dropout: float = 0.0  # in the encoder's blocks
    mode: Literal["notes", "universal"] = "notes"  # notes: transcribed notes in; universal: Mor et al.'s encoder
    # notes mode: each domain's sampled range (lowest, highest MIDI), in ``domains`` order, for octave folding
    ranges: tuple[tuple[int, int], ...] = ()
    # notes mode: the source's relative log-mel (``relative_mel``) goes in too, for articulation and pitch detail
    source_mel: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigMismatch(f"translator mode must be one of {', '.join(MODES)}, got {self.mode!r}.")
        object.__setattr__(self, "ranges", tuple(tuple(int(v) for v in r) for r in self.ranges))
        if self.ranges and len(self.ranges) != len(self.domains):
            raise ConfigMismatch(f"{len(self.ranges)} ranges for {len(self.domains)} domains.")
        if self.down is None:
            object.__setattr__(self, "down", 1 if self.mode == "notes" else 2)


def translator_config(d: dict) -> TranslatorConfig:
    """A saved config -> ``TranslatorConfig``; configs saved before the notes mode existed are universal ones."""
    return from_dict(TranslatorConfig, {"mode": "universal", **d})


class GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.weight * grad, None


class DomainClassifier(nn.Module):
    """Latent ``[B, latent, T']`` -> domain logits ``[B, n_domains]`` (conv stack, then mean over time)."""

    def __init__(self, latent: int, n_domains: int, channels: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(latent, channels, 3, padding=1), nn.ELU(),
            nn.Conv1d(channels, channels, 3, padding=2, dilation=2), nn.ELU(),
            nn.Conv1d(channels, n_domains, 1),
        )

    def forward(self, z):
        return self.net(z).mean(dim=-1)


class TranslatorModel(nn.Module):
    """``universal``: log-mel ``[B, n_mels, T]`` (T a multiple of ``down``) -> latent -> log-mel for a target domain.
    ``notes``: note features ``[B, NOTE_FEATURES, T]`` (``note_features``) -> latent -> log-mel for a target domain
    (``down`` is 1: the notes are already at the frame rate)."""

    def __init__(self, config: TranslatorConfig = TranslatorConfig()):
        super().__init__()
        c = config
        self.config = c
        self.encoder = MelEncoder(self.inputs, c.channels, c.latent, c.down, c.dilations, c.dropout)
        self.decoder = MelDecoder(c.audio.n_mels, c.channels, c.latent, c.down, c.dilations, c.domain_dim)
        self.domain_embedding = nn.Embedding(len(c.domains), c.domain_dim)

    @property
    def inputs(self) -> int:
        """Channels of what ``encode`` reads: note features (+ the source's mel), or a mel."""
        c = self.config
        if c.mode == "notes":
            return NOTE_FEATURES + (c.audio.n_mels if c.source_mel else 0)
        return c.audio.n_mels

    def context_frames(self) -> tuple[int, int]:
        """Input frames ``(left, right)`` that the output frames of one latent step read before the first and after
        the last (for ``studio.nn.chunked``), rounded up to multiples of ``down``: windows stay on the latent grid."""
        d = self.config.down
        lo, hi = input_span([self.encoder, self.decoder], 0, d - 1)  # the output frames of latent frame 0
        return -(lo // d) * d, -(-(hi - d + 1) // d) * d

    def note_features(self, roll: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """Roll ``[B, 2, 88, T]`` (``studio.notes.piano_roll``) + the source's log-mel ``[B, n_mels, T]`` -> the
        encoder's input ``[B, inputs, T]``: the roll, the source's loudness, and with ``source_mel`` its relative mel."""
        parts = [roll.flatten(1, 2), loudness(source)] + ([relative_mel(source)] if self.config.source_mel else [])
        return torch.cat(parts, dim=1)

    def widen_state(self, state: dict) -> dict:
        """A state of the same model without ``source_mel`` -> one for this model: the source-mel inputs' weights
        start at zero, so the widened model starts out playing exactly what the narrower one did."""
        k = "encoder.inp.weight"
        w = self.state_dict()[k]
        if k in state and state[k].shape[1] < w.shape[1] and state[k].shape[0] == w.shape[0]:
            extra = w.new_zeros(w.shape[0], w.shape[1] - state[k].shape[1], w.shape[2])
            state = {**state, k: torch.cat([state[k].to(w.dtype), extra], dim=1)}
        return state

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``universal``: a log-mel; ``notes``: note features."""
        return self.encoder(x if self.config.mode == "notes" else normalize_mel(x))

    def domain_vector(self, weights: torch.Tensor) -> torch.Tensor:
        """``[B, n_domains]`` mixture weights -> ``[B, domain_dim]`` embedding (one-hot = one instrument)."""
        return weights @ self.domain_embedding.weight

    def decode(self, z: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """``domain``: ``[B]`` indices or ``[B, n_domains]`` mixture weights."""
        if domain.dim() == 1:
            emb = self.domain_embedding(domain)
        else:
            emb = self.domain_vector(domain)
        return denormalize_mel(self.decoder(z, emb), math.log10(self.config.audio.log_floor))

    def forward(self, mel: torch.Tensor, domain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(latent, decoded mel)``: one call, so that DDP sees a single forward per step."""
        z = self.encode(mel)
        return z, self.decode(z, domain)
