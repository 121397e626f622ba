"""``LearnedTranscriber``: a trained ``TranscriberModel`` as the translator's ``(audio, sample_rate) -> notes``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .. import registry
from ..audio import prepare_audio
from ..config import to_dict
from ..errors import ConfigMismatch, ModelNotFound
from ..nn import chunked, stateless
from ..weights import load_weights, save_model
from .decode import decode_notes
from .model import LEVEL_DBFS, TranscriberModel, transcriber_config

CHUNK_FRAMES = 2048  # ~24 s per chunk: bounded memory on any input
BASIC_PITCH_NAME = "basic-pitch"  # the name that picks basic-pitch (studio.notes.Transcriber) where a model goes


def active_level(x: np.ndarray, sample_rate: int, window_s: float = 0.05, range_db: float = 40.0,
                 floor_db: float = -60.0) -> float:
    """RMS over the 50 ms windows within ``range_db`` of the loudest and above ``floor_db`` dBFS: the level of the
    music, not of its pauses; 0.0 where nothing is above the floor (near-silence is not boosted into notes)."""
    n = max(1, int(window_s * sample_rate))
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if len(x) == 0:
        return 0.0
    ms = np.mean(np.pad(x, (0, (-len(x)) % n)).reshape(-1, n) ** 2, axis=1)
    keep = ms > max(10 ** (floor_db / 10), ms.max() * 10 ** (-range_db / 10))
    return float(np.sqrt(ms[keep].mean())) if keep.any() else 0.0


def save_transcriber(model: TranscriberModel, folder: str | os.PathLike, card: str | None = None,
                     half: bool = False, thresholds: dict | None = None) -> Path:
    record = {"kind": "transcriber", "config": to_dict(model.config)}
    if thresholds:
        record["thresholds"] = thresholds
    return save_model(folder, model.state_dict(), record, card, half)


class LearnedTranscriber:
    """``transcriber(audio, sample_rate) -> notes`` (``studio.notes``' arrays), like ``studio.notes.Transcriber``."""

    def __init__(self, model: TranscriberModel, onset_threshold: float = 0.5, frame_threshold: float = 0.3,
                 min_frames: int = 4):
        self.model = model.eval()
        self.config = model.config.audio
        self.onset_threshold, self.frame_threshold, self.min_frames = onset_threshold, frame_threshold, min_frames

    @classmethod
    def from_pretrained(cls, name_or_dir, device="cpu") -> "LearnedTranscriber":
        entry = registry.resolve(name_or_dir, kind="transcriber")
        model = TranscriberModel(transcriber_config(entry.config))
        try:
            model.load_state_dict(load_weights(entry.weights))
        except RuntimeError as e:
            raise ConfigMismatch(f"{entry.weights} does not match its config ({' '.join(str(e).split())[:200]}).") from None
        from ..config import load_json

        thresholds = load_json(entry.path / registry.CONFIG).get("thresholds", {})
        return cls(model.to(device), **thresholds)

    @torch.inference_mode()
    def posteriors(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Note and onset probabilities ``[88, T]`` of mono audio at the model's rate (``T = len // hop``)."""
        hop = self.config.hop_length
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        frames = len(x) // hop
        level = active_level(x, self.config.sample_rate)
        if frames == 0 or level == 0.0:
            return np.zeros((88, frames), np.float32), np.zeros((88, frames), np.float32)
        x = x[: frames * hop] * (10 ** (LEVEL_DBFS / 20) / level)
        dev = next(self.model.parameters()).device
        # audio as [1, hop, frames], so the chunking (which cuts the last axis in frames) cuts it on frame edges
        framed = torch.from_numpy(x).to(dev).view(frames, hop).T[None]
        step = stateless(lambda f, start: self.model(f.transpose(-1, -2).reshape(1, -1)))
        c = self.model.context_frames()
        probs = torch.sigmoid(chunked(step, framed, CHUNK_FRAMES, (c, c)))[0].float().cpu().numpy()
        return probs[0], probs[1]

    def __call__(self, audio: np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        sr = sample_rate or self.config.sample_rate
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 2:  # [channels, samples]: downmixed (prepare_audio refuses clips too short to resample)
            audio = audio.mean(0)
        if sr != self.config.sample_rate:
            audio, _ = prepare_audio(audio, sr, self.config.sample_rate)
        note, onset = self.posteriors(audio)
        return decode_notes(note, onset, self.config.frame_rate, self.onset_threshold, self.frame_threshold,
                            self.min_frames)


def default_transcriber() -> str:
    """What the translator hears notes with unless told: basic-pitch. The shipped transcriber
    (``registry.DEFAULTS["transcriber"]``) finds the held-out renders' notes far better, but translations of real
    recordings through it were no better (its card), so it is a choice (``transcriber="notes-transcriber-22k"``)."""
    return BASIC_PITCH_NAME


def load_transcriber(name_or_dir: str | None = None, device="cpu"):
    """``(audio, sample_rate) -> notes``: ``basic-pitch`` (its ONNX model), a trained transcriber (registry name or
    folder), or ``None`` for the default (``default_transcriber``)."""
    name = name_or_dir or default_transcriber()
    if name == BASIC_PITCH_NAME:
        from ..notes import Transcriber

        return Transcriber()
    try:
        return LearnedTranscriber.from_pretrained(name, device)
    except ModelNotFound as e:
        raise ModelNotFound(f"{e} Or {BASIC_PITCH_NAME}.") from None
