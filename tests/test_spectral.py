"""The spectral generator: phase-vocoder synthesis (running phase, no frame-rate comb), chunk/stream/fast paths
without seams, save/load, export, and a tiny model that learns a real clip."""

import math

import numpy as np
import pytest
import torch

from conftest import run_cli
from studio.audio import MelSpectrogram, load_audio
from studio.config import from_dict, to_dict
from studio.metrics import frame_locked, mel_l1
from studio.vocoder import Vocoder
from studio.vocoder.spectral import SpectralConfig, SpectralGenerator, stft_targets
from studio.vocoder.streaming import StreamingVocoder, chunks_of, context_frames

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = SpectralConfig(channels=32, blocks=2)


def _oracle(g: SpectralGenerator, x: np.ndarray) -> torch.Tensor:
    """The synthesis fed with the clip's own STFT magnitudes and phase advances (what training regresses)."""
    mag, dev = stft_targets(MelSpectrogram(g.config.audio).stft(torch.from_numpy(x)[None]))
    return g.synthesize(torch.log(mag.clamp(min=1e-5)), dev)[0, 0]


def test_synthesis_of_the_true_stft_gives_the_clip_back(piano_clip):
    g = SpectralGenerator(SMALL).eval()
    x, _ = load_audio(piano_clip, 22050)
    x = x[: 3 * 22050 // 256 * 256]
    y = _oracle(g, x).numpy()
    assert len(y) == len(x)
    # phases rebuilt from the advances alone (no absolute phase): the magnitudes come back
    assert mel_l1(x, y) < 0.12
    assert frame_locked(torch.from_numpy(y), 256).item() < 0.05


def test_a_held_note_is_one_running_sinusoid_not_a_frame_rate_comb():
    g = SpectralGenerator(SMALL).eval()
    t = np.arange(40 * 256) / 22050
    x = (0.5 * np.sin(2 * math.pi * 220.0 * t)).astype(np.float32)
    y = _oracle(g, x).double().numpy()
    spec = np.abs(np.fft.rfft(y[2048:-2048] * np.hanning(len(y) - 4096)))
    peak_hz = np.argmax(spec) * 22050 / (len(y) - 4096)
    assert abs(peak_hz - 220.0) < 3.0
    # one sinusoid of constant amplitude and phase (every bin starts at phase 0, not the input's): a least-squares
    # fit of a sin + b cos at 220 Hz leaves under 1% of the energy
    core = slice(1024, -1024)
    basis = np.stack([np.sin(2 * math.pi * 220.0 * t), np.cos(2 * math.pi * 220.0 * t)], 1)[core]
    coef, *_ = np.linalg.lstsq(basis, y[core], rcond=None)
    assert np.sum((y[core] - basis @ coef) ** 2) < 0.01 * np.sum(y[core] ** 2)
    assert frame_locked(torch.from_numpy(y).float(), 256).item() < 0.05


def test_config_round_trips_and_context_covers_the_receptive_field():
    assert from_dict(SpectralConfig, to_dict(SMALL)) == SMALL
    torch.manual_seed(0)
    g = SpectralGenerator(SMALL).train()
    mel = (torch.randn(1, 80, 60) - 3).requires_grad_(True)
    f = 30
    # the frame-rate predictions see a bounded window; the synthesis adds 2 frames each side (the running phase is
    # the state that windows carry, not context)
    logmag, dev = g.predict(mel)
    (logmag[..., f].sum() + dev[..., f].sum()).backward()
    hit = (mel.grad[0].abs().sum(0) > 0).nonzero().flatten()
    left, right = context_frames(g)
    assert (f - int(hit.min()), int(hit.max()) - f) == (left - 2, right - 2)
    assert right == SMALL.lookahead + 2  # 46 ms of look-ahead at the default lookahead 2


@pytest.fixture(scope="module")
def spectral_vocoder(tmp_path_factory):
    """A small spectral vocoder with mel-dependent output (random head), saved and reloaded."""
    torch.manual_seed(0)
    v = Vocoder(SMALL)
    with torch.no_grad():
        v.generator.head.weight.normal_(0, 0.3)
    folder = v.save_pretrained(tmp_path_factory.mktemp("spectral") / "voc")
    return Vocoder.from_pretrained(folder)


@pytest.fixture(scope="module")
def mel(spectral_vocoder, piano_clip):
    x, _ = load_audio(piano_clip, 22050)
    with torch.inference_mode():
        return spectral_vocoder.mel(torch.from_numpy(x[: 2 * 22050]))


def test_saved_model_names_its_architecture(spectral_vocoder):
    assert spectral_vocoder.architecture == "spectral"
    assert spectral_vocoder.generator_config == SMALL


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunks_and_streams_equal_the_one_shot_output(spectral_vocoder, mel, chunk):
    with torch.inference_mode():
        y = spectral_vocoder(mel)
        long = spectral_vocoder.vocode_long(mel, chunk_frames=chunk)
        streamed = torch.cat(list(StreamingVocoder(spectral_vocoder, chunk).stream(chunks_of(mel, 9))), -1)
    assert long.shape == streamed.shape == y.shape
    assert (long - y).abs().max() < 1e-4 and (streamed - y).abs().max() < 1e-4


def test_a_window_without_its_running_phase_is_not_the_same(spectral_vocoder, mel):
    """The state is needed: a window vocoded as if it started the signal has other phases."""
    hop = 256
    with torch.inference_mode():
        y = spectral_vocoder(mel)
        alone = spectral_vocoder(mel[..., 40:])
    assert (alone[..., 10 * hop: 20 * hop] - y[..., 50 * hop: 60 * hop]).abs().max() > 1e-2


def test_bf16_autocast_leaves_the_synthesis_in_float32(spectral_vocoder, mel):
    g = spectral_vocoder.generator
    with torch.inference_mode():
        logmag, dev = g.predict(mel)
        y32 = g.synthesize(logmag, dev)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y16 = g.synthesize(logmag, dev)
    assert y16.dtype == torch.float32 and torch.equal(y16, y32)


def test_the_fast_path_runs_the_spectral_generator(spectral_vocoder, mel):
    with torch.inference_mode():
        y = spectral_vocoder(mel)
        fast = spectral_vocoder.fast("fp32", chunk_frames=48)
        assert (fast(mel) - y).abs().max() < 1e-4
        streamed = torch.cat(list(spectral_vocoder.stream(chunks_of(mel, 9), model=fast)), -1)
    assert (streamed - y).abs().max() < 1e-4


def test_tiny_spectral_vocoder_learns_a_real_clip(tmp_path, piano_clip):
    """Frame-rate regression on one real clip: the resynthesis gets much closer to it (fp32, seeded)."""
    from test_vocoder import _one_clip_dataset

    from studio.data import SegmentDataset
    from studio.train.loop import LoopConfig, Trainer, seed_everything
    from studio.vocoder.train import SpectralTrainConfig, SpectralVocoderTask

    root = _one_clip_dataset(tmp_path / "d", piano_clip)
    cfg = SpectralTrainConfig(generator=SpectralConfig(channels=64, blocks=2), segment_length=8192, lr=2e-3,
                              warmup_steps=10)
    seed_everything(0)
    task = SpectralVocoderTask(cfg, val_root=root, val_clips=1, val_seconds=2.0)
    data = SegmentDataset(root, cfg.generator.audio, cfg.segment_length, "train")
    lc = LoopConfig(max_steps=120, batch_size=4, val_every=0, ckpt_every=0, log_every=10)
    tr = Trainer(task, data, lc, tmp_path / "run", log=lambda *a: None)
    before = task.validate()["mel_l1"]
    after = tr.fit()["val"]["mel_l1"]
    assert after < 0.6 * before, (before, after)
    v = Vocoder.from_pretrained(tmp_path / "run" / "export")
    clip = task.val[0]["audio"]
    y, _ = v.resynthesize(clip, 22050)
    assert abs(mel_l1(clip, y, aligned=True) - after) < 0.02


def test_train_cli_spectral_exports_a_loadable_vocoder(tmp_path, rendered):
    run_cli("train", "vocoder", "--arch", "spectral", "--data", rendered, "--out", tmp_path / "run",
            "--max-steps", "3", "--batch", "2", "--segment-length", "4096", "--channels", "32",
            "--val-every", "0", "--ckpt-every", "0")
    v = Vocoder.from_pretrained(tmp_path / "run" / "export")
    assert v.architecture == "spectral" and v.generator_config.channels == 32
    r = run_cli("train", "vocoder", "--arch", "spectral", "--data", rendered, "--out", tmp_path / "run2",
                "--init", tmp_path / "nope", "--max-steps", "1", check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_gpu_script_packs_and_trains_without_the_audio_stack(tmp_path, rendered):
    """scripts/gpu_train.py at its smoke size: pack here, then train in a process where soundfile, torchaudio and
    librosa cannot be imported (a stock PyTorch image has none of them)."""
    import subprocess
    import sys

    from conftest import ROOT

    torch.manual_seed(0)
    init = Vocoder(SMALL).save_pretrained(tmp_path / "init")
    pack = tmp_path / "pack.npz"
    r = subprocess.run([sys.executable, "scripts/gpu_train.py", "pack", "--data", str(rendered), "--out", str(pack),
                        "--minutes", "0.1", "--segment-length", "8192"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    blocked = ("import runpy, sys\nfor m in ('soundfile', 'torchaudio', 'librosa'): sys.modules[m] = None\n"
               "sys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-c", blocked, "scripts/gpu_train.py", "train", "--pack", str(pack),
                        "--out", str(tmp_path / "run"), "--init", str(init), "--smoke"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert '"steps_run": 5' in r.stdout and "steps_per_second" in r.stdout
    for folder in ("export", "export-fp16"):
        v = Vocoder.from_pretrained(tmp_path / "run" / folder)
        assert v.architecture == "spectral"
    assert (tmp_path / "run" / "checkpoint.safetensors").is_file()


def test_onnx_export_matches_pytorch_one_shot_and_in_windows(tmp_path, spectral_vocoder, mel):
    pytest.importorskip("onnxruntime")
    r = run_cli("export", "--model", spectral_vocoder_folder(spectral_vocoder, tmp_path), "-o", tmp_path / "v.onnx")
    assert "wrote" in r.stdout
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "v.onnx")).metadata_props}
    assert meta["architecture"] == "spectral" and meta["min_frames"] == "1"
    with torch.inference_mode():
        y = spectral_vocoder(mel)
        fast = spectral_vocoder.fast("onnx", chunk_frames=40)  # windows carry the running phase through the graph
        assert (fast(mel) - y).abs().max() < 1e-3
        assert (spectral_vocoder.fast("onnx", chunk_frames=0)(mel) - y).abs().max() < 1e-3


def spectral_vocoder_folder(vocoder, tmp_path):
    return vocoder.save_pretrained(tmp_path / "model")


def test_band_limiting_augmentation_removes_the_band_above_its_cutoff_only_when_drawn():
    from studio.vocoder.train import band_limit

    torch.manual_seed(0)
    x = torch.randn(64, 1, 8192)
    y = band_limit(x, 0.5, (4000.0, 6000.0), 22050)
    spec = torch.fft.rfft(y, dim=-1).abs()
    f = torch.fft.rfftfreq(8192, 1 / 22050)
    above = spec[..., f > 6001].amax(-1).flatten()
    limited = above < 1e-3
    assert 16 < limited.sum() < 48  # about half of the segments
    assert (y[~limited] - x[~limited]).abs().max() < 1e-4  # the others pass unchanged (up to FFT rounding)
    assert band_limit(x, 0.0, (4000.0, 6000.0), 22050) is x
