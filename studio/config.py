"""Dataclass configs <-> plain dicts / JSON, with nested dataclasses and clear errors for unknown keys."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import typing
from pathlib import Path

from .errors import ConfigMismatch


def to_dict(cfg) -> dict:
    """A JSON-ready dict of a (nested) dataclass; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls, d: dict):
    """Build dataclass ``cls`` from ``d``, recursing into nested dataclass fields; unknown keys are an error."""
    if not isinstance(d, dict):
        raise ConfigMismatch(f"{cls.__name__} must be given as a mapping, got {type(d).__name__}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ConfigMismatch(f"unknown {cls.__name__} settings {sorted(unknown)}; accepted: {sorted(fields)}.")
    kwargs = {}
    for name, value in d.items():
        hint = hints[name]
        if value is not None and type(None) in typing.get_args(hint):  # ``X | None``: build the X
            hint = next(h for h in typing.get_args(hint) if h is not type(None))
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value)
        elif isinstance(value, list) and typing.get_origin(hint) is tuple:
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def save_json(obj: dict, path: str | Path) -> None:
    """Write ``obj`` as JSON atomically (a temp file in the same folder, then a rename): never a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.pid{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_json(path: str | Path) -> dict:
    """Read JSON as plain data (never code)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigMismatch(f"cannot read config {path}: {e}.") from None
