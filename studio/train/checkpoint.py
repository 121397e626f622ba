"""Checkpoints as safetensors, written atomically, with everything needed for an exact resume.

A checkpoint is one ``.safetensors`` file. Tensors: every module's ``state_dict`` (``model/<module>/<key>``), every
optimizer's per-parameter state (``optim/<optim>/<index>/<key>``) and the torch RNG states. Plain data (step,
configs, optimizer hyper-parameters, Python/NumPy RNG states) lives in the file's JSON metadata. Nothing is
unpickled on load, so a checkpoint cannot carry code. Legacy ``.pt`` state dicts are read only through
``load_legacy_state_dict`` (``weights_only=True``).
"""

from __future__ import annotations

import glob
import json
import os
import pickle
import random
import re
import secrets
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from ..errors import ModelNotFound, StudioError

FORMAT = "melgan-studio-checkpoint/1"


class CheckpointError(StudioError):
    """A checkpoint that cannot be written or read."""


def _tmp_prefix(path: Path) -> str:
    """Temp folders are ``.<name>.pid<pid>.<random>.tmp``: hidden, never ``*.safetensors``, owned by a process."""
    return f".{path.name}.pid{os.getpid()}."


def _remove_stale_temps(path: Path) -> None:
    """Delete temp folders of ``path`` left by writers that died mid-save (kill -9, power loss)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.pid*.tmp"):
        try:
            pid = int(tmp.name[len(path.name) + 5:].split(".", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            try:
                tmp.unlink()
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: someone else's live process
        return True
    return True


def _io_reason(e: Exception) -> str | None:
    """``strerror`` of an OSError, or of the OS error inside a safetensors error; None for anything else."""
    if isinstance(e, OSError):
        return e.strerror or str(e)
    m = re.search(r"os error (\d+)", str(e))
    return os.strerror(int(m.group(1))) if m else None


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None,
                        *, half: bool = False) -> Path:
    """``safetensors`` save into a private temp folder next to ``path``, fsync, then ``os.replace``.

    ``half``: store floating-point tensors as float16 (e.g. shipped inference weights); others are kept as they are.

    An interrupted write (kill, full disk, file-size limit) leaves the previous file untouched; a full disk or any
    other I/O failure is a one-line ``CheckpointError`` naming the path. What a writer killed mid-save leaves (its
    temp folder, with safetensors' own temp file inside) is removed by the next save of the same path.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(path)
        tmp_dir = path.parent / f"{_tmp_prefix(path)}{secrets.token_hex(6)}.tmp"
        tmp_dir.mkdir()
    except OSError as e:
        raise CheckpointError(f"could not write {path} ({e.strerror or e}); the previous file is unchanged.") from None
    tmp = tmp_dir / path.name
    try:
        tensors = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).contiguous().cpu()
                   for k, v in tensors.items()}
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, tmp_dir.stat().st_mode & 0o666)  # safetensors writes 0600; make it 0666 less the umask
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except (OSError, SafetensorError) as e:
        reason = _io_reason(e)
        if reason is None:  # not an I/O failure (e.g. tensors sharing memory): a bug, keep its traceback
            raise
        raise CheckpointError(f"could not write {path} ({reason}); the previous file is unchanged.") from None
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file: ``(tensors, metadata)``. Refuses anything else (e.g. pickles)."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFound(f"no weights file at {path}.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError) as e:
        reason = " ".join(str(e).split())[:200]
        raise CheckpointError(
            f"{path} is not a valid safetensors file ({reason}); only safetensors weights are loaded."
        ) from None


def unpickle_refusal(e: Exception) -> str:
    """What ``torch.load(weights_only=True)`` refused, in a few words (its own message is a paragraph)."""
    found = re.search(r"GLOBAL ([\w.]+)", str(e))
    if found:
        return f"it would import {found.group(1)}"
    detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(e))
    return f"it is not a plain PyTorch file ({detail.group(1).strip() if detail else 'unpickling failed'})"


def load_legacy_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A legacy PyTorch ``.pt``/``.pth`` state dict (``{name: tensor}``), read with ``torch.load(weights_only=True)``.

    Only tensors and plain containers are unpickled: a file that would import or call anything else (a pickle
    carrying code, a whole pickled model, an optimizer object) is refused with a ``CheckpointError`` before any of
    it runs. Convert such weights once with ``atomic_save_tensors`` and load the ``.safetensors`` from then on.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelNotFound(f"no weights file at {path}.")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path} was refused: {unpickle_refusal(e)}; only a plain state dict of tensors is "
                              f"loaded (weights_only=True), and code in a pickle is never run.") from None
    except Exception as e:  # garbage makes the unpickler fail in many ways (KeyError, EOFError, RuntimeError...)
        reason = " ".join(str(e).split())[:160] if isinstance(e, (RuntimeError, OSError, ValueError)) else ""
        reason = reason or ("empty or cut short" if isinstance(e, EOFError) else f"{type(e).__name__} while unpickling")
        raise CheckpointError(f"{path} is not a readable PyTorch file ({reason}); "
                              f"accepted: a state dict saved with torch.save.") from None
    if not isinstance(sd, dict) or not sd or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                     for k, v in sd.items()):
        kind = (f"a {type(sd).__name__}" if not isinstance(sd, dict) else "an empty dict" if not sd
                else "a dict of other things than tensors (e.g. a training checkpoint)")
        raise CheckpointError(f"{path} holds {kind}, not a state dict; accepted: a mapping of parameter names "
                              f"to tensors (e.g. torch.save(model.state_dict(), path)).")
    return dict(sd)


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


def load_checkpoint(path, *, modules: dict, optimizers: dict, restore_rng: bool = True) -> dict:
    """Load a checkpoint written by ``save_checkpoint`` into ``modules``/``optimizers``; returns its metadata."""
    tensors, raw = load_tensors(path)
    meta = _parse_meta(path, raw)
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
