"""``studio eval``: the metrics behind the model cards, computed reproducibly on held-out data.

- vocoder: log-mel L1, multi-resolution STFT distance and chroma agreement (``metrics.chroma_agreement``) of
  resyntheses to their input, MelGAN vs Griffin-Lim (32 iterations) and, on request, vocoders a user could pick
  instead (``studio.baselines``: the speech-trained HiFi-GAN V1), on held-out renders and on real recordings in
  folders (e.g. ../shared/audio/music); pYIN pitch accuracy on monophonic clips.
- translator: per domain pair, log-mel L1 of the translation to the real rendering of the same piece on the
  target instrument, against the untranslated source's distance to it, and chroma agreement with the source;
  on real recordings (``evaluate_translator_real``), per target: chroma agreement with the source, level
  difference (dB) and, where basic-pitch is installed, note F1 between transcriptions; plus anchor rows for the
  paper's translations of the same clips.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch

from .audio import AudioConfig
from .data import parallel_clips
from .metrics import (chroma_agreement, frame_locked, frechet_distance, mel_frame_stats, mel_l1, mr_stft_distance,
                      pitch_accuracy)


def evaluate_translator(translator, data_root, split: str = "test", seconds: float = 4.0, max_pieces: int = 4,
                        pairs: list[tuple[str, str]] | None = None, transcriber=None, register: str = "fold",
                        room: bool = False) -> list[dict]:
    """One row per (source, target) domain pair, averaged over held-out pieces (parallel renders): log-mel L1 of the
    translation to the real rendering on the target, against the untranslated source's (and their ratio, < 1 when
    the translation is closer); chroma agreement with the source; level difference (dB); note F1 between
    transcriptions of source and translation (``transcriber``: default basic-pitch where installed).

    ``room``: the translator hears each source through a room, noise and a band limit (``rooms.room_audio``, the
    same draw for a piece and instrument every run); every measure still compares with the *clean* source and
    target, so the rows say how much of the music survives a recording's conditions."""
    from .rooms import room_audio
    from .translation.pipeline import active_rms, level_db

    sr = translator.sample_rate
    domains = translator.domains
    pieces = parallel_clips(data_root, translator.config, split, domains, seconds, max_pieces)
    pairs = pairs or [(a, b) for a in domains for b in domains if a != b]
    if transcriber is None and note_f1_available():
        transcriber = NoteTranscriber()
    source_notes: dict[tuple, tuple] = {}
    rows = []
    for src, tgt in pairs:
        d_tr, d_src, chroma, chroma_ref, level, f1, f1_ref = [], [], [], [], [], [], []
        for p in pieces:
            x, ref = p["clips"][src], p["clips"][tgt]
            heard = x
            if room:  # seeded by names: the same room for a piece and instrument whatever the model
                seed = [zlib.crc32(p["piece"].encode()), zlib.crc32(src.encode())]
                heard = room_audio(x, sr, np.random.default_rng(seed))
            y, _ = translator(heard, sr, target=tgt, register=register)
            d_tr.append(mel_l1(ref, y, translator.config, aligned=True))
            d_src.append(mel_l1(ref, x, translator.config, aligned=True))
            chroma.append(chroma_agreement(x, y, sr))
            chroma_ref.append(chroma_agreement(x, ref, sr))
            level.append(level_db(active_rms(y, sr)) - level_db(active_rms(x, sr)))
            if transcriber is not None:
                key = (p["piece"], src)
                if key not in source_notes:
                    source_notes[key] = transcriber(x, sr)
                f1.append(note_f1(source_notes[key], transcriber(y, sr)))
                if (p["piece"], tgt) not in source_notes:
                    source_notes[(p["piece"], tgt)] = transcriber(ref, sr)
                f1_ref.append(note_f1(source_notes[key], source_notes[(p["piece"], tgt)]))
        rows.append({"source": src, "target": tgt, "pieces": len(pieces),
                     "mel_l1_translation_to_target": float(np.mean(d_tr)),
                     "mel_l1_source_to_target": float(np.mean(d_src)),
                     "distance_ratio": float(np.mean(d_tr) / max(np.mean(d_src), 1e-9)),
                     "chroma_agreement_with_source": float(np.mean(chroma)),
                     "chroma_agreement_real_target_with_source": float(np.mean(chroma_ref)),
                     "level_diff_db": float(np.mean(level)),
                     "note_f1": float(np.nanmean(f1)) if f1 else NOTE_F1_UNAVAILABLE,
                     # the same scores of the real rendering on the target: what a faithful translation gets
                     "note_f1_real_target": float(np.nanmean(f1_ref)) if f1_ref else NOTE_F1_UNAVAILABLE})
    return rows


NOTE_F1_UNAVAILABLE = "unavailable"  # the column's value where basic-pitch is not installed


def note_f1_available() -> bool:
    """basic-pitch is optional for evaluation: note F1 is reported only where it imports."""
    from .notes import transcription_available

    return transcription_available()


class NoteTranscriber:
    """Note events of a clip for note F1: ``(intervals [n, 2] s, pitches [n] Hz)``, by basic-pitch with its own
    defaults (``predict``'s thresholds and 127.7 ms shortest note), spelled out so that the metric stays what it was
    whatever the pipeline's transcriber uses; the model loads once."""

    def __init__(self):
        from .notes import Transcriber

        self.transcriber = Transcriber(onset_threshold=0.5, frame_threshold=0.3, min_note_ms=127.70)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        notes = self.transcriber(np.clip(audio, -1, 1), sample_rate)
        return notes[:, :2], 440.0 * 2 ** ((notes[:, 2] - 69) / 12)


def note_f1(ref: tuple[np.ndarray, np.ndarray], est: tuple[np.ndarray, np.ndarray]) -> float:
    """Onset-only note F1 (mir_eval, 50 ms onset tolerance, offsets ignored) of two transcriptions."""
    import mir_eval

    if len(ref[0]) == 0 and len(est[0]) == 0:
        return float("nan")  # nothing to agree on
    if len(ref[0]) == 0 or len(est[0]) == 0:
        return 0.0
    return float(mir_eval.transcription.precision_recall_f1_overlap(
        ref[0], ref[1], est[0], est[1], onset_tolerance=0.05, offset_ratio=None)[2])


def transcription_clips(data_root, config: AudioConfig, split: str = "test", seconds: float = 4.0,
                        max_pieces: int = 4, room: bool = False) -> list[dict]:
    """Held-out render windows with the exact notes each played: ``[{"audio", "notes", "piece", "domain"}]``, the same
    window of every piece on every rendered instrument (notes folded as the render folded them, times from the
    window's start). ``room``: each heard through a room, noise floor and band limit (``rooms.room_audio``, seeded
    by piece and instrument, as ``evaluate_translator``'s)."""
    from .data import read_manifest
    from .notes import fold, notes_path, read_notes, read_ranges, window
    from .rooms import room_audio

    from .errors import DatasetError

    sr, ranges = config.sample_rate, read_ranges(data_root)
    domains = sorted(d for d in {e.domain for e in read_manifest(data_root, split)} if d in ranges)
    if not domains:
        raise DatasetError(f"{data_root} has no rendered {split} files with notes (data_recipes.real or .render "
                           "write them): nothing to score a transcriber against.")
    out = []
    for p in parallel_clips(data_root, config, split, domains, seconds, max_pieces):
        notes = read_notes(notes_path(data_root, p["piece"]))
        for d, x in p["clips"].items():
            ref = window(fold(notes, *ranges[d]), p["start"], p["start"] + len(x) / sr)
            ref[:, 0], ref[:, 1] = np.clip(ref[:, 0], 0, None), np.clip(ref[:, 1], 0, len(x) / sr)
            ref = ref[ref[:, 1] - ref[:, 0] > 0.02]  # notes cut to a sliver by the window's edges
            if room:
                x = room_audio(x, sr, np.random.default_rng([zlib.crc32(p["piece"].encode()), zlib.crc32(d.encode())]))
            out.append({"audio": x, "notes": ref, "piece": p["piece"], "domain": d})
    return out


def transcription_scores(ref: np.ndarray, est: np.ndarray) -> tuple[float, ...]:
    """(onset F1, precision, recall, onset+offset F1, pitch-class onset F1) of notes ``est`` against ``ref``
    (mir_eval; onsets within 50 ms; offsets within 20% of the note or 50 ms; pitch class: octaves forgiven)."""
    import mir_eval

    if len(ref) == 0 or len(est) == 0:
        return (0.0,) * 5 if len(ref) or len(est) else (np.nan,) * 5
    hz = lambda n: 440.0 * 2 ** ((n[:, 2] - 69) / 12)  # noqa: E731
    pc = lambda n: 440.0 * 2 ** ((n[:, 2] % 12 - 9) / 12)  # noqa: E731  every note in one octave
    prf = mir_eval.transcription.precision_recall_f1_overlap
    p, r, f, _ = prf(ref[:, :2], hz(ref), est[:, :2], hz(est), onset_tolerance=0.05, offset_ratio=None)
    off = prf(ref[:, :2], hz(ref), est[:, :2], hz(est), onset_tolerance=0.05)[2]
    chroma = prf(ref[:, :2], pc(ref), est[:, :2], pc(est), onset_tolerance=0.05, offset_ratio=None)[2]
    return f, p, r, off, chroma


def evaluate_transcription(transcribers: dict, data_root, config: AudioConfig, split: str = "test",
                           seconds: float = 4.0, max_pieces: int = 4, room: bool = False) -> list[dict]:
    """One row per transcriber (``name -> (audio, sr) -> notes``): how well it finds the notes each held-out render
    played (``transcription_clips``), scored by ``transcription_scores`` and averaged over the clips."""
    clips = transcription_clips(data_root, config, split, seconds, max_pieces, room)
    if not clips:
        from .errors import DatasetError

        raise DatasetError(f"{data_root}: no {split} piece is rendered on every instrument with notes.")
    rows = []
    for name, transcribe in transcribers.items():
        scores = [transcription_scores(c["notes"], transcribe(c["audio"], config.sample_rate)) for c in clips]
        m = np.nanmean(np.array(scores, dtype=np.float64).reshape(-1, 5), axis=0)
        rows.append({"transcriber": name, "clips": len(scores), "onset_f1": float(m[0]), "precision": float(m[1]),
                     "recall": float(m[2]), "onset_offset_f1": float(m[3]), "pitch_class_onset_f1": float(m[4])})
    return rows


def tune_thresholds(transcriber, data_root, split: str = "valid", seconds: float = 4.0, max_pieces: int = 4,
                    onsets=(0.3, 0.4, 0.5, 0.6, 0.7), frames=(0.2, 0.3, 0.4, 0.5)) -> tuple[dict, list[dict]]:
    """The decoding thresholds of a ``LearnedTranscriber`` that do best over held-out renders heard clean and through
    rooms (``split``: keep the test split for the card's figures), by the mean of onset F1 and onset+offset F1: the
    translator plays the notes' lengths too, a note held past its end is a drone. Returns (best
    ``{"onset_threshold", "frame_threshold"}``, every grid point's row)."""
    from .transcription.decode import decode_notes

    cfg = transcriber.config
    posts = [(c["notes"], transcriber.posteriors(c["audio"])) for room in (False, True)
             for c in transcription_clips(data_root, cfg, split, seconds, max_pieces, room)]
    rows = []
    for on in onsets:
        for fr in frames:
            s = np.array([transcription_scores(ref, decode_notes(n, o, cfg.frame_rate, on, fr, transcriber.min_frames))
                          for ref, (n, o) in posts], dtype=np.float64)
            f1, off = np.nanmean(s[:, 0]), np.nanmean(s[:, 3])
            rows.append({"onset_threshold": on, "frame_threshold": fr, "onset_f1": float(f1),
                         "onset_offset_f1": float(off), "score": float((f1 + off) / 2)})
    best = max(rows, key=lambda r: r["score"])
    return {"onset_threshold": best["onset_threshold"], "frame_threshold": best["frame_threshold"]}, rows


def evaluate_translator_real(translator, folder, targets: list[str], seconds: float = 5.0, paper=None,
                             transcriber=None, register: str = "fold") -> list[dict]:
    """Translate every clip under ``folder`` (the first ``seconds``) to each target: one row per target with the
    mean chroma agreement with the source, the level difference (dB, output active RMS - input active RMS) and
    note F1 of the transcriptions. ``paper``: folders ``<source>_to_<target>`` holding the paper's translations
    of ``folder/<source>/<same name>``, one anchor row each. ``transcriber``: ``(audio, sr) -> notes``; default
    basic-pitch where installed, else note F1 reads ``unavailable``."""
    from .errors import StudioError
    from .translation.pipeline import active_rms, level_db, match_level

    sr = translator.sample_rate
    bad = [t for t in targets if t not in translator.domains]
    if bad:
        raise StudioError(f"unknown target instrument {bad[0]!r}; available: {', '.join(translator.domains)}.")
    clips = folder_clips(folder, sr, seconds)
    if not clips:
        raise StudioError(f"{folder}: no .wav clips found.")
    if transcriber is None and note_f1_available():
        transcriber = NoteTranscriber()
    source_notes: dict[str, tuple] = {}

    def score(x, y, key) -> tuple[float, float, float | str]:
        lx, ly = active_rms(x, sr), active_rms(y, sr)
        level = level_db(ly) - level_db(lx) if lx > 0 else float("nan")
        if transcriber is None:
            return chroma_agreement(x, y, sr), level, NOTE_F1_UNAVAILABLE
        if key not in source_notes:
            source_notes[key] = transcriber(x, sr)
        return chroma_agreement(x, y, sr), level, note_f1(source_notes[key], transcriber(y, sr))

    def row(source, target, scores, raw=None) -> dict:
        f1 = [s[2] for s in scores]
        return {"source": source, "target": target, "clips": len(scores),
                "chroma_agreement_with_source": float(np.nanmean([s[0] for s in scores])),
                "level_diff_db": float(np.nanmean([s[1] for s in scores])),
                "level_diff_db_unmatched": None if raw is None else float(np.nanmean(raw)),
                "note_f1": NOTE_F1_UNAVAILABLE if transcriber is None else float(np.nanmean(f1))}

    rows = []
    for tgt in targets:
        scores, raw = [], []
        for c in clips:
            x = translator.prepare(c["audio"], sr)
            # the decoder's own level too (what match_level corrects), from the same decode
            y, _ = translator(x, sr, target=tgt, match_level=False, register=register)
            raw.append(level_db(active_rms(y, sr)) - level_db(active_rms(x, sr)))
            scores.append(score(x, match_level(y, x, sr), c["path"]))
        rows.append(row(f"{len(clips)} clips of {Path(folder).name}", tgt, scores, raw))
    by_path = {Path(c["path"]).relative_to(folder).as_posix(): c for c in clips}
    for pair in sorted(p for p in Path(paper).iterdir() if p.is_dir()) if paper else []:
        source, sep, target = pair.name.partition("_to_")
        if not sep:
            raise StudioError(f"{pair}: paper folders are named <source>_to_<target>.")
        scores = []
        for y in folder_clips(pair, sr, seconds):
            src = by_path.get(f"{source}/{Path(y['path']).name}")
            if src is None:
                raise StudioError(f"{y['path']}: no source clip {source}/{Path(y['path']).name} under {folder}.")
            scores.append(score(src["audio"], y["audio"], src["path"]))
        rows.append(row(f"paper: {source}", target, scores))
    return rows


def evaluate_vocoder(vocoders: dict, clips: list[dict], sample_rate: int,
                     config: AudioConfig | None = None) -> list[dict]:
    """``vocoders``: name -> object with ``resynthesize(audio, sr)``; ``clips``: ``[{"audio", "monophonic"?}]``.

    Pitch accuracy is computed on the clips marked monophonic (pYIN needs one voice). ``frame_locked``: the share
    of the output's energy periodic with the hop (the frame-rate buzz; ``metrics.frame_locked``), next to the
    inputs' own share (``input_frame_locked``, chance level for music).
    """
    config = config or AudioConfig(sample_rate=sample_rate)  # every row on the same mels: the evaluated model's
    rows = []
    locked = lambda a, h: frame_locked(torch.as_tensor(np.asarray(a, dtype=np.float32)), h).item()
    input_locked: dict[int, float] = {}  # per hop: the inputs' share is the same for every vocoder
    for name, voc in vocoders.items():
        hop = getattr(getattr(voc, "config", None), "hop_length", 256)
        if hop not in input_locked:
            input_locked[hop] = float(np.mean([locked(c["audio"], hop) for c in clips]))
        mel_d, stft_d, pitch, lock, chroma = [], [], [], [], []
        for c in clips:
            with torch.inference_mode():
                y, _ = voc.resynthesize(c["audio"], sample_rate)
            mel_d.append(mel_l1(c["audio"], y, config))
            stft_d.append(mr_stft_distance(c["audio"], y))
            lock.append(locked(y, hop))
            chroma.append(chroma_agreement(c["audio"], y, sample_rate))
            if c.get("monophonic"):
                pitch.append(pitch_accuracy(c["audio"], y, sample_rate))
        rows.append({"vocoder": name, "clips": len(clips), "mel_l1": float(np.mean(mel_d)),
                     "mr_stft": float(np.mean(stft_d)), "chroma_agreement": float(np.nanmean(chroma)),
                     "frame_locked": float(np.mean(lock)),
                     "input_frame_locked": input_locked[hop],
                     "pitch_accuracy": float(np.nanmean(pitch)) if pitch else None})
    return rows


def folder_clips(folder, sample_rate: int, seconds: float | None = None) -> list[dict]:
    """Every audio file under ``folder`` (domain = its parent folder name), resampled to ``sample_rate``."""
    from .audio import load_audio

    clips = []
    for p in sorted(Path(folder).rglob("*.wav")):
        x, _ = load_audio(p, sample_rate)
        if seconds:
            x = x[: int(seconds * sample_rate)]
        clips.append({"audio": x, "domain": p.parent.name, "path": str(p)})
    return clips


def evaluate_generator(generator, data_root=None, split: str = "test", n: int = 8, seconds: float = 8.0,
                       temperature: float = 1.0, domains=("piano",), real=None, paper=None) -> list[dict]:
    """Fréchet distance of log-mel frame statistics (``metrics.mel_frame_stats``) of ``n`` samples (seeds 0..n-1,
    ``seconds`` each) to two references: the real piano recordings in the folder ``real`` and ``n`` held-out
    renders of ``data_root`` (split ``split``, ``domains``); either may be None. Next to them, rows that calibrate
    the scale: the held-out renders and the paper's VQ-VAE reconstructions (folder ``paper``, of the same pieces
    as ``real``), this VQ-VAE's reconstructions, shuffled codes and white noise. Also the share of near-silent
    samples (RMS < ``SILENT_DBFS``) as returned and among the first draws (before the sampler redraws), and the
    codebook perplexity of the samples."""
    from .data import fixed_clips
    from .generation.pipeline import SILENT_DBFS, rms_dbfs

    if data_root is None and real is None:
        raise ValueError("give held-out data (data_root) or a folder of real recordings (real), or both")
    cfg, sr = generator.config, generator.sample_rate
    refs = {}
    if real is not None:
        refs["real"] = [c["audio"] for c in folder_clips(real, sr)]
        if not refs["real"]:
            raise ValueError(f"no .wav files in {real}")
    held = [c["audio"] for c in fixed_clips(data_root, cfg, split, n, seconds, list(domains))] if data_root else []
    if data_root is not None:
        if not held:
            raise ValueError(f"no {'/'.join(domains)} clips in the {split!r} split of {data_root}")
        refs["heldout"] = held
    stats = {k: mel_frame_stats(v, cfg) for k, v in refs.items()}
    samples, first_silent = [], 0
    for seed in range(n):
        samples.append(generator.generate(seconds, temperature, seed=seed)[0])
        first_silent += generator.last_info.attempts > 1 or generator.last_info.near_silent
    sample_codes = [generator.encode_audio(y).flatten() for y in samples]
    counts = torch.bincount(torch.cat(sample_codes), minlength=generator.vqvae.config.codebook_size).float()
    p = counts / counts.sum()
    silent = lambda clips: float(np.mean([rms_dbfs(c) < SILENT_DBFS for c in clips]))  # noqa: E731
    sets = [("generated (prior samples)", samples)]
    if held:
        g = torch.Generator().manual_seed(0)
        recon, shuffled = [], []
        for x in held:
            codes = generator.encode_audio(x)
            recon.append(generator.codes_to_audio(codes))
            shuffled.append(generator.codes_to_audio(codes[:, torch.randperm(codes.shape[1], generator=g)]))
        sets += [("reference: held-out renders", held), ("reference: this VQ-VAE's reconstructions of them", recon),
                 ("reference: shuffled codes", shuffled)]
    paper_clips = folder_clips(paper, sr) if paper is not None else []
    if paper_clips:
        sets.append(("reference: paper's VQ-VAE reconstructions (of the real clips)", [c["audio"] for c in paper_clips]))
    sets.append(("reference: white noise", [np.random.default_rng(i).normal(0, 0.1, int(seconds * sr)).astype(np.float32)
                                            for i in range(n)]))
    rows = []
    for name, clips in sets:
        st = mel_frame_stats(clips, cfg)
        row = {"clips": name, "n": len(clips)}
        for k in ("real", "heldout"):
            if k in stats:
                row[f"frechet_{k}"] = None if clips is refs[k] else frechet_distance(st, stats[k])
        row["near_silent"] = silent(clips)
        row["first_draw_silent"] = None
        row["codebook_perplexity"] = None
        rows.append(row)
    rows[0]["first_draw_silent"] = first_silent / n
    rows[0]["codebook_perplexity"] = float(torch.exp(-(p * p.clamp(min=1e-10).log()).sum()))
    if "real" in refs and len(refs["real"]) > 1:
        # the real clips against each other (one vs the rest, averaged): how far apart real piano recordings are
        d = [frechet_distance(mel_frame_stats([x], cfg), mel_frame_stats(refs["real"][:i] + refs["real"][i + 1:], cfg))
             for i, x in enumerate(refs["real"])]
        rows.append({"clips": "reference: each real clip vs the other(s)", "n": len(d), "frechet_real": float(np.mean(d)),
                     **({"frechet_heldout": None} if "heldout" in refs else {}), "near_silent": silent(refs["real"]),
                     "first_draw_silent": None, "codebook_perplexity": None})
    real_names = [Path(c["path"]).name for c in folder_clips(real, sr)] if real is not None else []
    if len(real_names) > 1 and sorted(real_names) == sorted(Path(c["path"]).name for c in paper_clips):
        # each reconstruction against the real clips it was not made from: a sample-like use of the paper's clips
        d = [frechet_distance(mel_frame_stats([c["audio"]], cfg),
                              mel_frame_stats([x for x, n in zip(refs["real"], real_names) if n != Path(c["path"]).name], cfg))
             for c in paper_clips]
        rows.append({"clips": "reference: paper's reconstruction of each clip vs the other real clip(s)", "n": len(d),
                     "frechet_real": float(np.mean(d)), **({"frechet_heldout": None} if "heldout" in refs else {}),
                     "near_silent": silent([c["audio"] for c in paper_clips]), "first_draw_silent": None,
                     "codebook_perplexity": None})
    return rows


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else "-" if v is None else str(v)
    widths = [max(len(k), *(len(fmt(r[k])) for r in rows)) for k in keys]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(fmt(r[k]).ljust(w) for k, w in zip(keys, widths)) for r in rows]
    return "\n".join(lines)
