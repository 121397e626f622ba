"""Exported generators (ONNX, TorchScript) compute what the PyTorch vocoder computes, for any number of frames."""

import json

import numpy as np
import pytest
import torch

from conftest import run_cli
from studio.audio import load_audio
from studio.export import ExportError, export
from studio.vocoder import Vocoder


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A paper-size vocoder saved as a model folder (weight norm kept, as training exports it)."""
    torch.manual_seed(0)
    return Vocoder().save_pretrained(tmp_path_factory.mktemp("models") / "paper-vocoder", card="# test\n")


@pytest.fixture(scope="module")
def mels_and_refs(model_dir, piano_clip):
    v = Vocoder.from_pretrained(model_dir)
    x, _ = load_audio(piano_clip, 22050)
    with torch.inference_mode():
        mel = v.mel(torch.from_numpy(x[: 2 * 22050]))  # a real mel, 172 frames
        mels = [mel[..., :37], torch.cat([mel, mel.flip(-1)])[..., :172]]  # two frame counts (and batch sizes)
        return [(m, v(m)) for m in mels]


def test_onnx_export_from_the_cli_matches_pytorch(tmp_path, model_dir, mels_and_refs):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "sub" / "vocoder.onnx"
    r = run_cli("export", "--model", model_dir, "--format", "onnx", "-o", out, env={"OMP_NUM_THREADS": "1"})
    assert "wrote" in r.stdout and out.is_file()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["sample_rate"] == "22050" and meta["hop_length"] == "256"
    for mel, ref in mels_and_refs:
        y = session.run(None, {"mel": mel.numpy()})[0]
        assert y.shape == tuple(ref.shape)
        assert np.abs(y - ref.numpy()).max() < 1e-3


@pytest.mark.filterwarnings("ignore:`torch.jit")
def test_torchscript_export_matches_pytorch(tmp_path, model_dir, mels_and_refs):
    v = Vocoder.from_pretrained(model_dir, fold=False)  # export folds its own copy
    path = export(v, tmp_path / "vocoder.pt")  # the format follows the suffix
    assert any("parametrizations" in k for k in v.generator.state_dict())
    files = {"config.json": ""}
    ts = torch.jit.load(str(path), _extra_files=files)
    assert json.loads(files["config.json"])["hop_length"] == "256"
    for mel, ref in mels_and_refs:
        with torch.inference_mode():
            y = ts(mel)
        assert y.shape == ref.shape
        assert (y - ref).abs().max() < 1e-3


def test_export_errors_are_one_line(tmp_path, model_dir):
    with pytest.raises(ExportError, match="accepted: onnx, torchscript"):
        export(Vocoder.from_pretrained(model_dir), tmp_path / "vocoder.bin")
    r = run_cli("export", "--model", tmp_path / "nowhere", "-o", tmp_path / "x.onnx", check=False)
    assert r.returncode == 2 and r.stderr.startswith("error: no model") and "Traceback" not in r.stderr
    assert not (tmp_path / "x.onnx").exists()
    from studio.vocoder import GeneratorConfig
    from studio.vocoder.harmonic import HarmonicConfig

    with pytest.raises(ExportError, match="oscillator bank"):  # its phase needs absolute time: not in the graphs
        export(Vocoder(GeneratorConfig(channels=32), HarmonicConfig(channels=16)), tmp_path / "b.onnx")
    assert not (tmp_path / "b.onnx").exists()


def test_onnx_export_of_the_shipped_default_round_trips(tmp_path, piano_clip):
    """``studio export`` with no --model writes the shipped vocoder (the spectral graph with its running phase as
    inputs); ONNX Runtime on that file gives the PyTorch vocoder's audio, and its phase output is the state."""
    ort = pytest.importorskip("onnxruntime")
    from studio import registry

    out = tmp_path / "default.onnx"
    r = run_cli("export", "-o", out, env={"OMP_NUM_THREADS": "1"})
    assert "wrote" in r.stdout and registry.DEFAULTS["vocoder"] in r.stdout
    v = Vocoder.from_pretrained(registry.DEFAULTS["vocoder"])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["architecture"] == v.architecture == "spectral"
    x, _ = load_audio(piano_clip, 22050)
    with torch.inference_mode():
        mel = v.mel(torch.from_numpy(x[: 3 * 22050]))
        ref = v(mel)
        K = v.generator_config.bins
        i = lambda n: np.array([n], np.int64)
        y, phase = session.run(None, {"mel": mel.numpy(), "phase": np.zeros((1, K), np.float32), "phase_at": i(0),
                                      "start_frame": i(0), "carry_at": i(100)})
        # the state: the running phase at frame 100, as the PyTorch window protocol returns it
        _, (f, D) = v.generator.chunk(mel, 0, 0, 102)
    assert y.shape == tuple(ref.shape) and np.abs(y - ref.numpy()).max() < 1e-4
    assert f == 100 and np.abs(np.angle(np.exp(1j * (phase - D.numpy())))).max() < 1e-3  # phases mod 2 pi
