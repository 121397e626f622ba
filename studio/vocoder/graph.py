"""The generator as a graph for use outside PyTorch eager: a copy with weight norm folded (``folded_copy``), its
ONNX bytes (``onnx_bytes``) and its TorchScript trace (``torchscript_module``).

The paper generator's graph maps ``mel [batch, n_mels, frames]`` to ``audio [batch, 1, frames * hop]`` with dynamic
batch and frames axes; it needs at least 4 frames (the input conv's reflection padding), as the PyTorch generator
pads shorter inputs itself. The spectral generator's graph (``SpectralGraph``) also takes and returns its running
phase, for windowed use; 1 frame is enough. Beside the vocoder because the fast paths (``fast``) run these graphs
too; ``studio.export`` writes them to files with the audio settings.
"""

from __future__ import annotations

import copy
import io
import json
import os
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..config import to_dict
from ..errors import StudioError
from .generator import Generator
from .spectral import SpectralGenerator

OPSET = 17


class ExportError(StudioError):
    """An export that cannot be done as asked (format, destination)."""


def folded_copy(generator: Generator) -> Generator:
    """A new eval-mode generator without weight norm, computing the same function as ``generator``."""
    if isinstance(generator, SpectralGenerator):  # no weight norm to fold
        return copy.deepcopy(generator).eval().requires_grad_(False)
    plain = Generator(replace(generator.config, weight_norm=False))
    with torch.no_grad():
        for name, m in plain.named_modules():
            if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
                src = generator.get_submodule(name)
                m.weight.copy_(src.weight.detach())  # the weight-norm parametrisation computes g * v / |v|
                m.bias.copy_(src.bias.detach())
    dev = next(generator.parameters()).device
    return plain.to(dev).eval().requires_grad_(False)


def _example(generator) -> torch.Tensor:
    return torch.zeros(1, generator.config.audio.n_mels, 16, device=next(generator.parameters()).device)


def _spectral(generator) -> bool:
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


def metadata(generator) -> dict[str, str]:
    """What travels with an exported graph: the audio settings and the (folded) config."""
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
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'melgan-studio[export]'.") from None

    buf = io.BytesIO()
    _write_onnx(folded_copy(generator).cpu(), buf)
    return _with_metadata(buf.getvalue(), metadata(generator))


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

    from .. import nn as studio_nn
    from . import generator as paper, spectral

    h = hashlib.sha256(f"{OPSET} {torch.__version__} {type(generator).__name__}".encode())
    h.update(json.dumps(metadata(generator), sort_keys=True).encode())
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
    g = folded_copy(generator).cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if _spectral(g):
            return torch.jit.trace(SpectralGraph(g).eval(), SpectralGraph.example(g), check_trace=False)
        return torch.jit.trace(g.net, _example(g), check_trace=False)
