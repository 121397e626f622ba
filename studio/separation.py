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

Demucs's ``.th`` files are pickles, and its own loader unpickles them with ``weights_only=False`` (a file can run
any code). Here they are read with ``torch.load(weights_only=True)``, allowlisting only Demucs's model classes and
``Fraction``, and the class named by a ``.safetensors`` file's metadata must be one of those too.

    model = load_demucs()                                  # htdemucs from models/demucs
    stems = separate(audio, sr, model, stems=("bass",))    # {"bass": array shaped like audio}
    vocals, sr = isolate_stem(audio, sr, "vocals")         # one stem, default model loaded once
"""

from __future__ import annotations

import os
import pickle
import random
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torchaudio.functional as AF

from .audio import prepare_audio
from .errors import ConfigMismatch, ModelNotFound
from .weights import unpickle_refusal

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

    if single is not None:
        return _load_one(single)
    return BagOfModels([_load_one(f) for f in files.values()], bag.get("weights"), bag.get("segment"))


# The model classes a Demucs package may name; nothing else in a package is code. A ``.th`` package (what
# ``demucs.states.serialize_model`` writes) is ``{"klass": <one of these>, "args": [...], "kwargs": {...},
# "state": {name: tensor}, "training_args": {...}}``; HTDemucs's ``segment`` argument is a ``fractions.Fraction``.
MODEL_CLASSES = ("demucs.htdemucs.HTDemucs", "demucs.hdemucs.HDemucs", "demucs.demucs.Demucs")


def _model_classes() -> dict[str, type]:
    import importlib

    out = {}
    for dotted in MODEL_CLASSES:
        module, name = dotted.rsplit(".", 1)
        out[dotted] = getattr(importlib.import_module(module), name)
    return out


def _refused(path: Path, why: str) -> ModelNotFound:
    return ModelNotFound(f"refused Demucs weights {path}: {why}; a Demucs model file may hold only weights, plain data "
                         f"and one of {', '.join(MODEL_CLASSES)}, and code in it is never run.")


def _load_one(path: Path):
    """One Demucs model from ``<sig>[-<sha256 prefix>].th`` or ``<sig>.safetensors``, without running code from it.

    ``.th`` packages are pickles: they are read with ``torch.load(weights_only=True)``, which builds only tensors
    and plain containers, plus the allowlisted Demucs model classes and ``Fraction``; anything else a pickle would
    import or call is refused before it runs. The checksum in the name is checked first, as Demucs does.
    """
    from demucs.states import load_model

    classes = _model_classes()
    if path.suffix == ".safetensors":
        return _load_safetensors(path, classes)
    if "-" in path.stem:
        from demucs.repo import check_checksum

        check_checksum(path, path.stem.rsplit("-", 1)[1])
    try:
        with torch.serialization.safe_globals([*classes.values(), Fraction]):
            package = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise _refused(path, unpickle_refusal(e)) from None
    if not isinstance(package, dict) or not {"klass", "args", "kwargs", "state"} <= set(package):
        raise ModelNotFound(f"{path} is not a Demucs model package (expected klass, args, kwargs and state).")
    if package["klass"] not in classes.values():
        raise _refused(path, f"it names the class {package['klass']!r}")
    if not isinstance(package["state"], dict) or not isinstance(package["kwargs"], dict) \
            or not isinstance(package["args"], (list, tuple)):
        raise ModelNotFound(f"{path} is not a Demucs model package (malformed args, kwargs or state).")
    return load_model(package)


def _load_safetensors(path: Path, classes: dict[str, type]):
    """The HuggingFace hub's format: weights plus JSON metadata naming the class, which must be allowlisted (Demucs's
    own loader imports and calls whatever the metadata names)."""
    import json

    from demucs.hf import load_safetensors_model
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise ModelNotFound(f"{path} is not a valid safetensors file ({' '.join(str(e).split())[:160]}).") from None
    if meta.get("klass") not in classes:
        raise _refused(path, f"its metadata names the class {meta.get('klass')!r}")
    try:
        parsed = {key: json.loads(meta[key]) for key in ("args", "kwargs", "structure") if key in meta}
    except json.JSONDecodeError as e:
        raise ModelNotFound(f"{path}: its metadata is not valid JSON ({e}).") from None
    named = []  # "_class" nodes of a packed (e.g. quantized) state are imported by Demucs too

    def walk(node):
        if isinstance(node, dict):
            if "_class" in node:
                named.append(node["_class"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(parsed.get("structure"))
    if any(c not in classes for c in named):
        raise _refused(path, f"its metadata names the classes {sorted(set(named) - set(classes))}")
    return load_safetensors_model(path)


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
