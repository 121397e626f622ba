"""The one source of truth for audio settings, the mel front-end, and audio file I/O.

Every model in the studio speaks the mel defined here (``AudioConfig`` is stored in each model's config and
checked on load), and nothing but this module reads or writes audio files.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import ConfigMismatch, UnsupportedAudio

# Inputs longer than this are refused by default (1 hour of 48 kHz float32 mono is ~690 MB before resampling).
DEFAULT_MAX_SECONDS = 30 * 60.0
# Headers beyond these are refused before decoding: 192 kHz is the highest common studio rate, 8 channels is 7.1.
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 8
# The decoded (downmixed, resampled) clip may take at most this much memory; checked from the header.
DEFAULT_MAX_DECODED_MB = 512.0


@dataclass(frozen=True)
class AudioConfig:
    """Sample rate and mel settings. Defaults are the MelGAN paper's (LJSpeech, 22.05 kHz).

    The log-mel is ``log10(max(mel_magnitude, log_floor))``, with a Slaney-normalised mel filterbank (librosa's
    default) applied to the STFT *magnitude*, frames centred by reflection padding of ``(n_fft - hop) / 2`` so that
    a clip of ``n`` samples gives exactly ``n // hop_length`` frames.
    """

    sample_rate: int = 22050  # Hz, e.g. 44100 (then give a hop length, and a MelGAN generator its ratios)
    n_fft: int = 1024
    hop_length: int = 256  # samples from one mel frame to the next
    win_length: int = 1024
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None  # None: Nyquist
    log_floor: float = 1e-5

    def __post_init__(self):
        if self.win_length > self.n_fft:
            raise ConfigMismatch(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft}).")
        if (self.n_fft - self.hop_length) % 2:
            raise ConfigMismatch(f"n_fft - hop_length must be even for centred frames, got {self.n_fft}, {self.hop_length}.")
        if self.f_max is not None and self.f_max > self.sample_rate / 2:
            raise ConfigMismatch(f"f_max {self.f_max} Hz is above Nyquist ({self.sample_rate / 2} Hz).")

    @property
    def fmax(self) -> float:
        return float(self.f_max) if self.f_max is not None else self.sample_rate / 2

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check_same(self, other: "AudioConfig", what: str = "model") -> None:
        """Raise ``ConfigMismatch`` unless ``other`` describes the same mel as ``self``."""
        if self != other:
            diff = {k: (v, getattr(other, k)) for k, v in self.to_dict().items() if getattr(other, k) != v}
            raise ConfigMismatch(f"{what} uses different audio settings {diff} (expected, found).")


# Filterbanks given for configs on machines without torchaudio (the GPU training script packs one with its data).
KNOWN_FILTERBANKS: dict[AudioConfig, torch.Tensor] = {}


def mel_filterbank(config: AudioConfig) -> torch.Tensor:
    """The Slaney mel filterbank ``[n_mels, n_fft // 2 + 1]`` of ``config`` (torchaudio's, or a packed copy)."""
    if config in KNOWN_FILTERBANKS:
        return KNOWN_FILTERBANKS[config].float().clone()
    import torchaudio.functional as AF

    c = config
    fb = AF.melscale_fbanks(c.n_fft // 2 + 1, c.f_min, c.fmax, c.n_mels, c.sample_rate, norm="slaney", mel_scale="slaney")
    return fb.T.contiguous()


class MelSpectrogram(nn.Module):
    """Waveform ``[B, T]`` or ``[B, 1, T]`` (float, [-1, 1]) -> log10 mel ``[B, n_mels, T // hop]``."""

    def __init__(self, config: AudioConfig = AudioConfig()):
        super().__init__()
        self.config = config
        c = config
        self.register_buffer("window", torch.hann_window(c.win_length), persistent=False)
        self.register_buffer("fbank", mel_filterbank(c), persistent=False)  # [n_mels, n_freqs]

    def stft(self, x: torch.Tensor) -> torch.Tensor:
        """The complex STFT ``[B, n_fft // 2 + 1, frames]`` behind the mel, with its framing (frame n = mel frame n)."""
        c = self.config
        if x.dim() == 3:
            x = x.squeeze(1)
        if x.dim() == 1:
            x = x.unsqueeze(0)
        pad = (c.n_fft - c.hop_length) // 2
        if x.shape[-1] <= pad:
            raise UnsupportedAudio(f"clip too short for a mel: {x.shape[-1]} samples; at least {pad + 1} needed.")
        x = nn.functional.pad(x.float().unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        return torch.stft(x, c.n_fft, c.hop_length, c.win_length, self.window, center=False, return_complex=True)

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """Linear mel magnitude ``[B, n_mels, frames]`` (before the log)."""
        return torch.matmul(self.fbank, self.stft(x).abs())

    def log(self, magnitude: torch.Tensor) -> torch.Tensor:
        """The log-mel of a linear mel magnitude (``magnitude``'s output)."""
        return torch.log10(torch.clamp(magnitude, min=self.config.log_floor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log(self.magnitude(x))


# ----------------------------------------------------------------------------------------------------------- I/O

ACCEPTED = "accepted: WAV, FLAC, OGG, MP3, AIFF and the other formats libsndfile reads"

# WAV codecs (the fmt chunk's format tag) libsndfile decodes, and names for common ones it does not.
_WAV_CODECS = {0x0001: "PCM", 0x0002: "MS ADPCM", 0x0003: "IEEE float", 0x0006: "A-law", 0x0007: "mu-law",
               0x0011: "IMA ADPCM", 0x0031: "GSM 6.10", 0x0045: "G.721 ADPCM", 0x0055: "MPEG Layer 3"}
_WAV_UNSUPPORTED = {0x0050: "MPEG", 0x0092: "Dolby AC-3 SPDIF", 0x00FF: "AAC", 0x0160: "WMA", 0x0161: "WMA",
                    0x0162: "WMA Pro", 0x0163: "WMA Lossless", 0x1610: "AAC", 0x2000: "AC-3", 0x2001: "DTS"}
_READ_BLOCK = 1 << 18  # frames decoded at a time: memory stays ~ the (downmixed) output, not the file's channels


def _describe(path: Path) -> str:
    return f"'{path.name}'"


def _libsndfile_reason(e: Exception) -> str:
    """libsndfile's message, first line, without the ``Error opening '<full path>': `` prefix."""
    msg = str(e).splitlines()[0].strip() if str(e) else type(e).__name__
    if msg.startswith("Error opening") and "': " in msg:
        msg = msg.split("': ", 1)[1]
    return msg.rstrip(".")


def _sniff(path: Path) -> str | None:
    """A precise reason for files libsndfile cannot open but that we can recognise from their first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if head[4:8] == b"ftyp":
        return f"is an MP4/M4A (AAC or ALAC) file, which is not supported; convert it first ({ACCEPTED})"
    if head[:4] == b"\x1aE\xdf\xa3":
        return f"is a Matroska/WebM file, which is not supported; convert it first ({ACCEPTED})"
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        pos = 12
        while pos + 8 <= len(head):
            cid, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
            if cid == b"fmt " and pos + 10 <= len(head):
                tag = int.from_bytes(head[pos + 8:pos + 10], "little")
                if tag == 0xFFFE and pos + 8 + 26 <= len(head):  # WAVE_FORMAT_EXTENSIBLE: the sub-format's tag
                    tag = int.from_bytes(head[pos + 8 + 24:pos + 8 + 26], "little")
                if tag not in _WAV_CODECS:
                    name = _WAV_UNSUPPORTED.get(tag, "unknown")
                    return (f"is a WAV file with an unsupported codec (format tag 0x{tag:04X}, {name}); accepted WAV "
                            f"codecs: PCM (8/16/24/32-bit), IEEE float, A-law, mu-law, IMA/MS ADPCM, GSM 6.10")
                return None
            pos += 8 + size + (size & 1)
    return None


def audio_info(path: str | os.PathLike):
    """soundfile's header info, with our errors for missing, empty and unreadable files."""
    path = Path(path)
    if not path.exists():
        raise UnsupportedAudio(f"no such file: {path}; give the path of an audio file.")
    if path.is_dir():
        raise UnsupportedAudio(f"{path} is a directory, not an audio file; give the path of one file ({ACCEPTED}).")
    if not path.is_file():  # a FIFO or device would block or never end
        raise UnsupportedAudio(f"{path} is not a regular file; give the path of an audio file ({ACCEPTED}).")
    if path.stat().st_size == 0:
        raise UnsupportedAudio(f"{_describe(path)} is empty (0 bytes); {ACCEPTED}.")
    import soundfile as sf

    try:
        return sf.info(str(path))
    except Exception as e:  # libsndfile's messages are terse; name the accepted formats
        sniffed = _sniff(path)
        if sniffed:
            raise UnsupportedAudio(f"{_describe(path)} {sniffed}.") from None
        raise UnsupportedAudio(
            f"{_describe(path)} is not a readable audio file ({_libsndfile_reason(e)}); {ACCEPTED}."
        ) from None


def _read(path: Path, mono: bool, sample_rate: int | None, max_frames: float) -> tuple[np.ndarray, int]:
    """Decode ``path`` block by block to float32 ``[C, T]`` (``C`` = 1 when ``mono``), resampled to ``sample_rate``.

    Only one block of the file's channels at its own rate is in memory at a time: a small file that decodes to
    gigabytes (many channels, a high rate, long silence) costs no more than its downmixed, resampled output.
    Decoding stops with ``UnsupportedAudio`` past ``max_frames`` input frames, whatever the header claimed.
    """
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        sr, channels = f.samplerate, f.channels
        out_sr = sample_rate or sr
        resampler = None
        if out_sr != sr:
            import soxr  # streaming resampler: block by block, same output as resampling the whole clip

            resampler = soxr.ResampleStream(sr, out_sr, 1 if mono else channels, dtype="float32", quality="HQ")
        out = np.empty((1 if mono else channels, max(int(math.ceil(f.frames * out_sr / sr)), 0) + 16), np.float32)
        pos = read = 0

        def put(block: np.ndarray) -> None:  # [n, C]
            nonlocal out, pos
            n = len(block)
            if pos + n > out.shape[1]:  # more than the header said (rare): grow
                size = max(pos + n, out.shape[1] + out.shape[1] // 4 + 1)
                out = np.concatenate([out[:, :pos], np.empty((out.shape[0], size - pos), np.float32)], axis=1)
            out[:, pos:pos + n] = block.T
            pos += n

        for block in f.blocks(blocksize=_READ_BLOCK, dtype="float32", always_2d=True):
            read += len(block)
            if read > max_frames:
                raise UnsupportedAudio(f"{_describe(path)} decodes to more than its header says, past the "
                                       f"{_minutes(max_frames / sr)} limit (trim or split it).")
            block = block.mean(axis=1, keepdims=True) if mono and channels > 1 else block
            put(resampler.resample_chunk(block) if resampler else block)
        if resampler:
            put(resampler.resample_chunk(np.zeros((0, out.shape[0]), np.float32), last=True))
            # ceil(n * out / in) samples, as resampling the whole clip gives (soxr may round the other way)
            n = int(math.ceil(read * out_sr / sr))
            put(np.zeros((max(n - pos, 0), out.shape[0]), np.float32))
            pos = n
    return out[:, :pos], out_sr


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    *,
    mono: bool = True,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    min_samples: int = 1024,
    max_decoded_mb: float | None = DEFAULT_MAX_DECODED_MB,
) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 in [-1, 1].

    Returns ``(audio, sr)``: ``audio`` is ``[T]`` when ``mono`` (channels averaged) else ``[C, T]``; resampled to
    ``sample_rate`` when given. Raises ``UnsupportedAudio`` with a one-line reason for anything unusable. A file
    cut short (its header claims more data than it holds) gives the samples it does hold. From the header, before
    anything is decoded, files are refused that are longer than ``max_seconds``, above ``MAX_SAMPLE_RATE`` or
    ``MAX_CHANNELS``, or whose decoded output (after the downmix and resampling, which run block by block) would
    take more than ``max_decoded_mb``; so memory stays about that of the output, whatever the file.
    """
    path = Path(path)
    info = audio_info(path)
    if info.samplerate <= 0 or info.channels <= 0:
        raise UnsupportedAudio(f"{_describe(path)} has an invalid header ({info.samplerate} Hz, {info.channels} channels).")
    if info.samplerate > MAX_SAMPLE_RATE:
        raise UnsupportedAudio(f"{_describe(path)} has a sample rate of {info.samplerate} Hz; accepted: up to "
                               f"{MAX_SAMPLE_RATE} Hz.")
    if info.channels > MAX_CHANNELS:
        raise UnsupportedAudio(f"{_describe(path)} has {info.channels} channels; accepted: up to {MAX_CHANNELS}.")
    seconds = info.frames / info.samplerate
    if max_seconds is not None and seconds > max_seconds:
        raise UnsupportedAudio(
            f"{_describe(path)} is {_minutes(seconds)} long; the limit is "
            f"{_minutes(max_seconds)} (accepted: clips up to that length; trim or split it)."
        )
    out_mb = seconds * (sample_rate or info.samplerate) * (1 if mono else info.channels) * 4 / 2**20
    if max_decoded_mb is not None and out_mb > max_decoded_mb:
        raise UnsupportedAudio(
            f"{_describe(path)} ({info.channels} channels, {info.samplerate} Hz, {_minutes(seconds)}) would decode to "
            f"{out_mb:.0f} MB; the limit is {max_decoded_mb:.0f} MB (accepted: fewer channels, a lower rate or a "
            f"shorter clip)."
        )
    max_frames = max_seconds * info.samplerate if max_seconds is not None else math.inf
    if max_decoded_mb is not None:
        max_frames = min(max_frames, max_decoded_mb * 2**20 / 4 / (1 if mono else info.channels)
                         * info.samplerate / (sample_rate or info.samplerate))
    try:
        data, sr = _read(path, mono, sample_rate, max_frames * 1.01 + _READ_BLOCK)
    except UnsupportedAudio:
        raise
    except Exception as e:
        raise UnsupportedAudio(
            f"{_describe(path)} could not be decoded ({_libsndfile_reason(e)}); {ACCEPTED}."
        ) from None
    return prepare_audio(data, sr, sample_rate, mono=mono, min_samples=min_samples, name=_describe(path))


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def read_segment(path: Path, start: int, length: int, file_sr: int, sample_rate: int) -> np.ndarray:
    """``length`` samples at ``sample_rate`` from ``start`` (in target-rate samples), mono, zero-padded at the end: a
    window of a dataset's file (trusted, already checked by its recipe), read without decoding the rest."""
    import soundfile as sf
    import torchaudio.functional as AF

    scale = file_sr / sample_rate
    n_file = int(np.ceil(length * scale))
    x, _ = sf.read(str(path), start=int(start * scale), frames=n_file, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if file_sr != sample_rate:
        x = AF.resample(torch.from_numpy(x), file_sr, sample_rate).numpy()
    if len(x) < length:
        x = np.pad(x, (0, length - len(x)))
    return x[:length]


def prepare_audio(
    audio: np.ndarray | torch.Tensor,
    sr: int,
    sample_rate: int | None = None,
    *,
    mono: bool = True,
    min_samples: int = 1024,
    name: str = "the audio",
) -> tuple[np.ndarray, int]:
    """Validate, downmix and resample an in-memory clip ``[T]`` or ``[C, T]``; same contract as ``load_audio``."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    audio = np.asarray(audio)
    if audio.dtype.kind not in "fiu":
        raise UnsupportedAudio(f"{name} has dtype {audio.dtype}; accepted: float or integer samples.")
    if audio.dtype.kind in "iu":  # integer PCM -> [-1, 1]
        audio = audio.astype(np.float32) / float(np.iinfo(audio.dtype).max)
    audio = audio.astype(np.float32, copy=False)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2:
        raise UnsupportedAudio(f"{name} has shape {audio.shape}; accepted: [samples] or [channels, samples].")
    if not isinstance(sr, (int, np.integer)) or sr < 1000 or sr > 768000:
        raise UnsupportedAudio(f"{name} has sample rate {sr!r}; accepted: 1000 to 768000 Hz.")
    needed = max(min_samples, 1)
    if audio.shape[1] < needed * sr / (sample_rate or sr):
        n = audio.shape[1]
        what = "has no samples" if n == 0 else f"is too short ({n} sample{'s' * (n != 1)} at {sr} Hz)"
        raise UnsupportedAudio(
            f"{name} {what}; at least {needed} samples at {sample_rate or sr} Hz "
            f"({needed / (sample_rate or sr):.3g} s) are needed."
        )
    if not np.isfinite(audio).all():
        raise UnsupportedAudio(f"{name} contains NaN or infinite samples; accepted: finite samples "
                               f"(float files may exceed full scale, they are scaled to [-1, 1]).")
    if mono:
        audio = audio.mean(axis=0, keepdims=True)
    peak = float(np.abs(audio).max())
    if peak > 1.0:  # float files may exceed full scale; keep the waveform's shape
        audio = audio / peak
    if sample_rate is not None and sr != sample_rate:
        import torchaudio.functional as AF

        audio = AF.resample(torch.from_numpy(np.ascontiguousarray(audio)), sr, sample_rate).numpy()
        sr = sample_rate
    audio = np.ascontiguousarray(audio[0] if mono else audio)
    return audio, int(sr)


def rms_dbfs(audio: np.ndarray) -> float:
    """The clip's RMS level in dBFS (an empty clip reads as silence, -240)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if np.size(audio) else 0.0
    return float(20 * np.log10(rms + 1e-12))


def is_silent(audio: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True when the clip's RMS is below ``threshold_db`` dBFS."""
    return rms_dbfs(audio) <= threshold_db


def save_audio(path: str | os.PathLike, audio: np.ndarray | torch.Tensor, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write ``[T]`` or ``[C, T]`` float audio atomically (a temp file in the same folder, then a rename)."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().float().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.T
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower())
    if fmt is None:
        raise UnsupportedAudio(f"cannot write '{path.suffix}' files; accepted: .wav, .flac, .ogg.")
    if fmt == "OGG":
        subtype = "VORBIS"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        import soundfile as sf

        sf.write(tmp, np.clip(audio, -1.0, 1.0), sample_rate, format=fmt, subtype=subtype)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def audio_input(audio: str | os.PathLike | np.ndarray | torch.Tensor, sr: int | None, sample_rate: int, *,
                missing_sr: str) -> np.ndarray:
    """What every model takes: a file (``load_audio``) or an array at ``sr`` (``prepare_audio``) -> mono float32
    ``[T]`` at ``sample_rate``. An array without its rate is a ``ConfigMismatch`` saying ``missing_sr``."""
    if isinstance(audio, (str, os.PathLike)):
        return load_audio(audio, sample_rate)[0]
    if sr is None:
        raise ConfigMismatch(missing_sr)
    return prepare_audio(audio, sr, sample_rate)[0]
