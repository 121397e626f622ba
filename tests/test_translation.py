"""Music domain translation: learning, the pipeline's contract (duration, rate, channels, long inputs), the CLI."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import ROOT, run_cli
from studio.data import SegmentDataset
from studio.errors import StudioError
from studio.latent import FiLM
from studio.nn import chunked
from studio.train.loop import LoopConfig, Trainer, seed_everything
from studio.translation import Translator, TranslatorConfig, TranslatorModel, save_translator
from studio.translation.train import TranslatorTask, TranslatorTrainConfig
from studio.vocoder import GeneratorConfig, Vocoder

TINY = TranslatorConfig(domains=("piano", "violin"), channels=48, latent=16, dilations=(1, 2, 4), domain_dim=16)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    seed_everything(0)
    model = TranslatorModel(TINY)
    for m in model.modules():  # FiLM starts at identity; give the domains distinct effects as training would
        if isinstance(m, FiLM):
            torch.nn.init.normal_(m.proj.weight, std=0.2)
    save_translator(model, root / "translator")
    Vocoder(GeneratorConfig(channels=32)).save_pretrained(root / "vocoder")
    return root / "translator", root / "vocoder"


def test_tiny_translator_learns_to_reconstruct(rendered, tmp_path):
    seed_everything(0)
    cfg = TranslatorTrainConfig(model=TINY, segment_length=8192, lr=2e-3)
    task = TranslatorTask(cfg, val_root=rendered, val_clips=2, val_seconds=2.0)
    before = task.validate()["mel_l1"]
    data = SegmentDataset(rendered, TINY.audio, cfg.segment_length, "train", domains=list(TINY.domains))
    lc = LoopConfig(max_steps=50, batch_size=4, val_every=0, ckpt_every=0)
    summary = Trainer(task, data, lc, tmp_path / "run", log=lambda *a: None).fit()
    after = summary["val"]["mel_l1"]
    assert after < 0.5 * before, (before, after)
    t = Translator.from_pretrained(tmp_path / "run" / "export", vocoder=Vocoder(GeneratorConfig(channels=32)))
    assert t.domains == ["piano", "violin"]


def test_parallel_segments_are_the_same_window_on_another_instrument(rendered):
    """Parallel renders of one score are sample-aligned: the target shares the source's onsets, not its timbre."""
    from studio.data import read_segment
    from studio.metrics import mel_transform

    data = SegmentDataset(rendered, TINY.audio, 16384, "train", domains=["piano", "violin"], parallel=True)
    m = mel_transform(TINY.audio)
    for i in range(4):
        item = data[i]
        assert item["target_domain"] != item["domain"] and item["target_audio"].shape == item["audio"].shape
        onsets = lambda a: torch.relu(torch.diff(m(a), dim=-1)).mean(-2).flatten()  # spectral flux per frame
        same = torch.corrcoef(torch.stack([onsets(item["audio"]), onsets(item["target_audio"])]))[0, 1]
        shifted = torch.corrcoef(torch.stack([onsets(item["audio"]), onsets(item["target_audio"]).roll(8)]))[0, 1]
        assert same > shifted, (same, shifted)


def test_parallel_supervision_trains_translation_toward_the_real_target(rendered, tmp_path):
    """--parallel: decoding piano latents as violin approaches the real violin rendering of the same window."""
    from studio.metrics import mel_transform

    m = mel_transform(TINY.audio)
    data = SegmentDataset(rendered, TINY.audio, 8192, "train", domains=list(TINY.domains), parallel=True)
    probe = [data[10_000 + i] for i in range(6)]
    errors = {}
    for parallel in (0.0, 1.0):
        seed_everything(0)
        task = TranslatorTask(TranslatorTrainConfig(model=TINY, segment_length=8192, lr=2e-3, parallel=parallel))
        Trainer(task, data, LoopConfig(max_steps=150, batch_size=4, val_every=0, ckpt_every=0), tmp_path / str(parallel),
                log=lambda *a: None).fit()
        model = task.nets["model"].eval()
        with torch.no_grad():
            err = []
            for item in probe:
                src, tgt = m(item["audio"]), m(item["target_audio"])
                out = model.decode(model.encode(src), torch.tensor([item["target_domain"]]))
                err.append((out - tgt[..., : out.shape[-1]]).abs().mean().item())
        errors[parallel] = float(np.mean(err))
    assert errors[1.0] < 0.9 * errors[0.0], errors


def test_chunked_translation_is_seamless(tiny_models):
    model = Translator.from_pretrained(tiny_models[0], vocoder=tiny_models[1])
    mel = torch.randn(1, 80, 3000) - 3
    w = model.domain_weights("violin")
    one_shot = model.model.decode(model.model.encode(mel), w)
    with torch.no_grad():
        chunked_out = model.translate_mel(mel, w)
    torch.testing.assert_close(chunked_out, one_shot, atol=1e-4, rtol=1e-4)
    voc = model.vocoder
    with torch.no_grad():
        a = voc(mel[..., :700])
        b = chunked(voc, mel[..., :700], 200, 64, scale=256)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_stereo_44k_in_gives_input_duration_out(tiny_models, piano_clip):
    t = Translator.from_pretrained(tiny_models[0], vocoder=tiny_models[1])
    x, sr = sf.read(str(piano_clip), dtype="float32")
    import torchaudio.functional as AF
    x44 = AF.resample(torch.from_numpy(x), sr, 44100).numpy()
    stereo = np.stack([x44, 0.5 * x44])  # [2, T] at 44.1 kHz
    y, out_sr = t(stereo, 44100, target="violin")
    assert out_sr == 22050 and y.ndim == 1 and np.isfinite(y).all()
    assert abs(len(y) / out_sr - stereo.shape[1] / 44100) < 1e-3
    with pytest.raises(StudioError, match="unknown target instrument 'kazoo'; available: piano, violin"):
        t(stereo, 44100, target="kazoo")


def test_blend_endpoints_equal_plain_translation(tiny_models):
    t = Translator.from_pretrained(tiny_models[0], vocoder=tiny_models[1])
    mel = torch.randn(1, 80, 64) - 3
    plain_v = t.translate_mel(mel, t.domain_weights("violin"))
    plain_p = t.translate_mel(mel, t.domain_weights("piano"))
    torch.testing.assert_close(t.translate_mel(mel, t.domain_weights("violin", "piano", 0.0)), plain_v)
    torch.testing.assert_close(t.translate_mel(mel, t.domain_weights("violin", "piano", 1.0)), plain_p)
    mid = t.translate_mel(mel, t.domain_weights("violin", "piano", 0.5))
    assert not torch.allclose(mid, plain_v) and not torch.allclose(mid, plain_p)


def test_translate_cli_writes_input_duration(tiny_models, piano_clip, tmp_path):
    out = tmp_path / "violin.wav"
    run_cli("translate", piano_clip, "--to", "violin", "-o", out, "--model", tiny_models[0], "--vocoder", tiny_models[1])
    info, src = sf.info(str(out)), sf.info(str(piano_clip))
    assert info.samplerate == 22050 and info.frames == src.frames
    r = run_cli("translate", piano_clip, "--to", "tuba", "-o", tmp_path / "x.wav", "--model", tiny_models[0],
                "--vocoder", tiny_models[1], check=False)
    assert r.returncode == 2 and "available: piano, violin" in r.stderr and "Traceback" not in r.stderr


def test_ten_minute_input_runs_in_bounded_memory(tiny_models, tmp_path):
    """A 10-minute stereo 44.1 kHz file goes through in chunks: peak RSS stays far below the unchunked need."""
    sr = 44100
    t = np.arange(sr * 600, dtype=np.float32) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
    path = tmp_path / "long.wav"
    sf.write(path, np.stack([x, x], 1), sr, subtype="PCM_16")
    del t, x
    code = f"""
import resource, sys
from studio.translation import Translator
from studio.audio import save_audio
t = Translator.from_pretrained({str(tiny_models[0])!r}, vocoder={str(tiny_models[1])!r})
y, sr = t({str(path)!r}, target="violin")
save_audio({str(tmp_path / 'out.wav')!r}, y, sr)
print(len(y) / sr, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    seconds, peak_mb = r.stdout.split()
    assert abs(float(seconds) - 600) < 0.05
    assert int(peak_mb) < 2500, f"peak RSS {peak_mb} MB"
