"""A small sampler: notes of a score played with real recorded instrument samples, then put in a synthetic room.

Each note plays the recorded sample nearest in pitch (and in velocity, where the instrument has velocity layers),
resampled to the note's pitch, cut at the note's end with a short release fade. Everything here is a pure function
of its inputs (the room and level come from a caller's seeded generator), so renders are reproducible.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve, resample_poly

from studio.audio import load_audio
from studio.errors import DatasetError, UnsupportedAudio
from studio.notes import fold_midi

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".aiff", ".aif")
_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
# "C4", "A#0", "As1" (tonejs' sharp), "Bb3", with an optional velocity layer "v8" (Salamander's "D#3v8").
_NOTE_NAME = re.compile(r"^([A-G])(#|s|b)?(-?\d)(?:v(\d+))?$")


def parse_note_name(stem: str) -> tuple[int, int | None] | None:
    """File stem -> ``(midi, velocity_layer)``, or None for files that are not named after a note (C4 = 60)."""
    m = _NOTE_NAME.match(stem)
    if not m:
        return None
    letter, accidental, octave, layer = m.groups()
    midi = 12 * (int(octave) + 1) + _PITCH_CLASS[letter] + {"#": 1, "s": 1, "b": -1}.get(accidental or "", 0)
    return midi, (int(layer) if layer else None)


@dataclass
class Note:
    onset: float  # seconds
    duration: float  # seconds
    midi: int
    velocity: int  # 1..127


@dataclass
class Sample:
    midi: int
    velocity: int  # the layer's nominal MIDI velocity (64 when the instrument has one layer)
    audio: np.ndarray  # mono float32 at the sampler's rate, leading silence trimmed


@dataclass
class Instrument:
    name: str
    samples: list[Sample]
    sample_rate: int
    layered: bool = False  # velocity layers recorded at their natural level: gain only corrects the residual
    release: float = 0.15  # seconds of fade after the note's end (damper / bow lift)
    rejected: list[str] = field(default_factory=list)  # files left out, with why
    _shifted: dict = field(default_factory=dict, repr=False)

    @property
    def lowest(self) -> int:
        return min(s.midi for s in self.samples)

    @property
    def highest(self) -> int:
        return max(s.midi for s in self.samples)

    def fold(self, midi: int) -> int:
        """Move a note by octaves into the sampled range (``studio.notes.fold_midi``: ±2 semitones of slack)."""
        return fold_midi(midi, self.lowest, self.highest)

    def nearest(self, midi: int, velocity: int) -> Sample:
        # pitch first (a wrong timbre region is worse than a wrong loudness), then velocity layer
        return min(self.samples, key=lambda s: (abs(s.midi - midi), abs(s.velocity - velocity), s.midi))

    def voice(self, sample: Sample, semitones: int) -> np.ndarray:
        """``sample`` resampled up by ``semitones`` (cached per process: a score reuses few (sample, shift) pairs)."""
        key = (id(sample), semitones)
        if key not in self._shifted:
            self._shifted[key] = pitch_shift(sample.audio, semitones)
        return self._shifted[key]


def pitch_shift(x: np.ndarray, semitones: int) -> np.ndarray:
    """Play ``x`` faster by ``2**(semitones/12)`` (pitch and speed together, as a tape or a sampler does).

    The rate ratio is approximated by a fraction with denominator <= 500: the pitch error stays below 0.01 cent.
    """
    if semitones == 0:
        return x
    ratio = Fraction(2 ** (-semitones / 12)).limit_denominator(500)
    return resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)


def _trim_start(x: np.ndarray, sr: int) -> np.ndarray:
    """Drop the silence before the attack (keeping 2 ms), so every instrument's onsets land on the score's times."""
    above = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    start = max(0, int(above[0]) - int(0.002 * sr)) if len(above) else 0
    return x[start:]


def pitch_problem(x: np.ndarray, sr: int, midi: int) -> str | None:
    """Why a sample does not sound at the pitch its file name says, or None when it does.

    Free sample sets carry a few mislabelled files (an octave or a semitone off). Two checks on the spectrum of the
    first second after the attack: the strongest peak is a harmonic of the named pitch (within 50 cents), and the
    odd harmonics carry energy (a tone an octave above the name has none at the name's 1st, 3rd, 5th harmonics).
    """
    seg = x[int(0.05 * sr): int(1.05 * sr)]
    if len(seg) < sr // 10:
        seg = x
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), 4 * len(seg)))
    freqs = np.fft.rfftfreq(4 * len(seg), 1 / sr)
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    spec[freqs < max(20.0, f0 / 2.5)] = 0  # rumble under quiet high notes; a name an octave too high still shows
    peak = freqs[int(np.argmax(spec))]
    ratio = peak / f0
    if ratio < 0.97 or abs(1200 * math.log2(ratio / round(ratio))) > 50:
        return f"its strongest partial ({peak:.0f} Hz) is no harmonic of {f0:.0f} Hz"

    def band(h: int) -> float:
        sel = (freqs > h * f0 * 2 ** (-0.5 / 12)) & (freqs < h * f0 * 2 ** (0.5 / 12))
        return float(spec[sel].max() ** 2) if sel.any() else 0.0

    top = sr / 2 / f0
    odd = sum(band(h) for h in (1, 3, 5, 7) if h < top)
    even = sum(band(h) for h in (2, 4, 6, 8) if h < top)
    if even > 0 and odd < 0.01 * even:
        return f"it sounds an octave above its name ({f0:.0f} Hz)"
    return None


def load_instrument(name: str, folders: list[Path], sample_rate: int, max_sample_seconds: float = 8.0,
                    release: float = 0.15, layer_velocity=None) -> Instrument:
    """Every note-named audio file under ``folders`` (recursively) as one instrument.

    ``layer_velocity``: layer number -> nominal MIDI velocity, for files named with a velocity layer (``C4v8``).
    Samples are mono, at ``sample_rate``, cut at ``max_sample_seconds`` with a 50 ms fade.
    """
    samples, rejected = [], []
    for folder in folders:
        for path in sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
            parsed = parse_note_name(path.stem)
            if parsed is None:
                continue
            midi, layer = parsed
            try:
                x, _ = load_audio(path, sample_rate, mono=True, max_seconds=None)
            except UnsupportedAudio as e:
                raise DatasetError(f"sample {path} of {name} is unusable ({e})") from None
            x = _trim_start(x, sample_rate)[: int(max_sample_seconds * sample_rate)].copy()
            problem = pitch_problem(x, sample_rate, midi)
            if problem:
                rejected.append(f"{path.name} ({problem})")
                continue
            fade = min(len(x), int(0.05 * sample_rate))
            x[len(x) - fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
            velocity = layer_velocity(layer) if (layer is not None and layer_velocity) else 64
            samples.append(Sample(midi, velocity, x))
    if not samples:
        where = ", ".join(str(f) for f in folders)
        raise DatasetError(f"no note-named samples (like C4.wav or As3.wav) for {name} in {where}.")
    layered = len({s.velocity for s in samples}) > 1
    return Instrument(name, samples, sample_rate, layered=layered, release=release, rejected=rejected)


def note_gain(inst: Instrument, sample: Sample, velocity: int) -> float:
    """Velocity -> amplitude. Single-layer samples are normalised recordings: a power law over the whole range
    (velocity 127 -> 1, 64 -> ~0.36). Velocity layers already carry their level; only the gap to the layer is scaled."""
    if inst.layered:
        return float(velocity / sample.velocity)
    return float((velocity / 127) ** 1.5)


def render(notes: list[Note], inst: Instrument, length: int) -> np.ndarray:
    """Mix ``notes`` into ``length`` samples (notes past the end are cut off)."""
    sr = inst.sample_rate
    out = np.zeros(length, dtype=np.float32)
    rel = max(1, int(inst.release * sr))
    fade = (0.5 + 0.5 * np.cos(np.linspace(0, math.pi, rel))).astype(np.float32)
    for n in notes:
        start = int(round(n.onset * sr))
        if start >= length:
            continue
        midi = inst.fold(n.midi)
        s = inst.nearest(midi, n.velocity)
        x = inst.voice(s, midi - s.midi)
        hold = max(1, int(round(n.duration * sr)))
        y = x[: min(len(x), hold + rel, length - start)] * note_gain(inst, s, n.velocity)
        if len(y) > hold:  # the note ends before the sample does: release fade, then silence
            k = len(y) - hold
            y[hold:] *= fade[:k]
        out[start: start + len(y)] += y
    return out


# ------------------------------------------------------------------------------------------------------ room

@dataclass
class Room:
    rt60: float  # seconds for the reverb to fall by 60 dB
    wet: float  # share of reverberant sound in the mix
    seed: int

    @classmethod
    def draw(cls, rng: np.random.Generator, rt60=(0.2, 1.5), wet=(0.1, 0.5)) -> "Room":
        return cls(float(rng.uniform(*rt60)), float(rng.uniform(*wet)), int(rng.integers(2**31)))

    def impulse_response(self, sample_rate: int) -> np.ndarray:
        """Exponentially decaying noise reaching -60 dB at ``rt60``, unit energy, after a short pre-delay.

        High frequencies die faster in real rooms (air and walls absorb them); a one-pole low-pass whose cut-off
        falls along the tail imitates that cheaply.
        """
        rng = np.random.default_rng(self.seed)
        n = int(self.rt60 * sample_rate)
        t = np.arange(n) / sample_rate
        noise = rng.standard_normal(n)
        # one-pole smoothing coefficient rising from 0.1 (bright) to 0.8 (dark) over the tail
        a = 0.1 + 0.7 * t / self.rt60
        smooth = np.empty(n)
        acc = 0.0
        for i in range(n):  # a plain loop over <= 1.5 s: ~30 ms, once per piece
            acc = a[i] * acc + (1 - a[i]) * noise[i]
            smooth[i] = acc
        ir = smooth * np.exp(-math.log(1000) * t / self.rt60)
        ir = np.concatenate([np.zeros(int(0.01 * sample_rate)), ir])
        return (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)

    def apply(self, x: np.ndarray, sample_rate: int, ir: np.ndarray | None = None) -> np.ndarray:
        """Dry/wet mix, same length as ``x`` (the caller leaves room for the tail); ``ir``: this room's impulse
        response when the caller already has it (one per piece, for every instrument)."""
        ir = self.impulse_response(sample_rate) if ir is None else ir
        wet = fftconvolve(x, ir)[: len(x)].astype(np.float32)
        return (math.sqrt(1 - self.wet) * x + math.sqrt(self.wet) * wet).astype(np.float32)
