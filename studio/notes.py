"""Note events and piano rolls at the mel frame rate: what the note-conditioned translator reads.

Notes are float arrays ``[n, 4]``: onset (s), offset (s), MIDI pitch, velocity (0..1). They come from a dataset's
``notes/`` folder (exactly what each parallel render played; see ``data_recipes.real``) or from basic-pitch's
transcription of a recording (``Transcriber``). A roll ``[2, 88, frames]`` holds, per piano key and mel frame, whether
the note sounds (1) and its velocity at its onset frame; frame ``n`` is centred at ``(n + 0.5) * hop`` samples, as
``studio.audio.MelSpectrogram``'s frames are.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from .audio import AudioConfig, prepare_audio
from .errors import StudioError

LOWEST_MIDI, PITCHES = 21, 88  # the piano's keys A0..C8, as basic-pitch reports them
NOTES_DIR, RANGES_FILE, TRANSCRIBED_DIR = "notes", "ranges.json", "transcribed"
FOLD_SLACK = 2  # semitones a note may sit outside an instrument's sampled range before it is moved by an octave
BASIC_PITCH = "pip install --no-deps basic-pitch==0.4.0"
REGISTERS = ("fold", "keep")  # notes outside the target's range: moved by octaves into it, or played where they are


def check_register(register: str) -> str:
    if register not in REGISTERS:
        raise StudioError(f"register must be one of {', '.join(REGISTERS)}, got {register!r}.")
    return register


def empty() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float64)


# ------------------------------------------------------------------------------------------------------ files

def notes_path(root: str | os.PathLike, piece: str) -> Path:
    return Path(root) / NOTES_DIR / f"{piece.replace('/', '__')}.csv"


def transcribed_path(root: str | os.PathLike, path: str) -> Path:
    """Where ``data_recipes.transcribe`` keeps basic-pitch's notes of the dataset file ``path`` (relative to root)."""
    return Path(root) / NOTES_DIR / TRANSCRIBED_DIR / f"{Path(path).with_suffix('').as_posix().replace('/', '__')}.csv"


def write_notes(path: str | os.PathLike, notes: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["onset", "offset", "midi", "velocity"])
        for on, off, midi, vel in notes:
            w.writerow([f"{on:.4f}", f"{off:.4f}", int(midi), f"{vel:.3f}"])
    os.replace(tmp, path)  # atomic: an interrupted run never leaves half a file


def read_notes(path: str | os.PathLike) -> np.ndarray:
    with open(path, newline="") as f:
        rows = [[float(r["onset"]), float(r["offset"]), float(r["midi"]), float(r["velocity"])] for r in csv.DictReader(f)]
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def write_ranges(root: str | os.PathLike, ranges: dict[str, tuple[int, int]]) -> None:
    """Each domain's sampled range ``(lowest, highest)`` MIDI pitch: notes outside it were folded by octaves."""
    p = Path(root) / NOTES_DIR / RANGES_FILE
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({k: [int(a), int(b)] for k, (a, b) in sorted(ranges.items())}, indent=1))


def read_ranges(root: str | os.PathLike) -> dict[str, tuple[int, int]]:
    p = Path(root) / NOTES_DIR / RANGES_FILE
    if not p.is_file():
        return {}
    return {k: (int(a), int(b)) for k, (a, b) in json.loads(p.read_text()).items()}


# ---------------------------------------------------------------------------------------------------- editing

def fold_midi(midi: int, lowest: int, highest: int, slack: int = FOLD_SLACK) -> int:
    """Move a pitch by octaves into ``[lowest - slack, highest + slack]``, as an arranger would: the pitch class and
    the timing stay, so the instrument still plays the same music."""
    while midi < lowest - slack:
        midi += 12
    while midi > highest + slack:
        midi -= 12
    return midi


def fold(notes: np.ndarray, lowest: int, highest: int) -> np.ndarray:
    out = notes.copy()
    out[:, 2] = [fold_midi(int(m), lowest, highest) for m in notes[:, 2]]
    return out


def window(notes: np.ndarray, start: float, end: float) -> np.ndarray:
    """The notes sounding in ``[start, end)`` seconds, times made relative to ``start``."""
    keep = (notes[:, 0] < end) & (notes[:, 1] > start)
    out = notes[keep].copy()
    out[:, :2] -= start
    return out


def augment(notes: np.ndarray, rng: np.random.Generator, jitter: float = 0.02, drop: float = 0.05,
            ghost: float = 0.05) -> np.ndarray:
    """Exact score notes made to look like a transcription of a recording: onsets and offsets off by up to
    ``jitter`` s, lengths off by ±30%, a share ``drop`` of notes missed, a share ``ghost`` doubled an octave or a
    fifth away (a transcriber's usual confusions, from strong partials), velocities noisy. Trained on this, the
    decoder does not fall apart on basic-pitch's output."""
    if len(notes) == 0:
        return notes
    n = len(notes)
    out = notes[rng.random(n) >= drop].copy()
    k = len(out)
    dur = (out[:, 1] - out[:, 0]) * rng.uniform(0.7, 1.3, k)
    out[:, 0] += rng.uniform(-jitter, jitter, k)
    out[:, 1] = out[:, 0] + np.maximum(dur, 0.03)
    out[:, 3] = np.clip(out[:, 3] + rng.normal(0, 0.1, k), 0.05, 1.0)
    g = notes[rng.random(n) < ghost].copy()
    if len(g):
        g[:, 2] += rng.choice([-12, 12, 19], len(g))
        g[:, 3] *= 0.5
        g[:, 1] = g[:, 0] + np.minimum(g[:, 1] - g[:, 0], 0.3)
        out = np.concatenate([out, g])
    return out


def match_velocities(notes: np.ndarray, median: float = 0.6) -> np.ndarray:
    """Velocities scaled so their median is ``median`` (clipped to 0.05..1). basic-pitch's amplitudes sit lower
    (0.2-0.5) than the drawn score velocities the translator trained on (median ~0.6); only their spread is kept."""
    if len(notes) == 0:
        return notes
    out = notes.copy()
    out[:, 3] = np.clip(out[:, 3] * median / max(float(np.median(out[:, 3])), 1e-3), 0.05, 1.0)
    return out


# ------------------------------------------------------------------------------------------------------- rolls

def frame_times(frames: int, config: AudioConfig) -> np.ndarray:
    return (np.arange(frames) + 0.5) * config.hop_length / config.sample_rate


def piano_roll(notes: np.ndarray, frames: int, config: AudioConfig) -> np.ndarray:
    """``[2, 88, frames]`` float32: channel 0 is 1 where a note sounds, channel 1 its velocity at its onset frame.
    Times in ``notes`` are relative to frame 0's start; keys outside the piano's are left out."""
    roll = np.zeros((2, PITCHES, frames), dtype=np.float32)
    if len(notes) == 0 or frames == 0:
        return roll
    fps = config.sample_rate / config.hop_length
    for on, off, midi, vel in notes:
        k = int(round(midi)) - LOWEST_MIDI
        if not 0 <= k < PITCHES:
            continue
        a, b = int(np.ceil(on * fps - 0.5)), int(np.ceil(off * fps - 0.5))  # frames whose centre is in [on, off)
        a, b = max(a, 0), min(max(b, a + 1), frames)
        if a < b:
            roll[0, k, a:b] = 1.0
        o = int(round(on * fps - 0.5))
        if 0 <= o < frames:
            roll[1, k, o] = max(roll[1, k, o], float(vel))
    return roll


# ------------------------------------------------------------------------------------------------ transcription

def transcription_available() -> bool:
    import logging

    logging.disable(logging.WARNING)  # its import warns about each backend it does not find (we use ONNX)
    try:
        import basic_pitch.inference  # noqa: F401
        import basic_pitch.note_creation  # noqa: F401
    except Exception:  # ImportError, or a broken install (its backends fail at import)
        return False
    finally:
        logging.disable(logging.NOTSET)
    return True


class Transcriber:
    """basic-pitch (its ONNX model, offline) notes of mono audio at 22,050 Hz: ``transcriber(audio) -> notes``.

    The model loads once per instance; audio goes through in basic-pitch's own 2 s windows (bounded memory).
    ``min_note_ms``: basic-pitch's default 127.7 ms drops fast passages (a semiquaver at 120 bpm is 125 ms); the
    translator uses 50 ms, the note-F1 metric keeps the default so that its figures stay comparable. The frame
    threshold 0.4 (basic-pitch: 0.3) ends notes when the room's ring, not the note, is what sounds: on 48 held-out
    renders of 8 instruments with their exact notes it raised onset F1 0.638 -> 0.657, onset+offset F1 0.318 -> 0.357
    and frame F1 0.797 -> 0.809 (a grid of onset/frame thresholds, melodia on/off and shortest note 50/100 ms)."""

    SAMPLE_RATE = 22050

    def __init__(self, onset_threshold: float = 0.5, frame_threshold: float = 0.4, min_note_ms: float = 50.0,
                 threads: int | None = None):
        if not transcription_available():
            raise StudioError(f"note transcription needs basic-pitch and onnxruntime: {BASIC_PITCH} onnxruntime.")
        import basic_pitch
        from basic_pitch.inference import Model

        path = Path(basic_pitch.__file__).parent / "saved_models" / "icassp_2022" / "nmp.onnx"
        self.model = Model(path)
        if threads:  # onnxruntime takes every core by default: parallel transcribers then thrash each other
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            self.model.model = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.onset_threshold, self.frame_threshold, self.min_note_ms = onset_threshold, frame_threshold, min_note_ms

    def posteriors(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        """basic-pitch's frame outputs (``note``, ``onset``, ``contour``) for ``audio`` (mono, 22,050 Hz)."""
        from basic_pitch.constants import AUDIO_N_SAMPLES, FFT_HOP
        from basic_pitch.inference import unwrap_output, window_audio_file

        overlap_frames = 30  # as basic_pitch.inference.run_inference
        overlap = overlap_frames * FFT_HOP
        x = np.concatenate([np.zeros(overlap // 2, np.float32), np.asarray(audio, np.float32).reshape(-1)])
        out: dict[str, list] = {"note": [], "onset": [], "contour": []}
        for win, _ in window_audio_file(x, AUDIO_N_SAMPLES - overlap):
            for k, v in self.model.predict(win[None]).items():
                out[k].append(v)
        return {k: unwrap_output(np.concatenate(v), len(audio), overlap_frames) for k, v in out.items()}

    def __call__(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Notes of mono ``audio`` at any ``sample_rate`` (resampled to basic-pitch's 22,050 Hz here)."""
        from basic_pitch.constants import AUDIO_SAMPLE_RATE, FFT_HOP
        from basic_pitch.note_creation import model_output_to_notes

        if sample_rate != self.SAMPLE_RATE:
            audio, _ = prepare_audio(audio, sample_rate, self.SAMPLE_RATE)
        if len(audio) < FFT_HOP:
            return empty()
        post = self.posteriors(audio)
        _, events = model_output_to_notes(
            post, onset_thresh=self.onset_threshold, frame_thresh=self.frame_threshold,
            min_note_len=int(np.round(self.min_note_ms / 1000 * (AUDIO_SAMPLE_RATE / FFT_HOP))))
        if not events:
            return empty()
        return np.array([[e[0], e[1], e[2], e[3]] for e in events], dtype=np.float64)
