"""Dataclass configs <-> plain dicts / JSON, with nested dataclasses and clear errors for unknown keys."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import secrets
import typing
from pathlib import Path

from .errors import ConfigMismatch


def to_dict(cfg) -> dict:
    """A JSON-ready dict of a (nested) dataclass; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def from_dict(cls, d: dict):
    """Build dataclass ``cls`` from ``d``, recursing into nested dataclass fields; unknown keys are an error."""
    if not isinstance(d, dict):
        raise ConfigMismatch(f"{cls.__name__} must be given as a mapping, got {type(d).__name__}.")
    if hasattr(cls, "upgrade"):  # a config whose layout changed reads its older files
        d = cls.upgrade(d)
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
        elif isinstance(value, list) and typing.get_origin(hint) is tuple:  # JSON's lists, nested ones too
            value = _tuples(value)
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


# ----------------------------------------------------------------------------------------------- command-line flags
# A config field is a flag: ``--field-name``, its type from the annotation, its help from ``metadata["help"]`` or
# else the field's comment in the source (a trailing one, or the comment lines right above it). Every flag defaults
# to None, meaning "unset: the config's value stands" (so ``--lr 0`` is 0). ``metadata["flag"]`` overrides the
# argparse keywords and ``metadata["parse"]`` turns the parsed value into the field's (e.g. FFT sizes -> triples).


def setting(default, help: str, **metadata):
    """A config field with its flag's help text (and e.g. ``metavar``, ``flag``, ``parse``), where the field's
    comment would not do as help."""
    kind = "default_factory" if callable(default) else "default"
    return dataclasses.field(**{kind: default}, metadata={"help": help, **metadata})


@functools.lru_cache(maxsize=None)  # reading a class's source is slow, and every command's parser asks
def field_comments(cls) -> dict[str, str]:
    """Field name -> the comment that documents it in the source of ``cls`` or the dataclass it extends (empty where
    there is none)."""
    out = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            out.update({k: v for k, v in _class_comments(klass).items() if v or k not in out})
    return out


def _class_comments(cls) -> dict[str, str]:
    import ast
    import inspect
    import io
    import textwrap
    import tokenize

    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (e.g. built in a REPL): no help text, the flags still work
        return {}
    lines = src.splitlines()
    comments = {t.start[0]: t.string.lstrip("#").strip()
                for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type == tokenize.COMMENT}
    out = {}
    for node in ast.parse(src).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        trailing = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        above, n = [], node.lineno - 1
        while n in comments and lines[n - 1].lstrip().startswith("#"):
            above.insert(0, comments[n])
            n -= 1
        out[node.target.id] = " ".join(trailing or above)
    return out


def _scalar(hint):
    """(argparse type, choices) for a scalar annotation, or None."""
    if hint in (int, float, str):
        return hint, None
    if typing.get_origin(hint) is typing.Literal:
        values = typing.get_args(hint)
        return type(values[0]), values
    return None


def flag_kwargs(cls, name: str) -> dict | None:
    """argparse keywords for field ``name`` of dataclass ``cls``; None for a nested dataclass (not a flag).
    Raises TypeError for an annotation with no flag form (give it ``metadata["flag"]`` or leave it out)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    kw = dict(f.metadata["flag"]) if "flag" in f.metadata else _flag_form(cls, name)
    if kw is not None and "metavar" in f.metadata:
        kw["metavar"] = f.metadata["metavar"]
    return kw


def _flag_form(cls, name: str) -> dict | None:
    hint = typing.get_type_hints(cls)[name]
    if type(None) in typing.get_args(hint):  # ``X | None``: the flag gives an X
        hint = next(h for h in typing.get_args(hint) if h is not type(None))
    if dataclasses.is_dataclass(hint):
        return None
    if hint is bool:
        import argparse

        return {"action": argparse.BooleanOptionalAction}
    if _scalar(hint):
        kind, choices = _scalar(hint)
        return {"type": kind, **({"choices": choices} if choices else {})}
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and args and _scalar(args[0]) and all(a in (args[0], ...) for a in args):
        kind, choices = _scalar(args[0])  # tuple[int, ...]: one or more; tuple[float, float]: exactly two
        nargs = "+" if args[-1] is ... else len(args)
        return {"type": kind, "nargs": nargs, **({"choices": choices} if choices else {})}
    raise TypeError(f"{cls.__name__}.{name}: no command-line form for {hint!r}; give it metadata={{'flag': ...}} "
                    f"or leave it out of the flags.")


def flag_value(cls, name: str, value):
    """A parsed flag's value as field ``name`` of ``cls`` holds it (lists -> tuples, ``metadata["parse"]``)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if "parse" in f.metadata:
        return f.metadata["parse"](value)
    return tuple(value) if isinstance(value, list) else value


def override(cfg, values: dict):
    """``cfg`` with ``values`` (dotted path -> value, e.g. ``generator.audio.hop_length``) set; each dataclass is
    rebuilt once with all of its changes, so a check across fields (ratios x hop) sees them together."""
    nested: dict = {}
    for path, value in values.items():
        *parents, leaf = path.split(".")
        node = nested
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value

    def apply(obj, changes):
        return dataclasses.replace(obj, **{k: apply(getattr(obj, k), v) if isinstance(v, dict) else v
                                          for k, v in changes.items()})

    return apply(cfg, nested) if nested else cfg
