import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import ROOT, run_cli
from studio.audio import AudioConfig, load_audio
from studio.data import Entry, write_manifest
from studio.errors import ConfigMismatch
from studio.metrics import mel_l1
from studio.weights import load_tensors
from studio.train.loop import LoopConfig, Trainer, seed_everything
from studio.vocoder import DiscriminatorConfig, Generator, GeneratorConfig, GriffinLim, MultiScaleDiscriminator, Vocoder
from studio.vocoder.train import VocoderTask, VocoderTrainConfig

TINY = VocoderTrainConfig(
    generator=GeneratorConfig(channels=64), discriminator=DiscriminatorConfig(channels=4, max_channels=64),
    segment_length=4096, lambda_stft=1.0, lr=1e-3,
)


def test_paper_generator_parameter_count_and_output_length():
    g = Generator()
    assert sum(p.numel() for p in g.parameters()) == 4_266_050
    with torch.no_grad():
        for frames in (1, 7, 32):
            y = g(torch.randn(2, 80, frames))
            assert y.shape == (2, 1, frames * 256)
            assert y.abs().max() <= 1.0


def test_discriminator_scores_windows_at_three_scales():
    d = MultiScaleDiscriminator()
    outs = d(torch.randn(2, 1, 8192))
    assert len(outs) == 3
    assert [o[-1].shape for o in outs] == [(2, 1, 32), (2, 1, 16), (2, 1, 8)]
    assert [f.shape[1] for f in outs[0]] == [16, 64, 256, 1024, 1024, 1024, 1]


@pytest.mark.parametrize("length", [8192, 3001])
def test_space_to_depth_discriminator_equals_the_strided_one(length):
    """The training step's stride-1 rewrite of D's strided convs: same features and same weight gradients."""
    torch.manual_seed(0)
    d = MultiScaleDiscriminator()
    x = torch.randn(2, 1, length)
    runs = []
    for on in (False, True):
        d.space_to_depth = on
        d.zero_grad()
        feats = [f for scale in d(x) for f in scale]
        sum(f.square().mean() for f in feats).backward()
        runs.append((feats, [p.grad.clone() for p in d.parameters()]))
    (fa, ga), (fb, gb) = runs
    assert [f.shape for f in fa] == [f.shape for f in fb]
    for a, b in zip(fa + ga, fb + gb):
        assert (a - b).abs().max() <= 1e-5 * a.abs().max() + 1e-12


def test_augmentation_mixes_and_adds_noise_without_changing_peaks():
    from studio.vocoder.train import augment

    torch.manual_seed(0)
    t = torch.arange(8192) / 22050
    x = torch.stack([torch.sin(2 * torch.pi * f * t) * 0.5 for f in (220.0, 330.0, 440.0, 550.0)])[:, None]
    plain = augment(x, VocoderTrainConfig(gain=(1.0, 1.0)))
    assert torch.equal(plain, x)
    y = augment(x, VocoderTrainConfig(gain=(1.0, 1.0), mix_prob=1.0, noise_db=(-60.0, -60.0)))
    assert torch.allclose(y.abs().amax(dim=-1), x.abs().amax(dim=-1), rtol=0.01)  # noise at -60 dB barely moves it
    spectrum = torch.fft.rfft(y[0, 0]).abs()
    bin_of = lambda f: round(f * 8192 / 22050)
    assert spectrum[bin_of(550.0)] > 0.1 * spectrum[bin_of(220.0)]  # item 0 got the batch's last item mixed in
    quiet = spectrum[bin_of(3000.0): bin_of(8000.0)].mean()
    assert 0 < quiet < 1e-3 * spectrum[bin_of(220.0)]  # a noise floor far below the notes


def test_frame_locked_measures_the_frame_rate_buzz():
    from studio.metrics import frame_locked

    sr, hop = 22050, 256
    t = torch.arange(4 * sr) / sr
    note = torch.sin(2 * torch.pi * 440.0 * t)  # 440 Hz is not a multiple of sr / hop = 86.1 Hz
    buzz = torch.zeros_like(t)
    buzz[::hop] = 1.0  # a pulse every frame
    noise = torch.randn(len(t), generator=torch.Generator().manual_seed(0))
    assert frame_locked(buzz, hop).item() > 0.99
    assert frame_locked(note, hop).item() < 0.05
    assert abs(frame_locked(noise, hop).item() - 1 / 32) < 0.01  # chance level: one part in the 32 frames averaged
    saw = (torch.arange(len(t)) % hop) / hop - 0.5  # an 86 Hz sawtooth buzz, ~-8 dB re the note
    assert 0.1 < frame_locked(note + saw, hop, ref=note).item() < 0.3  # added to music, it is seen


def test_ratios_must_multiply_to_hop_and_44k_works():
    with pytest.raises(ConfigMismatch, match="must equal the hop"):
        GeneratorConfig(ratios=(8, 8, 2))
    cfg = GeneratorConfig(audio=AudioConfig(sample_rate=44100, n_fft=2048, hop_length=512, win_length=2048),
                          channels=64, ratios=(8, 8, 4, 2))
    assert Generator(cfg)(torch.randn(1, 80, 5)).shape == (1, 1, 5 * 512)


def test_a_flag_combination_that_cannot_train_is_a_one_line_studio_error():
    from dataclasses import replace

    from studio.errors import StudioError

    cfg = replace(TINY, adversarial_from=5, lambda_stft=0.0, lambda_mel=0.0, lambda_sync=0.0)
    with pytest.raises(StudioError, match="--adversarial-from needs --lambda-stft") as e:
        VocoderTask(cfg)
    assert "\n" not in str(e.value)
    with pytest.raises(StudioError, match="--harmonic-steps needs --harmonic"):
        VocoderTask(replace(TINY, harmonic_steps=5))


def test_wrong_mel_shape_is_a_clear_error():
    v = Vocoder(GeneratorConfig(channels=32))
    with pytest.raises(ConfigMismatch, match=r"\[batch, 80, frames\]"):
        v(torch.randn(1, 64, 10))


def _one_clip_dataset(tmp_path, clip, seconds=2.0):
    x, sr = load_audio(clip, 22050)
    start = int(np.argmax(np.convolve(x**2, np.ones(4096), "valid")))  # a loud part, not a rest
    x = x[start: start + int(seconds * sr)]
    (tmp_path / "audio").mkdir(parents=True)
    sf.write(tmp_path / "audio" / "clip.wav", x, sr)
    rows = [Entry("audio/clip.wav", "piano", s, len(x) / sr, sr, "p") for s in ("train", "valid")]
    write_manifest(tmp_path, rows)
    return tmp_path


def _trainer(root, out, steps, cfg=TINY, resume=False, **loop):
    from studio.data import SegmentDataset

    seed_everything(0)
    task = VocoderTask(cfg, val_root=root, val_clips=1, val_seconds=1.0)
    data = SegmentDataset(root, cfg.generator.audio, cfg.segment_length, "train")
    lc = LoopConfig(**{"max_steps": steps, "batch_size": 2, "val_every": 0, "ckpt_every": 0, "log_every": 5} | loop)
    return Trainer(task, data, lc, out, resume=resume, log=lambda *a: None)


def test_tiny_vocoder_learns_a_real_clip(tmp_path, piano_clip):
    root = _one_clip_dataset(tmp_path / "d", piano_clip)
    tr = _trainer(root, tmp_path / "run", 120)
    before = tr.task.validate()["mel_l1"]
    summary = tr.fit()
    after = summary["val"]["mel_l1"]
    assert after < 0.6 * before, (before, after)
    # the exported model is usable through the public API and gives the same distance
    v = Vocoder.from_pretrained(tmp_path / "run" / "export")
    clip = tr.task.val[0]["audio"]
    y, sr = v.resynthesize(clip, 22050)
    assert len(y) == len(clip)
    assert abs(mel_l1(clip, y, aligned=True) - after) < 0.02


def test_freezing_d_in_the_g_step_changes_nothing_but_the_work(piano_clip):
    """The studio's G step skips D's weight gradients; G and D end up exactly as with the textbook step."""
    x, _ = load_audio(piano_clip, 22050)
    batch = {"audio": torch.from_numpy(x[22050: 22050 + 2 * 4096].copy()).reshape(2, 1, 4096)}
    results = []
    for freeze in (False, True):
        seed_everything(0)
        task = VocoderTask(TINY)
        task.run, task.freeze_d = dict(task.nets), freeze
        for m in task.nets.values():
            m.train()
        logs = task.train_step(batch, 10**6)
        results.append((logs, {k: v.clone() for k, v in task.nets["generator"].state_dict().items()},
                        {k: v.clone() for k, v in task.nets["discriminator"].state_dict().items()}))
        assert all(p.requires_grad for p in task.nets["discriminator"].parameters())  # unfrozen afterwards
    (la, ga, da), (lb, gb, db) = results
    assert la == lb
    assert all(torch.equal(ga[k], gb[k]) for k in ga) and all(torch.equal(da[k], db[k]) for k in da)


def test_resume_continues_at_the_exact_step_with_identical_state(tmp_path, piano_clip):
    root = _one_clip_dataset(tmp_path / "d", piano_clip)
    _trainer(root, tmp_path / "straight", 6).fit()
    first = _trainer(root, tmp_path / "resumed", 3).fit()
    assert first["step"] == 3
    second = _trainer(root, tmp_path / "resumed", 6, resume=True)
    assert second.step == 3
    assert second.fit()["steps_run"] == 3
    a, meta_a = load_tensors(tmp_path / "straight" / "checkpoint.safetensors")
    b, meta_b = load_tensors(tmp_path / "resumed" / "checkpoint.safetensors")
    assert json.loads(meta_a["studio"])["step"] == json.loads(meta_b["studio"])["step"] == 6
    assert a.keys() == b.keys()
    assert any(k.startswith("optim/discriminator/") for k in a)  # optimizer state is in the checkpoint
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_ddp_two_cpu_processes_keep_identical_replicas(tmp_path, piano_clip):
    root = _one_clip_dataset(tmp_path / "d", piano_clip)
    cfg = tmp_path / "tiny.json"
    from studio.config import to_dict
    cfg.write_text(json.dumps(to_dict(TINY)))
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "studio",
           "train", "vocoder", "--data", root, "--out", out, "--config", cfg, "--max-steps", "3",
           "--batch-size", "2", "--device", "cpu", "--threads", "1", "--val-every", "0", "--ckpt-every", "0"]
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=600, cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["step"] == 3
    replicas = summary["replicas"]
    assert len(replicas) == 2 and replicas[0] == replicas[1]
    init = Generator(TINY.generator)  # and the replicas did train (they differ from a fresh init)
    from studio.train.loop import param_checksum
    assert replicas[0]["generator"] != param_checksum(init)


def test_vocode_cli_writes_a_wav_of_the_right_length(tmp_path, piano_clip):
    model = Vocoder(GeneratorConfig(channels=32)).save_pretrained(tmp_path / "tiny-vocoder", card="# tiny\n")
    out = tmp_path / "out.wav"
    r = run_cli("vocode", piano_clip, "-o", out, "--model", model)
    assert "wrote" in r.stdout
    info = sf.info(str(out))
    n_in = sf.info(str(piano_clip)).frames  # the renders are at 22.05 kHz already
    assert info.samplerate == 22050 and info.channels == 1
    assert info.frames == (n_in // 256) * 256
    gl = tmp_path / "gl.wav"
    run_cli("vocode", piano_clip, "-o", gl, "--griffin-lim")
    x, _ = load_audio(piano_clip, 22050)
    y, _ = load_audio(gl, 22050)
    assert mel_l1(x, y) < 0.15  # Griffin-Lim from our own mel is close in magnitude
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all" * 100)
    r = run_cli("vocode", bad, "-o", tmp_path / "x.wav", "--model", model, check=False)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert not (tmp_path / "x.wav").exists()


def test_folding_weight_norm_keeps_the_output(tmp_path):
    v = Vocoder(GeneratorConfig(channels=32)).eval()
    mel = torch.randn(1, 80, 20)
    with torch.no_grad():
        ref = v(mel)
    v.save_pretrained(tmp_path / "m")
    folded = Vocoder.from_pretrained(tmp_path / "m")
    assert not any("parametrizations" in k for k in folded.generator.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(folded(mel), ref, atol=1e-5, rtol=1e-4)


def test_griffin_lim_has_the_vocoder_interface(piano_clip):
    gl = GriffinLim(n_iter=8)
    y, sr = gl.resynthesize(piano_clip)
    x, _ = load_audio(piano_clip, sr)
    assert len(y) == len(x) // 256 * 256 and np.isfinite(y).all()


def test_train_init_starts_from_a_vocoder_model(tmp_path, piano_clip):
    """--init: the run's generator starts as the given model (architecture and weights); 0 steps exports it back."""
    root = _one_clip_dataset(tmp_path / "d", piano_clip)
    torch.manual_seed(1)
    Vocoder(GeneratorConfig(channels=32)).save_pretrained(tmp_path / "tiny")
    run_cli("train", "vocoder", "--data", root, "--out", tmp_path / "run", "--init", tmp_path / "tiny",
            "--max-steps", "0", "--ckpt-every", "0", "--val-every", "0", "--batch-size", "1", "--threads", "1",
            env={"OMP_NUM_THREADS": "1"})
    start, _ = load_tensors(tmp_path / "tiny" / "model.safetensors")
    exported, _ = load_tensors(tmp_path / "run" / "export" / "model.safetensors")
    assert start.keys() == exported.keys() and all(torch.equal(start[k], exported[k]) for k in start)
    assert json.loads((tmp_path / "run" / "export" / "config.json").read_text())["config"]["channels"] == 32


def test_eval_vocoder_cli_reports_distances_and_pitch_on_monophonic_folders(tmp_path):
    """`studio eval vocoder --real DIR --real DIR --monophonic solo`: a table per folder with both vocoders'
    distances and chroma agreement; pitch accuracy only on `solo`."""
    sr = 22050
    t = np.arange(2 * sr) / sr
    melody = np.concatenate([sum(np.sin(2 * np.pi * f * k * t[: sr // 2]) / k for k in (1, 2, 3))
                             * np.exp(-2 * t[: sr // 2]) for f in (220.0, 277.2, 329.6, 440.0)])
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    for name, x in [("solo", melody), ("tutti", chord)]:
        (tmp_path / "real" / name).mkdir(parents=True)
        sf.write(tmp_path / "real" / name / "0.wav", (0.3 * x / np.abs(x).max()).astype(np.float32), sr)
    folders = [tmp_path / "real" / "solo", tmp_path / "real" / "tutti"]
    run_cli("eval", "vocoder", "--real", folders[0], "--real", folders[1], "--monophonic", "solo", "--seconds", "2",
            "--json", tmp_path / "eval.json", env={"OMP_NUM_THREADS": "1"})
    results = json.loads((tmp_path / "eval.json").read_text())
    assert list(results) == [str(f) for f in folders]
    for folder in folders:
        rows = {r["vocoder"]: r for r in results[str(folder)]}
        assert set(rows) == {"melgan-music-22k", "griffin-lim-32"}
        for r in rows.values():
            # loose: the shipped vocoder's comb is far off a steady chord (2.8; Griffin-Lim 0.1)
            assert r["clips"] == 1 and 0 < r["mel_l1"] < 4 and r["mr_stft"] > 0 and 0 < r["input_frame_locked"] < 0.2
            assert 0 < r["chroma_agreement"] <= 1 + 1e-6
            assert (r["pitch_accuracy"] is not None) == (folder.name == "solo")  # only the folder marked monophonic
    solo = {r["vocoder"]: r for r in results[str(folders[0])]}
    assert solo["griffin-lim-32"]["pitch_accuracy"] > 0.8  # a clean melody keeps its pitch through Griffin-Lim
    assert solo["griffin-lim-32"]["chroma_agreement"] > 0.8  # and its notes
