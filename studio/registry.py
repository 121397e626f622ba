"""Model registry: names in ``models/`` -> (card, config, weights).

A model is a folder holding ``config.json`` (``{"kind": ..., "config": {...}, "training": {...}}``),
``model.safetensors`` and a ``README.md`` card. ``training`` (optional) is the card's run in numbers: steps, batch,
wall_minutes, hardware (a generator holds one record per stage: ``vqvae``, ``prior``); ``studio plan`` and the
app's Models tab read it. ``resolve`` takes a registry name or a folder path. The models folder is the repository's
``models/`` unless ``STUDIO_MODELS_DIR`` names another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .config import load_json
from .errors import ModelNotFound

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"

# The shipped model of each kind: the one each pipeline uses when none is named (the transcriber is the exception:
# the translator hears notes with basic-pitch unless told otherwise, see studio.transcription.pipeline).
DEFAULTS = {"vocoder": "melgan-music-22k", "translator": "translator-notes-22k", "generator": "piano-vqvae-prior-22k",
            "transcriber": "notes-transcriber-22k"}


def models_dir() -> Path:
    return Path(os.environ.get("STUDIO_MODELS_DIR", Path(__file__).resolve().parents[1] / "models"))


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    kind: str
    config: dict
    training: dict = field(default_factory=dict)
    architecture: str | None = None  # vocoders: the generator's ("melgan" when absent)

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    @property
    def card(self) -> str:
        p = self.path / CARD
        return p.read_text() if p.is_file() else f"(no card in {self.path})"


def resolve(name_or_path: str | os.PathLike, kind: str | None = None) -> ModelEntry:
    """Find a model by registry name or folder; check it holds a config, weights, and (if given) the right kind."""
    p = Path(name_or_path)
    if not (p / CONFIG).is_file():
        p = models_dir() / str(name_or_path)
    if not (p / CONFIG).is_file():
        available = ", ".join(e.name for e in list_models(kind)) or "none installed"
        raise ModelNotFound(
            f"no model '{name_or_path}': give a folder with {CONFIG} and {WEIGHTS}, or a name in {models_dir()} "
            f"(available{' ' + kind + 's' if kind else ''}: {available})."
        )
    cfg = load_json(p / CONFIG)
    found = cfg.get("kind")
    if kind is not None and found != kind:
        raise ModelNotFound(f"{p} holds a {found!r} model, not a {kind!r}.")
    if not (p / WEIGHTS).is_file():
        raise ModelNotFound(f"{p} has no {WEIGHTS}.")
    return ModelEntry(p.name, p, found, cfg.get("config", {}), cfg.get("training", {}), cfg.get("architecture"))


def list_models(kind: str | None = None) -> list[ModelEntry]:
    out = []
    root = models_dir()
    if root.is_dir():
        for p in sorted(root.iterdir()):
            if (p / CONFIG).is_file() and (p / WEIGHTS).is_file():
                cfg = load_json(p / CONFIG)
                if kind is None or cfg.get("kind") == kind:
                    out.append(ModelEntry(p.name, p, cfg.get("kind"), cfg.get("config", {}), cfg.get("training", {}),
                                          cfg.get("architecture")))
    return out

