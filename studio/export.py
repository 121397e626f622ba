"""Export the vocoder's generator (weight norm folded) for use outside Python / PyTorch eager.

``export(vocoder, path, format="onnx" | "torchscript")`` writes the graphs of ``studio.vocoder.graph`` (what they
take and return is described there) to a file. The audio settings travel with the file: ONNX metadata properties,
or ``config.json`` in the TorchScript archive's extra files.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from .vocoder.graph import ExportError, metadata, onnx_bytes, torchscript_module

FORMATS = ("onnx", "torchscript")
SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}


def export(vocoder, path: str | os.PathLike, format: str | None = None) -> Path:
    """Write ``vocoder``'s folded generator to ``path`` as ONNX or TorchScript (``format`` defaults from the
    suffix: .onnx, or .pt/.ts). The vocoder is unchanged. Written atomically; returns the path."""
    path = Path(path)
    format = format or SUFFIXES.get(path.suffix.lower())
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r} for '{path.name}'; accepted: {', '.join(FORMATS)} "
                          f"(or a .onnx / .pt / .ts file name).")
    generator = getattr(vocoder, "generator", vocoder)
    if getattr(vocoder, "harmonic", None) is not None:  # the graphs hold the generator only
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
            files = {"config.json": json.dumps(metadata(generator))}
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
