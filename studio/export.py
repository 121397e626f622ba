"""Export the vocoder's generator (weight norm folded) for use outside Python / PyTorch eager.

``export(vocoder, path, format="onnx" | "torchscript")``. The paper generator's graph maps ``mel [batch, n_mels,
frames]`` to ``audio [batch, 1, frames * hop]`` with dynamic batch and frames axes; it needs at least 4 frames (the
input conv's reflection padding), as the PyTorch generator pads shorter inputs itself. The spectral generator's
graph (``SpectralGraph``) also takes and returns its running phase, for windowed use; 1 frame is enough. The audio settings travel with
the file: ONNX metadata properties, or ``config.json`` in the TorchScript archive's extra files.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import replace
from pathlib import Path

import torch

from .errors import StudioError

FORMATS = ("onnx", "torchscript")
SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}
OPSET = 17


class ExportError(StudioError):
    """An export that cannot be done as asked (format, destination)."""


def _example(generator) -> torch.Tensor:
    return torch.zeros(1, generator.config.audio.n_mels, 16, device=next(generator.parameters()).device)


def _spectral(generator) -> bool:
    from .vocoder.spectral import SpectralGenerator

    return isinstance(generator, SpectralGenerator)


class SpectralGraph(torch.nn.Module):
    """The spectral generator as one graph with its window state as inputs and outputs (``SpectralGenerator.chunk``):
    ``(mel, phase [B, K], phase_at, start_frame, carry_at) -> (audio, phase at carry_at)``; the frame indices are
    one-element int64 tensors. A whole signal: phase 0, phase_at 0, start_frame 0 (carry_at: any frame)."""

    def __init__(self, generator):
        super().__init__()
        self.generator = generator

    def forward(self, mel, phase, phase_at, start_frame, carry_at):
        logmag, dev = self.generator.predict(mel)
        return self.generator.synthesize(logmag, dev, start_frame, phase, phase_at, carry_at)

    @staticmethod
    def example(generator):
        K = generator.config.bins
        dev = next(generator.parameters()).device
        i = lambda v: torch.tensor([v], dtype=torch.int64, device=dev)
        return (_example(generator), torch.zeros(1, K, device=dev), i(0), i(0), i(12))


def _metadata(generator) -> dict[str, str]:
    from .config import to_dict

    a = generator.config.audio
    spectral = _spectral(generator)
    config = generator.config if spectral else replace(generator.config, weight_norm=False)  # folded
    return {"studio_kind": "vocoder", "sample_rate": str(a.sample_rate), "hop_length": str(a.hop_length),
            "n_mels": str(a.n_mels), "min_frames": "1" if spectral else "4",
            "architecture": "spectral" if spectral else "melgan", "config": json.dumps(to_dict(config))}


def _write_onnx(generator, f) -> None:
    if _spectral(generator):
        module, args = SpectralGraph(generator).eval(), SpectralGraph.example(generator)
        names, outputs = ["mel", "phase", "phase_at", "start_frame", "carry_at"], ["audio", "phase_next"]
        axes = {"mel": {0: "batch", 2: "frames"}, "phase": {0: "batch"}, "audio": {0: "batch", 2: "samples"},
                "phase_next": {0: "batch"}}
    else:
        module, args, names, outputs = generator.net, (_example(generator),), ["mel"], ["audio"]
        axes = {"mel": {0: "batch", 2: "frames"}, "audio": {0: "batch", 2: "samples"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and constant-folding notices
        torch.onnx.export(module, args, f, input_names=names, output_names=outputs, dynamic_axes=axes,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)


def onnx_bytes(generator) -> bytes:
    """The folded ``generator`` as a serialized ONNX model (float32). Needs the ``onnx`` package."""
    from .vocoder.fast import folded_copy

    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'melgan-studio[export]'.") from None

    buf = io.BytesIO()
    _write_onnx(folded_copy(generator).cpu(), buf)
    return _with_metadata(buf.getvalue(), _metadata(generator))


def cache_dir() -> Path:
    """Where exported graphs are cached: ``$STUDIO_CACHE_DIR``, else ``$XDG_CACHE_HOME/melgan-studio``, else
    ``~/.cache/melgan-studio``."""
    if os.environ.get("STUDIO_CACHE_DIR"):
        return Path(os.environ["STUDIO_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "melgan-studio"


def cached_onnx_bytes(generator) -> bytes:
    """``onnx_bytes`` through an on-disk cache: exporting the shipped vocoder takes seconds (4.6 s on a loaded
    2-core machine) against 0.3 s for the ONNX Runtime session, and the fast path (``auto``) builds it at every
    start. The key covers everything the graph depends on: the weights, the config, the opset, the torch
    version and the source of the modules that define the graph. A cache that cannot be written is skipped."""
    import hashlib

    from . import nn as studio_nn
    from .vocoder import generator as paper, spectral

    h = hashlib.sha256(f"{OPSET} {torch.__version__} {type(generator).__name__}".encode())
    h.update(json.dumps(_metadata(generator), sort_keys=True).encode())
    for module in (studio_nn, paper, spectral):
        h.update(Path(module.__file__).read_bytes())
    h.update(Path(__file__).read_bytes())
    for k, v in sorted(generator.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    path = cache_dir() / "onnx" / f"{h.hexdigest()[:32]}.onnx"
    if path.is_file():
        return path.read_bytes()
    data = onnx_bytes(generator)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        pass
    return data


def _with_metadata(model_bytes: bytes, meta: dict[str, str]) -> bytes:
    import onnx

    m = onnx.load_from_string(model_bytes)
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    return m.SerializeToString()


def torchscript_module(generator) -> torch.jit.ScriptModule:
    """The folded ``generator`` traced to TorchScript (frames and batch stay dynamic: the graph has no shapes)."""
    from .vocoder.fast import folded_copy

    g = folded_copy(generator).cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if _spectral(g):
            return torch.jit.trace(SpectralGraph(g).eval(), SpectralGraph.example(g), check_trace=False)
        return torch.jit.trace(g.net, _example(g), check_trace=False)


def export(vocoder, path: str | os.PathLike, format: str | None = None) -> Path:
    """Write ``vocoder``'s folded generator to ``path`` as ONNX or TorchScript (``format`` defaults from the
    suffix: .onnx, or .pt/.ts). The vocoder is unchanged. Written atomically; returns the path."""
    path = Path(path)
    format = format or SUFFIXES.get(path.suffix.lower())
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r} for '{path.name}'; accepted: {', '.join(FORMATS)} "
                          f"(or a .onnx / .pt / .ts file name).")
    generator = getattr(vocoder, "generator", vocoder)
    if getattr(generator, "harmonic", None) is not None:  # the graphs hold ``generator.net`` only
        raise ExportError("this vocoder has an oscillator bank (studio.vocoder.harmonic), which export does not "
                          "support yet: its phase runs on absolute time; use the PyTorch API (Vocoder).")
    if path.is_dir():
        raise ExportError(f"{path} is a directory; give a file name, e.g. {path / 'vocoder.onnx'}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        if format == "onnx":
            tmp.write_bytes(onnx_bytes(generator))
        else:
            files = {"config.json": json.dumps(_metadata(generator))}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated, still loadable
                torch.jit.save(torchscript_module(generator), str(tmp), _extra_files=files)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ----------------------------------------------------------------------------------------------------------- CLI

def cmd_export(a) -> int:
    from .vocoder import Vocoder

    vocoder = Vocoder.from_pretrained(a.model)
    fmt = a.format or SUFFIXES.get(Path(a.output).suffix.lower()) or "onnx"
    out = export(vocoder, a.output, fmt)
    io = (f"(mel [batch, {vocoder.config.n_mels}, frames], phase, phase_at, start_frame, carry_at) -> (audio [batch, 1, "
          f"frames * {vocoder.config.hop_length}], phase_next)" if vocoder.architecture == "spectral" else
          f"mel [batch, {vocoder.config.n_mels}, frames >= 4] -> audio [batch, 1, frames * {vocoder.config.hop_length}]")
    print(f"wrote {out} ({fmt}, {out.stat().st_size / 1e6:.1f} MB) from {vocoder.name}: {io}")
    return 0


def add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="export the vocoder's generator to ONNX or TorchScript")
    p.add_argument("--model", default=None, help="registry name or model folder (default: the shipped vocoder)")
    p.add_argument("--format", choices=FORMATS, default=None, help="default: from the output suffix, else onnx")
    p.add_argument("-o", "--output", required=True, help="output file (.onnx, .pt)")
    p.set_defaults(func=cmd_export)


__all__ = ["export", "onnx_bytes", "torchscript_module", "FORMATS", "ExportError", "add_export_parser"]
