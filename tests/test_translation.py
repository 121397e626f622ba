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
from studio.latent import FiLM, crop_to_multiple, pad_to_multiple
from studio.nn import chunked
from studio.train.loop import LoopConfig, Trainer, seed_everything
from studio.translation import Translator, TranslatorConfig, TranslatorModel, save_translator
from studio.translation.train import TranslatorTask, TranslatorTrainConfig
from studio.vocoder import GeneratorConfig, Vocoder

TINY = TranslatorConfig(domains=("piano", "violin"), channels=48, latent=16, dilations=(1, 2, 4), domain_dim=16,
                        mode="universal")


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


@pytest.mark.parametrize("mode,down", [("universal", 2), ("universal", 4), ("notes", 1)])
def test_context_frames_cover_what_the_output_frames_read(mode, down):
    """The layer walk (``studio.nn.input_span``) against autograd: the output frames of one latent step (a window
    on the latent grid keeps whole steps) read no further than the context."""
    torch.manual_seed(0)
    m = TranslatorModel(TranslatorConfig(mode=mode, down=down, channels=16, latent=8, dilations=(1, 2, 4),
                                         domain_dim=8)).eval()
    left, right = m.context_frames()
    assert left % down == 0 and right % down == 0
    x = torch.randn(1, m.encoder.inp.in_channels, 128, requires_grad=True)
    m(x, torch.tensor([0]))[1][..., 64: 64 + down].sum().backward()
    hit = (x.grad[0].abs().sum(0) > 0).nonzero().flatten()
    assert 64 - int(hit.min()) <= left and int(hit.max()) - (64 + down - 1) <= right


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
        b = chunked(voc.chunk, mel[..., :700], 200, (64, 64), scale=256)
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


def _active_db(x, sr):
    from studio.translation.pipeline import active_rms, level_db

    return level_db(active_rms(x, sr))


def test_translation_follows_the_input_level(tiny_models, piano_clip):
    """Issue 18: the output's active RMS is the input's (within 3 dB) at any input level, peak-limited;
    match_level=False keeps the decoder's own level, which does not follow the input."""
    t = Translator.from_pretrained(tiny_models[0], vocoder=tiny_models[1])
    x, sr = sf.read(str(piano_clip), dtype="float32")
    x = x[: 4 * sr]
    raw_levels = []
    for gain in (0.05, 1.0 / np.abs(x).max()):  # -26 dB and peak-normalised: the output must track both
        xi = (x * gain).astype(np.float32)
        y, out_sr = t(xi, sr, target="violin")
        assert abs(_active_db(y, out_sr) - _active_db(xi, sr)) < 3.0, (gain, _active_db(y, out_sr), _active_db(xi, sr))
        assert np.abs(y).max() <= 0.98 + 1e-6 and np.isfinite(y).all()
        raw, _ = t(xi, sr, target="violin", match_level=False)
        raw_levels.append(_active_db(raw, out_sr))
    assert abs(raw_levels[1] - raw_levels[0]) < 20  # the raw level barely tracks a 26+ dB input change


def test_peak_limit_dips_only_around_overs():
    from studio.translation.pipeline import match_level, peak_limit

    sr = 22050
    y = (0.5 * np.sin(2 * np.pi * 220 * np.arange(sr) / sr)).astype(np.float32)
    y[sr // 2] = 3.0  # one over
    out = peak_limit(y, sr)
    assert np.abs(out).max() <= 0.98 + 1e-7
    far = np.r_[0: sr // 2 - 200, sr // 2 + 200: sr]  # ~9 ms away: untouched (no pumping of the whole clip)
    np.testing.assert_array_equal(out[far], y[far])
    silent = np.zeros(sr, np.float32)
    np.testing.assert_array_equal(match_level(silent, y, sr), silent)  # nothing to scale: no NaN, no noise boost


def test_note_f1_uses_a_50ms_onset_tolerance():
    from studio.evaluate import note_f1

    ref = (np.array([[0.0, 0.5], [1.0, 1.5]]), np.array([440.0, 523.25]))
    near = (ref[0] + 0.03, ref[1])
    far = (ref[0] + 0.08, ref[1])
    assert note_f1(ref, near) == 1.0 and note_f1(ref, far) == 0.0
    assert note_f1(ref, (ref[0], ref[1] * 2 ** (1 / 12))) == 0.0  # a semitone off is a wrong note


def _real_folders(rendered, tmp_path):
    """A --real folder (piano and violin renders, 3 s) and a --paper folder whose 'translation' of piano clip 0 is
    that clip at half amplitude: chroma agreement ~1 and level difference -6.02 dB, known in advance."""
    from studio.data import read_manifest

    music, paper = tmp_path / "music", tmp_path / "paper" / "piano_to_violin"
    entries = [e for e in read_manifest(rendered, "train") if e.domain in ("piano", "violin")]
    for dom in ("piano", "violin"):
        e = next(e for e in entries if e.domain == dom)
        x, sr = sf.read(str(rendered / e.path), dtype="float32")
        (music / dom).mkdir(parents=True)
        sf.write(music / dom / "0.wav", x[: 3 * sr], sr, subtype="FLOAT")
        if dom == "piano":
            paper.mkdir(parents=True)
            sf.write(paper / "0.wav", 0.5 * x[: 3 * sr], sr, subtype="FLOAT")
    return music, paper.parent


def test_eval_translate_real_rows(tiny_models, rendered, tmp_path):
    from studio.evaluate import evaluate_translator_real
    from studio.metrics import chroma_agreement

    t = Translator.from_pretrained(tiny_models[0], vocoder=tiny_models[1])
    music, paper = _real_folders(rendered, tmp_path)
    calls = []

    def transcriber(audio, sr):  # stands in for basic-pitch: every clip "plays" the same two notes
        calls.append(len(audio))
        return np.array([[0.0, 0.5], [1.0, 1.5]]), np.array([440.0, 523.25])

    rows = evaluate_translator_real(t, music, ["violin", "piano"], seconds=2.0, paper=paper, transcriber=transcriber)
    assert [(r["source"], r["target"], r["clips"]) for r in rows] == [
        ("2 clips of music", "violin", 2), ("2 clips of music", "piano", 2), ("paper: piano", "violin", 1)]
    for r in rows[:2]:
        assert abs(r["level_diff_db"]) < 3.0, r  # the pipeline matches levels
        assert -1.0 <= r["chroma_agreement_with_source"] <= 1.0 and r["note_f1"] == 1.0
    src, sr = sf.read(str(music / "piano" / "0.wav"), dtype="float32")
    src = t.prepare(src[: 2 * sr], sr)
    assert abs(rows[2]["level_diff_db"] - (-6.02)) < 0.05
    assert rows[2]["chroma_agreement_with_source"] == pytest.approx(chroma_agreement(src, 0.5 * src, 22050), abs=1e-6)
    assert rows[2]["chroma_agreement_with_source"] > 0.99
    assert len(calls) == 2 + 4 + 1  # each source transcribed once, then every output
    with pytest.raises(StudioError, match="unknown target instrument 'kazoo'"):
        evaluate_translator_real(t, music, ["kazoo"], seconds=2.0)


def test_eval_translate_real_cli_without_basic_pitch(tiny_models, rendered, tmp_path):
    """basic-pitch is optional: where it does not import, the note F1 column says so and the rest still runs."""
    import json
    import os

    music, paper = _real_folders(rendered, tmp_path)
    stub = tmp_path / "stub" / "basic_pitch"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(stub.parent), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = run_cli("eval", "translate", "--real", music, "--paper", paper, "--targets", "violin", "--seconds", "2",
                "--model", tiny_models[0], "--vocoder", tiny_models[1], "--json", tmp_path / "rows.json", env=env)
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["target"] for r in rows] == ["violin", "violin"] and all(r["note_f1"] == "unavailable" for r in rows)
    assert "level_diff_db" in r.stdout and "unavailable (basic_pitch is not installed)" in r.stdout
    bad = run_cli("eval", "translate", "--paper", paper, "--model", tiny_models[0], "--vocoder", tiny_models[1],
                  check=False)
    assert bad.returncode == 2 and "--paper needs --real" in bad.stderr and "Traceback" not in bad.stderr


def test_mels_are_cropped_or_padded_to_a_multiple_of_down():
    mel = torch.arange(10.0).reshape(1, 1, 10)
    assert crop_to_multiple(mel, 4).tolist() == [[[0.0, 1, 2, 3, 4, 5, 6, 7]]]
    assert pad_to_multiple(mel, 4)[..., 8:].tolist() == [[[8.0, 9, 9, 9]]]  # the last frame repeated
    assert pad_to_multiple(mel, 5) is mel and crop_to_multiple(mel, 5).shape == mel.shape
