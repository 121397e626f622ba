"""The notes translator: rolls and folding, the recipes' notes, basic-pitch transcription, and a tiny translator that
learns to play the source's notes on another instrument."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import ROOT, run_cli
from studio.audio import AudioConfig, MelSpectrogram, load_audio
from studio.data import SegmentDataset, read_manifest
from studio.errors import StudioError
from studio.metrics import chroma_agreement
from studio.evaluate import note_f1
from studio.notes import (LOWEST_MIDI, Transcriber, augment, fold, notes_path, piano_roll, read_notes, read_ranges,
                          transcribed_path, window)
from studio.train.loop import LoopConfig, Trainer, seed_everything
from studio.translation import Translator, TranslatorConfig, TranslatorModel
from studio.translation.train import TranslatorTask, TranslatorTrainConfig
from studio.vocoder import Vocoder

CFG = AudioConfig()
FPS = CFG.sample_rate / CFG.hop_length


def test_piano_roll_marks_the_frames_a_note_sounds_and_its_onset():
    notes = np.array([[0.5, 1.0, 60, 0.8], [0.2, 0.3, 20, 1.0], [0.9, 2.0, 72, 0.5]])  # midi 20: below the piano
    roll = piano_roll(notes, 100, CFG)
    k = 60 - LOWEST_MIDI
    centres = (np.arange(100) + 0.5) / FPS
    assert np.array_equal(roll[0, k] > 0, (centres >= 0.5) & (centres < 1.0))
    assert np.flatnonzero(roll[1, k]).tolist() == [round(0.5 * FPS - 0.5)] and roll[1, k].max() == pytest.approx(0.8)
    assert roll[0, 72 - LOWEST_MIDI, -1] == 1 and roll.sum(axis=(0, 2))[np.r_[:k, k + 1:72 - LOWEST_MIDI]].sum() == 0


def test_fold_moves_notes_by_octaves_into_the_range_and_window_cuts_in_time():
    notes = np.array([[0.0, 1.0, 40, 0.5], [1.0, 2.0, 55, 0.5], [2.0, 3.0, 100, 0.5]])
    folded = fold(notes, 53, 88)  # e.g. a violin; 2 semitones of slack either side
    assert folded[:, 2].tolist() == [52, 55, 88]
    assert np.array_equal(folded[:, [0, 1, 3]], notes[:, [0, 1, 3]])
    w = window(notes, 0.5, 2.5)
    assert w[:, :2].tolist() == [[-0.5, 0.5], [0.5, 1.5], [1.5, 2.5]]
    rng = np.random.default_rng(0)
    many = np.array([[t, t + 0.5, 60 + t % 12, 0.6] for t in range(200)], dtype=float)
    aug = augment(many, rng)
    assert 0.85 * len(many) < len(aug) < 1.15 * len(many) and np.all(aug[:, 1] > aug[:, 0])
    assert np.abs(np.sort(aug[:, 0])[:180] - many[:180, 0]).max() > 0  # jittered, not copied


def test_render_recipe_writes_the_notes_each_piece_plays(rendered):
    ranges = read_ranges(rendered)
    assert set(ranges) == {"piano", "violin", "cello"}
    for e in read_manifest(rendered):
        notes = read_notes(notes_path(rendered, e.piece))
        assert len(notes) > 5 and notes[:, 0].min() < 0.5 and notes[:, 0].max() < e.duration
    # the first attack of the audio is where the notes say
    e = next(e for e in read_manifest(rendered, "train") if e.domain == "piano")
    x, sr = load_audio(rendered / e.path, CFG.sample_rate)
    env = np.convolve(np.abs(x), np.ones(64) / 64, "same")
    first = np.argmax(env > 0.1 * env.max()) / sr
    assert abs(first - read_notes(notes_path(rendered, e.piece))[:, 0].min()) < 0.05


def test_parallel_items_carry_the_targets_roll(rendered):
    ds = SegmentDataset(rendered, CFG, 16384, "train", parallel=True, notes=True, augment_notes=False)
    item = ds[3]
    assert item["roll"].shape == (2, 88, 16384 // CFG.hop_length)
    assert item["roll"][0].sum() > 0
    with pytest.raises(StudioError, match="no notes"):
        import shutil

        bare = rendered.parent / "bare"
        shutil.copytree(rendered, bare, ignore=shutil.ignore_patterns("notes"))
        SegmentDataset(bare, CFG, 16384, "train", notes=True)


def test_note_drop_leaves_notes_out_of_the_roll(rendered):
    def onsets(drop):
        ds = SegmentDataset(rendered, CFG, 16384, "train", parallel=True, notes=True, note_drop=drop)
        return sum(int((ds[i]["roll"][1] > 0).sum()) for i in range(12))

    kept, dropped = onsets(0.0), onsets(0.9)
    assert kept > 20 and dropped < 0.5 * kept  # the same windows (seeded by index), fewer notes


def test_transcribe_recipe_writes_what_basic_pitch_hears_and_training_reads_it(rendered, tmp_path):
    import shutil
    import subprocess
    import sys

    data = tmp_path / "data"
    shutil.copytree(rendered, data)
    with pytest.raises(StudioError, match="data_recipes.transcribe"):
        SegmentDataset(data, CFG, 16384, "train", parallel=True, notes=True, transcribed=1.0)

    def recipe():
        r = subprocess.run([sys.executable, "-m", "data_recipes.transcribe", "--data", str(data), "--splits", "train"],
                           capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert r.returncode == 0, r.stderr
        return r.stdout

    entries = read_manifest(data, "train")
    assert f"{len(entries)} files transcribed" in recipe()
    assert "0 files transcribed" in recipe()  # resumable: what is written is not redone
    # what basic-pitch heard in the piano render is the piano's notes (onset F1 against the exact ones)
    e = next(e for e in entries if e.domain == "piano")
    hz = lambda n: 440.0 * 2 ** ((n[:, 2] - 69) / 12)  # noqa: E731
    heard, exact = read_notes(transcribed_path(data, e.path)), fold(read_notes(notes_path(data, e.piece)), *read_ranges(data)["piano"])
    assert note_f1((exact[:, :2], hz(exact)), (heard[:, :2], hz(heard))) > 0.5
    # a training item then reads the source's transcription (same window and target as the exact notes' item)
    heard_ds = SegmentDataset(data, CFG, 16384, "train", parallel=True, notes=True, augment_notes=False, transcribed=1.0)
    exact_ds = SegmentDataset(data, CFG, 16384, "train", parallel=True, notes=True, augment_notes=False)
    for i in range(4):
        a, b = heard_ds[i], exact_ds[i]
        assert a["target_domain"] == b["target_domain"] and torch.equal(a["audio"], b["audio"])
        on_a, on_b = a["roll"][0] > 0, b["roll"][0] > 0
        assert not torch.equal(on_a, on_b) and (on_a & on_b).sum() > 0.3 * (on_a | on_b).sum()


def _tone(midi: int, seconds: float, sr: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    f = 440 * 2 ** ((midi - 69) / 12)
    env = np.minimum(1, t / 0.01) * np.exp(-t)
    return (0.3 * env * sum(np.sin(2 * np.pi * f * h * t) / h for h in (1, 2, 3))).astype(np.float32)


def test_basic_pitch_transcribes_played_notes():
    x = np.concatenate([_tone(64, 0.6), _tone(67, 0.6), _tone(72, 0.6)])
    notes = Transcriber()(x)
    starts = {int(m): on for on, _, m, _ in sorted(notes.tolist(), reverse=True)}
    assert {64, 67, 72} <= set(starts), notes
    assert [round(starts[m], 1) for m in (64, 67, 72)] == [0.0, 0.6, 1.2]


TINY_NOTES = TranslatorConfig(domains=("cello", "piano", "violin"), channels=48, latent=16, dilations=(1, 2, 4, 8),
                              domain_dim=16, ranges=((0, 127),) * 3)


@pytest.fixture(scope="module")
def trained_notes_translator(rendered, tmp_path_factory, one_torch_thread):
    seed_everything(0)
    cfg = TranslatorTrainConfig(model=TINY_NOTES, segment_length=16384, lr=3e-3)
    task = TranslatorTask(cfg, val_root=rendered, val_clips=2, val_seconds=2.0)
    before = task.validate()["mel_l1"]
    data = SegmentDataset(rendered, CFG, cfg.segment_length, "train", domains=list(TINY_NOTES.domains),
                          parallel=True, notes=True)
    out = tmp_path_factory.mktemp("notes-run")
    summary = Trainer(task, data, LoopConfig(max_steps=300, batch_size=8, val_every=0, ckpt_every=0), out,
                      log=lambda *a: None).fit()
    return out / "export", before, summary["val"]["mel_l1"]


def test_tiny_notes_translator_learns_and_keeps_the_notes(trained_notes_translator, rendered):
    """Trained on the renders' notes, a tiny translator plays a piano clip's transcribed notes as a violin: its
    output's chroma follows the source's far more closely than the same translator's without the notes does."""
    export, before, after = trained_notes_translator
    assert after < 0.7 * before, (before, after)
    vocoder = Vocoder.from_pretrained()
    t = Translator.from_pretrained(export, vocoder=vocoder)
    deaf = Translator(t.model, vocoder, transcriber=lambda x, sr: np.zeros((0, 4)))  # the same model, told no notes
    e = next(e for e in read_manifest(rendered, "train") if e.domain == "piano")
    x, sr = load_audio(rendered / e.path, t.sample_rate)
    y, _ = t(x, sr, target="violin")
    y_deaf, _ = deaf(x, sr, target="violin")
    kept, ignored = chroma_agreement(x, y, sr), chroma_agreement(x, y_deaf, sr)
    print(f"chroma kept {kept:.3f} ignored {ignored:.3f}; val {before:.3f} -> {after:.3f}")
    assert kept > ignored + 0.15 and kept > 0.75, (kept, ignored)
    with pytest.raises(StudioError, match="give it audio"):
        t.translate_mel(MelSpectrogram(CFG)(torch.from_numpy(x)[None]), t.domain_weights("violin"))


def test_register_fold_keeps_translations_in_the_targets_range(trained_notes_translator, rendered):
    export, _, _ = trained_notes_translator
    trained = Translator.from_pretrained(export, vocoder=Vocoder.from_pretrained())
    model = TranslatorModel(replace(trained.model.config, ranges=((36, 76), (21, 108), (55, 100))))
    model.load_state_dict(trained.model.state_dict())
    t = Translator(model, trained.vocoder)
    low = np.array([[0.1, 0.9, 36, 0.7]])  # C2: below a violin (G3 = 55, 2 semitones of slack)
    mel = torch.zeros(1, CFG.n_mels, 100) - 3
    folded = t.note_features(low, mel, "violin", "fold")[0, :88].sum(-1)
    kept = t.note_features(low, mel, "violin", "keep")[0, :88].sum(-1)
    assert folded.argmax().item() + LOWEST_MIDI == 60 and kept.argmax().item() + LOWEST_MIDI == 36
    assert t.note_features(low, mel, "cello", "fold")[0, :88].sum(-1).argmax().item() + LOWEST_MIDI == 36
    with pytest.raises(StudioError, match="register must be one of fold, keep"):
        t(np.zeros(22050, np.float32), 22050, target="violin", register="up")


def test_translate_cli_register_flag(trained_notes_translator, piano_clip, tmp_path):
    export, _, _ = trained_notes_translator
    r = run_cli("translate", piano_clip, "--to", "violin", "--register", "keep", "--model", export,
                "-o", tmp_path / "out.wav")
    assert "as violin" in r.stdout and (tmp_path / "out.wav").is_file()
    bad = run_cli("translate", piano_clip, "--to", "violin", "--register", "up", "--model", export,
                  "-o", tmp_path / "bad.wav", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and not (tmp_path / "bad.wav").exists()


def test_eval_translate_room_hears_the_sources_through_a_room(trained_notes_translator, rendered, tmp_path):
    """``--room``: the held-out sources go through a synthetic room before translation; the scores still compare
    with the clean source and target (the untranslated source's distance is the clean one's in both runs)."""
    import json

    export, _, _ = trained_notes_translator
    rows = {}
    for room in ([], ["--room"]):
        out = tmp_path / f"rows{len(room)}.json"
        run_cli("eval", "translate", "--data", rendered, "--split", "train", "--sources", "piano", "--targets",
                "violin", "--max-pieces", "1", "--seconds", "3", "--model", export, "--json", out, *room)
        rows[len(room)] = json.loads(out.read_text())[0]
    clean, heard = rows[0], rows[1]
    assert heard["mel_l1_source_to_target"] == clean["mel_l1_source_to_target"]
    assert heard["mel_l1_translation_to_target"] != clean["mel_l1_translation_to_target"]
    assert heard["chroma_agreement_with_source"] != clean["chroma_agreement_with_source"]
    bad = run_cli("eval", "translate", "--real", rendered, "--room", "--model", export, check=False)
    assert bad.returncode == 2 and "--room needs --data" in bad.stderr and "Traceback" not in bad.stderr


def test_source_mel_widens_a_trained_translator_and_learns_from_the_source(trained_notes_translator, rendered):
    """``source_mel``: the source's relative log-mel goes in beside the notes. Widened from a trained translator it
    starts out playing exactly what that one played (the new inputs start at zero), and training moves those inputs:
    the parallel target's articulation is in the source's mel."""
    export, _, _ = trained_notes_translator
    narrow = Translator.from_pretrained(export, vocoder=Vocoder.from_pretrained())
    seed_everything(0)
    cfg = TranslatorTrainConfig(model=replace(narrow.model.config, source_mel=True), segment_length=16384, lr=3e-3)
    task = TranslatorTask(cfg, val_root=rendered, val_clips=2, val_seconds=2.0)
    wide = task.nets["model"]
    wide.load_state_dict(wide.widen_state(narrow.model.state_dict()))
    assert wide.inputs == narrow.model.inputs + CFG.n_mels
    e = next(e for e in read_manifest(rendered, "train") if e.domain == "piano")
    x, sr = load_audio(rendered / e.path, CFG.sample_rate)
    mel = MelSpectrogram(CFG)(torch.from_numpy(x)[None])
    notes = Transcriber()(x, sr)
    same = Translator(wide, narrow.vocoder)
    w = narrow.domain_weights("violin")
    a = narrow.translate_notes(narrow.note_features(notes, mel, "violin"), w)
    b = same.translate_notes(same.note_features(notes, mel, "violin"), w)
    assert torch.allclose(a, b, atol=1e-5)
    before = task.validate()["mel_l1"]
    data = SegmentDataset(rendered, CFG, cfg.segment_length, "train", domains=list(TINY_NOTES.domains),
                          parallel=True, notes=True)
    Trainer(task, data, LoopConfig(max_steps=60, batch_size=8, val_every=0, ckpt_every=0),
            rendered.parent / "wide-run", log=lambda *a: None).fit()
    after = task.validate()["mel_l1"]
    source_weights = wide.encoder.inp.weight[:, narrow.model.inputs:]
    print(f"widened val {before:.3f} -> {after:.3f}; source-mel weights |w| max {source_weights.abs().max():.4f}")
    assert after < before and source_weights.abs().max() > 1e-3


def test_flux_loss_brings_attacks_and_releases_closer_to_the_target(trained_notes_translator, rendered):
    """``flux``: an L1 on the log-mel's frame-to-frame changes. From the same trained start and the same batches
    (the loop seeds itself), training with it brings the validation attacks and releases (``mel_flux``) closer to
    the real target's than training on the level-free L1 alone (measured: 0.0818 -> 0.0814 without, 0.0802 with)."""
    export, _, _ = trained_notes_translator
    start = Translator.from_pretrained(export, vocoder=Vocoder.from_pretrained()).model.state_dict()
    data = SegmentDataset(rendered, CFG, 16384, "train", domains=list(TINY_NOTES.domains), parallel=True, notes=True)
    flux = {}
    for weight in (0.0, 10.0):
        seed_everything(0)
        cfg = TranslatorTrainConfig(model=TINY_NOTES, segment_length=16384, lr=3e-3, flux=weight)
        task = TranslatorTask(cfg, val_root=rendered, val_clips=2, val_seconds=2.0)
        task.nets["model"].load_state_dict(start)
        before = task.validate()["mel_flux"]
        Trainer(task, data, LoopConfig(max_steps=60, batch_size=8, val_every=0, ckpt_every=0),
                rendered.parent / f"flux-run-{weight}", log=lambda *a: None).fit()
        flux[weight] = task.validate()["mel_flux"]
    print(f"val mel_flux from {before:.4f}: without the term {flux[0.0]:.4f}, with it {flux[10.0]:.4f}")
    assert flux[10.0] < flux[0.0] and flux[10.0] < before


def test_room_and_recording_adds_a_decaying_tail_a_noise_floor_and_a_band_limit():
    from studio.translation.augment import room_and_recording

    mel = torch.full((8, CFG.n_mels, 200), float(np.log10(CFG.log_floor)))
    mel[:, 5:40, 20:60] = 0.0  # a loud chord, then silence
    out = room_and_recording(mel, CFG, torch.Generator().manual_seed(0), p=1.0)
    assert out.shape == mel.shape and torch.isfinite(out).all()
    tail = out[:, 5:40, 60:].mean(1)  # after the chord: a tail that decays towards a floor above the silence
    assert (tail[:, 2] > tail[:, 40] + 0.3).all() and (tail[:, -1] > mel[0, 0, 0] + 1).all()
    assert (out[:, -1] == np.log10(CFG.log_floor)).all()  # the top band is cut in every item
    assert torch.equal(room_and_recording(mel, CFG, p=0.0), mel.clamp(min=np.log10(CFG.log_floor)))


def test_training_on_recorded_sources_hears_through_the_room(trained_notes_translator, rendered):
    """``recorded``: rooms, noise and band limits added to the source's mel in training. From the same trained
    start and the same batches, a translator trained with them rebuilds the target from *recorded* sources better
    than one trained on clean sources only. The rolls are emptied (``note_drop`` 1 in training: only the few
    ghost notes of ``studio.notes.augment`` remain; none in the test) so that what the decoder plays comes through
    the source's mel, where the room is."""
    from studio.translation.augment import room_and_recording
    from studio.translation.train import level_free_l1

    export, _, _ = trained_notes_translator
    narrow = Translator.from_pretrained(export, vocoder=Vocoder.from_pretrained()).model
    data = SegmentDataset(rendered, CFG, 16384, "train", domains=list(TINY_NOTES.domains), parallel=True, notes=True,
                          note_drop=1.0)
    model_cfg = replace(narrow.config, source_mel=True)
    val = SegmentDataset(rendered, CFG, 16384, "valid", domains=list(TINY_NOTES.domains), parallel=True, notes=True,
                         augment_notes=False)
    items = [val[i] for i in range(8)]
    batch = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in ("audio", "target_audio", "roll",
                                                                                   "target_domain")}
    mel = MelSpectrogram(CFG)
    source = room_and_recording(mel(batch["audio"]), CFG, torch.Generator().manual_seed(1), p=1.0)
    target = mel(batch["target_audio"])
    err = {}
    for recorded in (0.0, 1.0):
        seed_everything(0)
        cfg = TranslatorTrainConfig(model=model_cfg, segment_length=16384, lr=3e-3, recorded=recorded, note_drop=1.0)
        task = TranslatorTask(cfg, val_root=rendered, val_clips=2, val_seconds=2.0)
        m = task.nets["model"]
        m.load_state_dict(m.widen_state(narrow.state_dict()))
        Trainer(task, data, LoopConfig(max_steps=100, batch_size=8, val_every=0, ckpt_every=0),
                rendered.parent / f"recorded-run-{recorded}", log=lambda *a: None).fit()
        with torch.no_grad():
            m.eval()
            pred = m(m.note_features(0 * batch["roll"], source), batch["target_domain"])[1]
            err[recorded] = level_free_l1(pred, target).item()
    print(f"L1 to the target from recorded sources: trained clean {err[0.0]:.4f}, trained recorded {err[1.0]:.4f}")
    assert err[1.0] < err[0.0]
    val = task.validate()  # with ``recorded``, validation also scores the same clips heard through fixed rooms
    assert val["mel_l1_recorded"] != val["mel_l1"] and np.isfinite(val["mel_l1_recorded"])
