"""The studio's own note transcriber: its front end, decoding, chunking, a tiny model that learns from real renders,
and ``studio eval transcribe`` as a subprocess."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from studio.audio import AudioConfig
from studio.data import SegmentDataset
from studio.notes import LOWEST_MIDI, piano_roll
from studio.train.loop import LoopConfig, Trainer, seed_everything
from studio.transcription import LearnedTranscriber, TranscriberConfig, TranscriberModel
from studio.transcription import pipeline as transcription_pipeline
from studio.transcription.decode import decode_notes
from studio.transcription.model import HarmonicSpectrogram
from studio.transcription.train import TranscriberTask, TranscriberTrainConfig, onset_target

from conftest import run_cli

CFG = AudioConfig()
TINY = TranscriberConfig(channels=8, key_channels=16, key_span=13)


def _tone(midi: float, seconds: float, sr: int = 22050, partials=(1, 2, 3)) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    f = 440 * 2 ** ((midi - 69) / 12)
    return (0.3 * sum(np.sin(2 * np.pi * f * h * t) / h for h in partials)).astype(np.float32)


@pytest.mark.parametrize("midi", [45, 57, 69, 81])
def test_front_end_puts_a_tone_and_its_partials_on_its_key(midi):
    """Bin ``3k + 1`` of every harmonic channel is key ``k``'s: a tone's fundamental peaks there in the h=1 channel,
    its second partial in the h=2 channel (the stacking lines partials up), and the h=0.5 channel is weaker there."""
    front = HarmonicSpectrogram(TranscriberConfig())
    spec = front(torch.from_numpy(_tone(midi, 1.0))[None])[0, :, :, 20:-20].mean(-1)  # [channels, bins]
    key_bin = 3 * (midi - LOWEST_MIDI) + 1
    harmonics = TranscriberConfig().harmonics
    for group in range(2):  # both STFT sizes
        for h in (1.0, 2.0):  # the peak nearest the key (an octave's bins either side) is on it
            row = spec[group * len(harmonics) + harmonics.index(h)]
            near = int(row[key_bin - 18: key_bin + 19].argmax()) + key_bin - 18
            assert abs(near - key_bin) <= 1, (midi, group, h, near, key_bin)
        sub = spec[group * len(harmonics) + harmonics.index(0.5)]
        assert sub[key_bin] < spec[group * len(harmonics) + harmonics.index(1.0)][key_bin] - 0.5


def test_decode_turns_a_roll_back_into_its_notes():
    """Decoding the roll of known notes (as posteriors) gives those notes back: pitch, onset frame, offset frame;
    a repeated note of one key stays two notes, activity without an onset long enough is a note too."""
    notes = np.array([[0.10, 0.60, 60, 0.8], [0.60, 1.00, 60, 0.8], [0.30, 0.90, 67, 0.5], [1.2, 1.8, 48, 0.5]])
    roll = piano_roll(notes, 200, CFG)
    onset = roll[1] > 0
    onset[48 - LOWEST_MIDI] = False  # C3 sounds with no onset
    got = decode_notes(roll[0], onset.astype(np.float32), CFG.frame_rate)
    assert sorted(got[:, 2].astype(int).tolist()) == [48, 60, 60, 67]
    half = 0.5 / CFG.frame_rate  # a roll knows times to a hop: back within half of one either way
    for on, off, midi, _ in notes:
        match = [g for g in got if g[2] == midi and abs(g[0] - on) <= half]
        assert match and abs(match[0][1] - off) <= half, (on, off, midi, got)
    assert decode_notes(np.zeros((88, 50)), np.zeros((88, 50)), CFG.frame_rate).shape == (0, 4)


def test_onset_target_is_soft_one_frame_either_side():
    roll = torch.zeros(1, 2, 88, 10)
    roll[0, 1, 5, 4] = 0.7
    t = onset_target(roll)[0, 5]
    assert t.tolist() == [0, 0, 0, 0.5, 1, 0.5, 0, 0, 0, 0]


def test_chunked_posteriors_equal_the_whole_clips(monkeypatch):
    """Long inputs go through in chunks with enough context: the posteriors do not depend on the chunk size."""
    torch.manual_seed(0)
    t = LearnedTranscriber(TranscriberModel(TINY))
    x = np.concatenate([_tone(60, 1.5), _tone(64, 1.5)]) + np.random.default_rng(0).normal(0, 0.01, 66150).astype(np.float32)
    whole = t.posteriors(x)
    monkeypatch.setattr(transcription_pipeline, "CHUNK_FRAMES", 37)
    parts = t.posteriors(x)
    assert whole[0].shape == (88, len(x) // CFG.hop_length)
    for a, b in zip(whole, parts):
        np.testing.assert_allclose(a, b, atol=1e-7)
    # the check can fail: without the long STFT's half window in the context, the seams show
    monkeypatch.setattr(t.model, "context_frames", lambda: 17)
    short = t.posteriors(x)
    assert max(np.abs(a - b).max() for a, b in zip(whole, short)) > 1e-6
    assert t(np.zeros(100, np.float32)).shape == (0, 4)  # shorter than a frame: no notes, no error
    assert t(np.zeros(22050, np.float32)).shape == (0, 4)  # silence: no notes


@pytest.fixture(scope="module")
def trained_transcriber(rendered, tmp_path_factory, one_torch_thread):
    seed_everything(0)
    cfg = TranscriberTrainConfig(model=TINY, segment_length=16384, lr=3e-3, warmup_frames=8)
    task = TranscriberTask(cfg, val_root=rendered, val_clips=6)
    before = task.validate()
    data = SegmentDataset(rendered, CFG, cfg.segment_length, "train", ["cello", "piano", "violin"], notes=True,
                          augment_notes=False)
    out = tmp_path_factory.mktemp("transcriber-run")
    summary = Trainer(task, data, LoopConfig(max_steps=250, batch_size=8, val_every=0, ckpt_every=0), out,
                      log=lambda *a: None).fit()
    return out / "export", before, summary["val"]


def test_tiny_transcriber_learns_the_renders_notes(trained_transcriber):
    """Trained on real renders' exact notes for a few hundred steps, a tiny transcriber's cross-entropy on held-out
    windows falls well below where it started, and it finds sounding notes (frame F1 at 0.5) it could not before."""
    _, before, after = trained_transcriber
    assert after["bce"] < 0.5 * before["bce"], (before, after)
    assert after["frame_f1"] > before["frame_f1"] + 0.2, (before, after)


def test_eval_transcribe_cli_scores_a_trained_transcriber(trained_transcriber, rendered, tmp_path):
    """``studio eval transcribe`` (a subprocess) scores basic-pitch and the trained model against the renders'
    exact notes; a missing dataset is one line."""
    export = trained_transcriber[0]
    out = tmp_path / "rows.json"
    run_cli("eval", "transcribe", "--data", rendered, "--models", "basic-pitch", export, "--split", "valid",
            "--seconds", "3", "--json", out)
    rows = {r["transcriber"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"basic-pitch", str(export)}
    for r in rows.values():
        assert r["clips"] >= 3 and 0.0 <= r["onset_f1"] <= 1.0
    assert rows["basic-pitch"]["onset_f1"] > 0.3  # the anchor: a real transcriber scores on real renders
    r = run_cli("eval", "transcribe", "--data", tmp_path / "nope", check=False)
    assert r.returncode != 0 and "no such folder" in r.stderr and "Traceback" not in r.stderr


def test_translator_plays_what_a_chosen_transcriber_hears(trained_transcriber, piano_clip, tmp_path):
    """``studio translate --transcriber`` (a subprocess) runs the translator on a trained transcriber's notes; an
    unknown transcriber is one line naming what is installed, and writes nothing."""
    export = trained_transcriber[0]
    out = tmp_path / "violin.wav"
    run_cli("translate", piano_clip, "--to", "violin", "--transcriber", export, "-o", out)
    import soundfile as sf

    y, sr = sf.read(out)
    assert sr == 22050 and len(y) > sr and np.sqrt(np.mean(y**2)) > 1e-3
    bad = tmp_path / "bad.wav"
    r = run_cli("translate", piano_clip, "--to", "violin", "--transcriber", "no-such-transcriber", "-o", bad,
                check=False)
    assert r.returncode != 0 and "no-such-transcriber" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not bad.exists()


def test_thresholds_are_tuned_on_held_out_renders_and_shipped_with_the_model(trained_transcriber, rendered, tmp_path):
    """``tune_thresholds`` scores every grid point on the valid renders (clean and through rooms) and picks the best;
    saved with the model, they are what ``from_pretrained`` decodes with."""
    from studio.evaluate import tune_thresholds
    from studio.transcription import save_transcriber

    t = LearnedTranscriber.from_pretrained(trained_transcriber[0])
    best, rows = tune_thresholds(t, rendered, seconds=3.0, onsets=(0.3, 0.6), frames=(0.3, 0.5))
    assert len(rows) == 4 and all(0.0 <= r["onset_f1"] <= 1.0 for r in rows)
    assert len({round(r["score"], 6) for r in rows}) > 1  # the thresholds matter: the grid is not flat
    save_transcriber(t.model, tmp_path / "tuned", thresholds=best)
    again = LearnedTranscriber.from_pretrained(tmp_path / "tuned")
    assert (again.onset_threshold, again.frame_threshold) == (best["onset_threshold"], best["frame_threshold"])


def test_transcription_scores_forgive_octaves_only_in_the_pitch_class_column():
    """A transcription one octave off everywhere scores 0 onset F1 but full pitch-class F1; a timing error beyond
    50 ms costs both."""
    from studio.evaluate import transcription_scores

    ref = np.array([[0.1, 0.5, 60, 0.7], [0.5, 0.9, 64, 0.7]])
    up = ref.copy()
    up[:, 2] += 12
    f1, _, _, _, pc = transcription_scores(ref, up)
    assert f1 == 0.0 and pc == 1.0
    late = ref.copy()
    late[:, :2] += 0.08
    assert transcription_scores(ref, late)[0] == 0.0 and transcription_scores(ref, late)[4] == 0.0
    assert transcription_scores(ref, ref)[:4] == (1.0, 1.0, 1.0, 1.0)


def test_eval_transcribe_refuses_a_dataset_without_notes(tmp_path):
    from studio.audio import AudioConfig
    from studio.errors import DatasetError
    from studio.evaluate import evaluate_transcription

    (tmp_path / "manifest.csv").write_text("path,domain,split,duration,sample_rate,piece\n"
                                           "audio/a.wav,piano,test,4.0,22050,p1\n")  # a recording: no notes/
    with pytest.raises(DatasetError, match="no rendered"):
        evaluate_transcription({}, tmp_path, AudioConfig())
