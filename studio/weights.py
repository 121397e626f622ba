"""Model weights on disk: safetensors files written atomically, read without unpickling, and model folders.

Below the models, so inference code loads weights without importing training code. A model folder is
``config.json`` (``{"kind": ..., "config": ...}``), ``model.safetensors`` and an optional ``README.md`` card
(``save_model``); ``load_weights`` reads its tensors as float32 where they are floating point, since shipped weights
are stored as float16. Legacy ``.pt`` state dicts are read only through ``load_legacy_state_dict``
(``weights_only=True``). Training checkpoints (``studio.train.checkpoint``) are written with the same functions.
"""

from __future__ import annotations

import glob
import os
import pickle
import re
import secrets
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from . import registry
from .config import save_json
from .errors import ModelNotFound, StudioError


class CheckpointError(StudioError):
    """A weights or checkpoint file that cannot be written or read (the name predates model folders here)."""


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


def save_model(folder: str | os.PathLike, tensors: dict[str, torch.Tensor], record: dict, card: str | None = None,
               half: bool = False) -> Path:
    """Write a model folder: ``tensors`` (``half``: as float16), ``record`` (``{"kind", "config", ...}``) as its
    ``config.json``, and ``card`` as its README when given."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(tensors, folder / registry.WEIGHTS, half=half)
    save_json(record, folder / registry.CONFIG)
    if card is not None:
        (folder / registry.CARD).write_text(card)
    return folder


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A model's weights file as a state dict, floating-point tensors as float32 (shipped weights are float16)."""
    tensors, _ = load_tensors(path)
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
