"""Checkpoints as safetensors, written atomically, with everything needed for an exact resume.

A checkpoint is one ``.safetensors`` file. Tensors: every module's ``state_dict`` (``model/<module>/<key>``), every
optimizer's per-parameter state (``optim/<optim>/<index>/<key>``) and the torch RNG states. Plain data (step,
configs, optimizer hyper-parameters, Python/NumPy RNG states) lives in the file's JSON metadata. Nothing is
unpickled on load, so a checkpoint cannot carry code. The file I/O (atomic writes, safe reads) is
``studio.weights``, shared with model folders.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from ..weights import CheckpointError, atomic_save_tensors, load_tensors

FORMAT = "melgan-studio-checkpoint/1"


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng/cuda"] = torch.cuda.get_rng_state()
    np_state = np.random.get_state()
    py_state = random.getstate()
    meta = {
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    if "rng/cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng/cuda"])
    n = meta["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    p = meta["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def save_checkpoint(path, *, modules: dict, optimizers: dict, step: int, extra: dict | None = None) -> Path:
    """Write modules, optimizers, step, RNG states and ``extra`` (JSON-able, e.g. configs) to ``path``."""
    tensors: dict[str, torch.Tensor] = {}
    for name, m in modules.items():
        for k, v in m.state_dict().items():
            tensors[f"model/{name}/{k}"] = v
    optim_meta = {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        scalars = {}
        for idx, st in sd["state"].items():
            for k, v in st.items():
                if isinstance(v, torch.Tensor):
                    tensors[f"optim/{name}/{idx}/{k}"] = v
                else:
                    scalars[f"{idx}/{k}"] = v
        optim_meta[name] = {"param_groups": sd["param_groups"], "scalars": scalars}
    rng_tensors, rng_meta = _rng_state()
    tensors.update(rng_tensors)
    meta = {"format": FORMAT, "step": step, "optimizers": optim_meta, "rng": rng_meta, "extra": extra or {}}
    return atomic_save_tensors(tensors, path, metadata={"studio": json.dumps(meta)})


def read_checkpoint_meta(path) -> dict:
    """The checkpoint's plain-data part (step, configs...) without loading its tensors."""
    _, meta = load_tensors(path)
    return _parse_meta(path, meta)


def _parse_meta(path, meta: dict[str, str]) -> dict:
    try:
        m = json.loads(meta["studio"])
        assert m["format"] == FORMAT
        return m
    except (KeyError, AssertionError, json.JSONDecodeError):
        raise CheckpointError(f"{path} is a safetensors file but not a studio training checkpoint.") from None


def load_checkpoint(path, *, modules: dict, optimizers: dict, restore_rng: bool = True,
                    renames: dict[str, str] | None = None) -> dict:
    """Load a checkpoint written by ``save_checkpoint`` into ``modules``/``optimizers``; returns its metadata.
    ``renames``: tensor-name prefixes of an older layout -> their names now (a module moved)."""
    tensors, raw = load_tensors(path)
    meta = _parse_meta(path, raw)
    for old, new in (renames or {}).items():
        tensors = {new + k[len(old):] if k.startswith(old) else k: v for k, v in tensors.items()}
    for name, m in modules.items():
        prefix = f"model/{name}/"
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            m.load_state_dict(sd)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: module '{name}' does not match this model ({' '.join(str(e).split())[:300]}).") from None
    for name, opt in optimizers.items():
        om = meta["optimizers"][name]
        state: dict[int, dict] = {}
        prefix = f"optim/{name}/"
        for k, v in tensors.items():
            if k.startswith(prefix):
                idx, key = k[len(prefix):].split("/", 1)
                state.setdefault(int(idx), {})[key] = v
        for k, v in om["scalars"].items():
            idx, key = k.split("/", 1)
            state.setdefault(int(idx), {})[key] = v
        opt.load_state_dict({"state": state, "param_groups": om["param_groups"]})
    if restore_rng:
        _set_rng_state(tensors, meta["rng"])
    return meta
