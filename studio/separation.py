"""Source separation with Demucs, from local weights only.

Demucs's ``get_model(name)`` without a local repository goes to the network (HuggingFace hub, then Meta's
server), which offline means a ~40 s wait before failing. ``load_demucs`` never does: it reads a local folder in
the layout of Demucs's own local repositories (``get_model(name, repo=folder)``, ``demucs -n NAME --repo FOLDER``)
and fails at once, naming the files to put there, when they are absent.

The folder is ``repo`` if given, else ``$STUDIO_DEMUCS_DIR``, else ``<models>/demucs`` (the registry's models
folder). For the default ``htdemucs`` it needs one file, from https://dl.fbaipublicfiles.com/demucs/::

    models/demucs/955717e8-8726e21a.th      hybrid_transformer/955717e8-8726e21a.th (checksum in the name)

A bag of models is named by ``<name>.yaml`` in the folder (Demucs's format: ``models: [signatures]``, optional
``weights``, ``segment``); for the names Demucs ships (htdemucs, htdemucs_ft, htdemucs_6s, mdx_extra, ...) the
definition bundled with Demucs is used when the folder has none. Each model is ``<sig>.th`` or
``<sig>-<sha256 prefix>.th`` (Demucs's package), or ``<sig>.safetensors`` (the HuggingFace hub's files). A single
model may also be ``<name>.th`` itself.

    model = load_demucs()                                  # htdemucs from models/demucs
    stems = separate(audio, sr, model, stems=("bass",))    # {"bass": array shaped like audio}
    vocals, sr = isolate_stem(audio, sr, "vocals")         # one stem, default model loaded once
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torchaudio.functional as AF

from .audio import prepare_audio
from .errors import ConfigMismatch, ModelNotFound

ENV = "STUDIO_DEMUCS_DIR"
DEFAULT_MODEL = "htdemucs"
REMOTE_ROOT = "https://dl.fbaipublicfiles.com/demucs/"


def demucs_dir(repo: str | os.PathLike | None = None) -> Path:
    """The folder weights are read from: ``repo``, else ``$STUDIO_DEMUCS_DIR``, else ``<models>/demucs``."""
    if repo is not None:
        return Path(repo).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    from .registry import models_dir

    return models_dir() / "demucs"


def _packaged() -> Path:
    import demucs.pretrained

    return Path(demucs.pretrained.REMOTE_ROOT)


def _remote_files() -> dict[str, str]:
    """signature -> path under ``REMOTE_ROOT`` (from the ``files.txt`` Demucs ships)."""
    out, root = {}, ""
    files = _packaged() / "files.txt"
    for line in files.read_text().splitlines() if files.is_file() else []:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("root:"):
            root = line.split(":", 1)[1].strip()
        else:
            out[line.split("-", 1)[0]] = root + line
    return out


def _bag(name: str, folder: Path) -> tuple[dict | None, Path | None]:
    """The bag definition for ``name``: the folder's ``<name>.yaml``, else the one bundled with Demucs."""
    import yaml

    for f in (folder / f"{name}.yaml", _packaged() / f"{name}.yaml"):
        if f.is_file():
            try:
                bag = yaml.safe_load(f.read_text())
            except yaml.YAMLError as e:
                raise ModelNotFound(f"{f} is not a valid Demucs bag definition ({e}).") from None
            if not isinstance(bag, dict) or not isinstance(bag.get("models"), list) or not bag["models"]:
                raise ModelNotFound(f"{f} is not a Demucs bag definition: it needs 'models: [signatures]'.")
            return bag, f
    return None, None


def _weights(sig: str, folder: Path) -> Path | None:
    found = [p for p in (folder / f"{sig}.th", folder / f"{sig}.safetensors") if p.is_file()]
    found += sorted(p for p in folder.glob(f"{sig}-*.th") if p.is_file())
    return found[0] if found else None


def _missing_message(name: str, folder: Path, sigs: list[str]) -> str:
    remote = _remote_files()
    files = []
    for s in sigs:
        files.append(f"{Path(remote[s]).name} (from {REMOTE_ROOT}{remote[s]})" if s in remote else f"{s}.th")
    where = f"{folder}{'' if folder.is_dir() else ' (a folder that does not exist yet)'}"
    return (f"Demucs model '{name}' is not installed in {where}: put {', '.join(files)} there (or pass another "
            f"folder, or set {ENV}); nothing is downloaded.")


def load_demucs(name: str = DEFAULT_MODEL, repo: str | os.PathLike | None = None, device: str = "cpu"):
    """A Demucs model (or bag of models) from a local folder, in eval mode; ``ModelNotFound`` at once when absent.

    Never touches the network. ``repo`` defaults to ``$STUDIO_DEMUCS_DIR`` or ``<models>/demucs``.
    """
    folder = demucs_dir(repo)
    single = _weights(name, folder) if folder.is_dir() else None
    bag, bag_file = (None, None) if single is not None else _bag(name, folder)
    if bag is None and single is None:
        if not folder.is_dir():
            raise ModelNotFound(f"Demucs folder {folder} does not exist; create it and put the model '{name}' there "
                                f"(<name>.th, or <name>.yaml and its weights), or set {ENV}.")
        known = sorted(p.stem for p in _packaged().glob("*.yaml"))
        raise ModelNotFound(f"no Demucs model '{name}' in {folder}: expected {name}.th or {name}.yaml with its weights "
                            f"(names with a bundled definition: {', '.join(known)}).")
    sigs = [] if bag is None else [str(s) for s in bag["models"]]
    files = {s: _weights(s, folder) for s in sigs}
    absent = [s for s, f in files.items() if f is None]
    if not folder.is_dir() or absent:
        raise ModelNotFound(_missing_message(name, folder, absent or sigs))
    try:
        model = _load(name, folder, single, bag, bag_file, files)
    except ModelNotFound:
        raise
    except (Exception, SystemExit) as e:  # checksum mismatch, truncated file, pickle from another demucs version...
        raise ModelNotFound(f"could not load Demucs model '{name}' from {folder} ({type(e).__name__}: {e}).") from None
    return model.to(device).eval()


def _load(name, folder, single, bag, bag_file, files):
    from demucs.apply import BagOfModels
    from demucs.hf import load_safetensors_model
    from demucs.pretrained import get_model
    from demucs.repo import LocalRepo

    local_bag = bag_file is not None and bag_file.parent == folder
    if (single is not None and single.suffix == ".th") or (local_bag and all(f.suffix == ".th" for f in files.values())):
        return get_model(name, repo=folder)  # Demucs's own local repository loader (checks checksums)
    if single is not None:
        return load_safetensors_model(single)
    # a bundled bag definition, or safetensors weights: the same pieces, put together here
    local = LocalRepo(folder)
    models = [load_safetensors_model(f) if f.suffix == ".safetensors" else local.get_model(s) for s, f in files.items()]
    return BagOfModels(models, bag.get("weights"), bag.get("segment"))


def _to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``[C, T]`` -> ``[channels, T]``: kept, duplicated from mono, or downmixed and duplicated."""
    if x.shape[0] == channels:
        return x
    return x.mean(0, keepdim=True).expand(channels, -1).contiguous()


@torch.no_grad()
def separate(audio: np.ndarray | torch.Tensor, sr: int, model, stems: Sequence[str] | None = None, *,
             shifts: int = 1, overlap: float = 0.25, device: str | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Split a clip ``[T]`` or ``[C, T]`` at any rate into ``stems`` (default: all the model's sources).

    The clip is converted to the model's rate and channel count, separated with ``demucs.apply.apply_model``
    (normalised as Demucs's CLI does), and each stem is converted back: same rate, shape and length as the input.
    ``shifts`` random time shifts are averaged (seeded by ``seed``, so results are reproducible).
    """
    sources = list(model.sources)
    stems = list(stems) if stems is not None else sources
    unknown = [s for s in stems if s not in sources]
    if unknown:
        raise ConfigMismatch(f"this Demucs model has no stems {unknown}; it separates: {', '.join(sources)}.")
    was_1d = np.ndim(audio) == 1
    arr = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    gain = max(1.0, float(np.abs(arr).max())) if arr.dtype.kind == "f" and arr.size else 1.0  # undone below
    x, _ = prepare_audio(arr, sr, model.samplerate, mono=False, min_samples=1)  # [C, T'] float32, peak <= 1
    n_in, channels_in = np.shape(audio)[-1], x.shape[0]
    mix = _to_channels(torch.from_numpy(x), model.audio_channels)
    ref = mix.mean(0)
    mean, std = ref.mean(), ref.std() + 1e-8
    from demucs.apply import apply_model

    state = random.getstate()
    random.seed(seed)
    try:
        out = apply_model(model, ((mix - mean) / std)[None], shifts=shifts, split=True, overlap=overlap,
                          progress=False, device=device or next(model.parameters()).device)[0]
    finally:
        random.setstate(state)
    out = (out * std + mean) * gain  # [sources, channels, T']
    result = {}
    for s in stems:
        y = out[sources.index(s)].float().cpu()
        if model.samplerate != sr:
            y = AF.resample(y, model.samplerate, sr)
        y = y[:, :n_in] if y.shape[-1] >= n_in else torch.nn.functional.pad(y, (0, n_in - y.shape[-1]))
        y = y.mean(0) if was_1d else _to_channels(y, channels_in)
        result[s] = np.ascontiguousarray(y.numpy(), dtype=np.float32)
    return result


_loaded: dict[tuple[str, str], object] = {}


def isolate_stem(audio: np.ndarray | torch.Tensor, sr: int, stem: str, model=None, **kwargs) -> tuple[np.ndarray, int]:
    """One stem of a clip: ``(array shaped like audio, sr)``. ``model`` is a loaded Demucs model, a model name, or
    None for the default (``htdemucs`` from the local Demucs folder; loaded once per process)."""
    if model is None or isinstance(model, str):
        name = model or DEFAULT_MODEL
        key = (name, str(demucs_dir()))
        if key not in _loaded:
            _loaded[key] = load_demucs(name)
        model = _loaded[key]
    return separate(audio, sr, model, (stem,), **kwargs)[stem], sr
