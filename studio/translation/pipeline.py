"""``Translator``: audio on one instrument -> the same notes on another, through the shared MelGAN vocoder.

notes mode (the default model): audio -> (optional Demucs stem) -> notes (basic-pitch) folded into the target's
range + loudness (from the mel) -> decoder(target) -> mel -> Vocoder -> audio. universal mode (Mor et al.): audio ->
mel (the shared AudioConfig) -> encoder -> latent -> decoder(target) -> mel -> Vocoder -> audio. Long inputs are
processed in overlapping chunks (seamless, bounded memory).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .. import registry
from ..audio import load_audio, prepare_audio
from ..config import to_dict
from ..errors import ConfigMismatch, StudioError
from ..latent import pad_to_multiple
from ..nn import chunked, stateless
from ..notes import check_register
from ..weights import load_weights, save_model
from ..vocoder import Vocoder
from .model import TranslatorModel, translator_config

CHUNK_FRAMES = 1024  # mel frames per chunk (~12 s at 22.05 kHz / hop 256)
PEAK_CEILING = 0.98  # -0.18 dBFS: headroom so 16-bit export and resampling never clip
MAX_GAIN_DB = 30.0  # a near-silent translation is not boosted into loud noise


def active_rms(x: np.ndarray, sample_rate: int, window_s: float = 0.05, range_db: float = 40.0,
               floor_db: float = -60.0) -> float:
    """RMS over the sounding part of ``x``: 50 ms windows within ``range_db`` of the loudest one and above
    ``floor_db`` dBFS. Pauses would otherwise make a sparse clip read quieter than it sounds. 0.0 if silent."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    n = max(1, int(window_s * sample_rate))
    if len(x) == 0:
        return 0.0
    frames = np.pad(x, (0, (-len(x)) % n)).reshape(-1, n)
    ms = np.mean(frames ** 2, axis=1)
    keep = ms > max(10 ** (floor_db / 10), ms.max() * 10 ** (-range_db / 10))
    return float(np.sqrt(ms[keep].mean())) if keep.any() else 0.0


def level_db(ratio: float) -> float:
    return float(20 * np.log10(max(ratio, 1e-12)))


def peak_limit(y: np.ndarray, sample_rate: int, ceiling: float = PEAK_CEILING, window_s: float = 0.005) -> np.ndarray:
    """Keep ``|y| <= ceiling`` by a smooth gain dip around each over-peak (5 ms), not by clipping the waveform.

    The gain is the needed per-sample gain, min-filtered then moving-averaged over the same window: every value
    averaged at a sample is a minimum over a window containing it, so the result never exceeds what that sample
    needs (no overshoot), and it changes over milliseconds (no clicks)."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    peak = np.abs(y)
    if peak.max(initial=0.0) <= ceiling:
        return y
    w = 2 * max(1, int(window_s * sample_rate) // 2) + 1
    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    gain = uniform_filter1d(minimum_filter1d(need, w, mode="nearest"), w, mode="nearest")
    return np.clip(y * gain, -ceiling, ceiling).astype(y.dtype)  # clip: float rounding of the average only


def match_level(y: np.ndarray, reference: np.ndarray, sample_rate: int) -> np.ndarray:
    """``y`` scaled so its active RMS equals ``reference``'s (gain capped at +30 dB), then peak-limited.

    The decoder's mels come out several dB quieter than the input's; a translation should sound as loud as the
    clip it came from. A silent ``y`` or ``reference`` is left as is."""
    target, current = active_rms(reference, sample_rate), active_rms(y, sample_rate)
    if target <= 0.0 or current <= 0.0:
        return y
    gain = min(target / current, 10 ** (MAX_GAIN_DB / 20))
    return peak_limit((y * gain).astype(np.float32), sample_rate)


def save_translator(model: TranslatorModel, folder: str | os.PathLike, card: str | None = None, half: bool = False) -> Path:
    return save_model(folder, model.state_dict(), {"kind": "translator", "config": to_dict(model.config)}, card, half)


def load_translator_model(name_or_dir=None, device="cpu") -> tuple[TranslatorModel, registry.ModelEntry]:
    entry = registry.resolve(name_or_dir or registry.DEFAULTS["translator"], kind="translator")
    model = TranslatorModel(translator_config(entry.config))
    try:
        model.load_state_dict(load_weights(entry.weights))
    except RuntimeError as e:
        raise ConfigMismatch(f"{entry.weights} does not match its config ({' '.join(str(e).split())[:200]}).") from None
    return model.to(device).eval(), entry


class Translator:
    """``translator(audio, sr, target="violin") -> (audio, sr)``; ``translator.domains`` lists the targets."""

    def __init__(self, model: TranslatorModel, vocoder: Vocoder, transcriber=None):
        """``transcriber`` (notes mode): ``(audio, sample_rate) -> notes``, or the name of one (``basic-pitch``, a
        trained transcriber's registry name or folder); None: basic-pitch (``transcription.default_transcriber``),
        loaded on first use."""
        model.config.audio.check_same(vocoder.config, "the vocoder")
        self.model = model.eval()
        self.vocoder = vocoder
        self.config = model.config.audio
        self.name = "translator"
        if isinstance(transcriber, (str, os.PathLike)):
            from ..transcription.pipeline import load_transcriber

            transcriber = load_transcriber(str(transcriber))
        self._transcriber = transcriber
        self._transcribed: dict[str, np.ndarray] = {}  # the last few inputs' notes (each target re-uses them)

    @classmethod
    def from_pretrained(cls, name_or_dir=None, vocoder: Vocoder | str | None = None, device="cpu",
                        transcriber=None) -> "Translator":
        model, entry = load_translator_model(name_or_dir, device)
        if not isinstance(vocoder, Vocoder):
            vocoder = Vocoder.from_pretrained(vocoder, device=device)
        t = cls(model, vocoder, transcriber)
        t.name = entry.name
        return t

    @property
    def domains(self) -> list[str]:
        return list(self.model.config.domains)

    @property
    def mode(self) -> str:
        return self.model.config.mode

    def range_of(self, domain: str) -> tuple[int, int] | None:
        """The MIDI range ``domain`` was trained to play (notes mode), or None."""
        r = self.model.config.ranges
        return tuple(r[self.domains.index(domain)]) if r else None

    def transcribe(self, x: np.ndarray) -> np.ndarray:
        """The notes of mono audio at the model's rate (``studio.notes``), cached for the last few inputs."""
        import hashlib

        key = hashlib.sha1(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()
        if key not in self._transcribed:
            if self._transcriber is None:
                from ..transcription.pipeline import load_transcriber

                self._transcriber = load_transcriber()
            while len(self._transcribed) >= 4:
                self._transcribed.pop(next(iter(self._transcribed)))
            self._transcribed[key] = self._transcriber(x, self.sample_rate)
        return self._transcribed[key]

    def note_features(self, notes: np.ndarray, mel: torch.Tensor, target: str, register: str = "fold") -> torch.Tensor:
        """Notes + the source's log-mel ``[1, n_mels, T]`` -> the decoder's input ``[1, model.inputs, T]``."""
        from ..notes import fold, match_velocities, piano_roll

        check_register(register)
        r = self.range_of(target)
        notes = match_velocities(notes)
        if register == "fold" and r is not None and len(notes):
            notes = fold(notes, *r)
        roll = torch.from_numpy(piano_roll(notes, mel.shape[-1], self.config)).to(mel.device)
        return self.model.note_features(roll[None], mel)

    @torch.inference_mode()
    def translate_notes(self, features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Note features ``[1, model.inputs, T]`` -> target log-mel ``[1, n_mels, T]``, in seamless chunks."""
        w = weights.to(features.device)
        step = stateless(lambda f, start_frame: self.model(f, w.expand(f.shape[0], -1))[1])
        return chunked(step, features, CHUNK_FRAMES, self.model.context_frames())

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def domain_weights(self, target: str, blend_with: str | None = None, blend: float = 0.0) -> torch.Tensor:
        """Mixture weights ``[1, n_domains]``: ``target`` alone, or ``(1-blend)*target + blend*blend_with``."""
        w = torch.zeros(1, len(self.domains))
        for name in [target] + ([blend_with] if blend_with else []):
            if name not in self.domains:
                raise StudioError(f"unknown target instrument {name!r}; available: {', '.join(self.domains)}.")
        if not 0.0 <= blend <= 1.0:
            raise StudioError(f"blend must be between 0 and 1, got {blend}.")
        w[0, self.domains.index(target)] += 1.0 - (blend if blend_with else 0.0)
        if blend_with:
            w[0, self.domains.index(blend_with)] += blend
        return w

    @torch.inference_mode()
    def translate_mel(self, mel: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[1, n_mels, T]`` -> target log-mel ``[1, n_mels, T]`` (any T), in seamless chunks (universal mode;
        the notes mode needs the audio: ``translator(audio, sr, target=...)``)."""
        n_mels = self.config.n_mels
        if not isinstance(mel, torch.Tensor) or mel.dim() != 3 or mel.shape[1] != n_mels or mel.shape[2] < 1:
            shape = list(mel.shape) if hasattr(mel, "shape") else type(mel).__name__
            raise ConfigMismatch(f"expected a log-mel tensor of shape [1, {self.config.n_mels}, frames], got {shape}.")
        if not torch.isfinite(mel).all():
            raise ConfigMismatch("the mel contains NaN or infinite values.")
        if self.mode == "notes":
            raise StudioError("this translator plays transcribed notes: give it audio, translator(audio, sr, target=...).")
        down = self.model.config.down
        T = mel.shape[-1]
        mel = pad_to_multiple(mel, down)
        w = weights.to(mel.device)
        step = stateless(lambda m, start_frame: self.model.decode(self.model.encode(m), w.expand(m.shape[0], -1)))
        out = chunked(step, mel, CHUNK_FRAMES, self.model.context_frames())
        return out[..., :T]

    def prepare(self, audio, sr: int | None = None, stem: str | None = None, demucs=None) -> np.ndarray:
        """Any file/array, rate and channel count -> mono float32 at the model's rate (optionally one Demucs stem)."""
        if isinstance(audio, (str, os.PathLike)):
            # decoded straight to the rate used next (Demucs: 44.1 kHz stereo), block by block
            audio, sr = load_audio(audio, self.sample_rate if stem is None else 44100, mono=stem is None)
        elif sr is None:
            raise ConfigMismatch("pass the sample rate with an audio array: translator(audio, sr, target=...).")
        if stem is not None:
            from ..separation import isolate_stem

            audio, sr = isolate_stem(audio, sr, stem, model=demucs)
        x, _ = prepare_audio(audio, sr, self.sample_rate)
        return x

    @torch.inference_mode()
    def __call__(self, audio, sr: int | None = None, target: str | None = None, *, blend_with: str | None = None,
                 blend: float = 0.0, stem: str | None = None, demucs=None,
                 match_level: bool = True, register: str = "fold") -> tuple[np.ndarray, int]:
        """``match_level``: bring the output to the input's loudness (active RMS, peak-limited); False returns the
        decoder's own level. ``register`` (notes mode): ``fold`` moves notes outside the target's range by octaves
        into it (as an arranger would); ``keep`` leaves them where they are, outside what the instrument plays."""
        if target is None:
            raise StudioError(f"choose a target instrument: {', '.join(self.domains)}.")
        check_register(register)
        weights = self.domain_weights(target, blend_with, blend)
        x = self.prepare(audio, sr, stem, demucs)
        dev = self.vocoder.device
        mel = self.vocoder.mel(torch.from_numpy(x).to(dev))
        if self.mode == "notes":
            lead = target if not blend_with or blend <= 0.5 else blend_with  # fold into the louder voice's range
            out_mel = self.translate_notes(self.note_features(self.transcribe(x), mel, lead, register), weights)
        else:
            out_mel = self.translate_mel(mel, weights)
        y = self.vocoder.vocode_long(out_mel, CHUNK_FRAMES)
        y = y.reshape(-1).float().cpu().numpy()
        y = np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]  # same duration as the input
        if match_level:
            y = _match_level(y, x, self.sample_rate)
        return y, self.sample_rate


_match_level = match_level  # ``Translator.__call__``'s keyword of the same name shadows it there
