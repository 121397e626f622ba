"""Inference API: ``Vocoder`` (MelGAN) and ``GriffinLim`` behind one interface: ``vocoder(mel) -> audio``."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import torch

from .. import registry
from ..audio import AudioConfig, MelSpectrogram
from ..config import from_dict, to_dict
from ..errors import ConfigMismatch
from ..nn import fold_weight_norm
from ..weights import load_weights, save_model
from .base import _MelToAudio
from .generator import Generator, GeneratorConfig
from .harmonic import HarmonicBank, HarmonicConfig, summed_context
from .spectral import SpectralConfig, SpectralGenerator

# Generator architectures by the name stored in a model's config.json ("architecture"; absent: the paper's).
ARCHITECTURES = {"melgan": (GeneratorConfig, Generator), "spectral": (SpectralConfig, SpectralGenerator)}


def architecture_of(config) -> str:
    for name, (cfg_cls, _) in ARCHITECTURES.items():
        if isinstance(config, cfg_cls):
            return name
    raise ConfigMismatch(f"no vocoder architecture takes a {type(config).__name__}; known: {', '.join(ARCHITECTURES)}.")


def read_config(d: dict, architecture: str | None = None) -> tuple:
    """A model folder's ``config`` -> (generator config, oscillator bank config or None). The bank's settings sit
    in the same mapping under ``harmonic`` (where they were when the bank lived inside the generator: one file
    layout for old and new folders)."""
    arch = architecture or "melgan"
    if arch not in ARCHITECTURES:
        raise ConfigMismatch(f"unknown vocoder architecture {arch!r}; known: {', '.join(ARCHITECTURES)}.")
    d = dict(d)
    bank = d.pop("harmonic", None)
    return from_dict(ARCHITECTURES[arch][0], d), (from_dict(HarmonicConfig, bank) if bank else None)


_BUILDING = threading.Lock()


def _version(t: torch.Tensor) -> int:
    """The tensor's in-place write counter (inference tensors have none: -1)."""
    try:
        return t._version
    except RuntimeError:
        return -1


class Vocoder(_MelToAudio):
    """MelGAN: log-mel ``[B, n_mels, frames]`` -> waveform ``[B, 1, frames * hop]``.

    The generator (``architecture``), and beside it, where ``harmonic`` is given, the oscillator bank (not in the
    paper; ``studio.vocoder.harmonic``) whose output is summed with the generator's: the one place they are
    composed. ``Vocoder.from_pretrained(name_or_dir)`` loads a trained model with weight norm folded, in eval mode.
    """

    def __init__(self, config: GeneratorConfig | SpectralConfig = GeneratorConfig(),
                 harmonic: HarmonicConfig | None = None):
        super().__init__()
        self.generator_config, self.harmonic_config = config, harmonic
        self.config = config.audio
        self.architecture = architecture_of(config)
        self.generator = ARCHITECTURES[self.architecture][1](config)
        self.harmonic = HarmonicBank(config.audio, harmonic) if harmonic else None
        self.mel = MelSpectrogram(config.audio)

    def forward(self, mel: torch.Tensor, start_frame: int = 0, phase: torch.Tensor | None = None) -> torch.Tensor:
        """``start_frame``: where ``mel`` starts in a longer signal (chunks; the oscillator bank and the spectral
        generator use it); ``phase``: the spectral generator's running phase at that frame."""
        mel = self._check_mel(mel).to(self.device)
        y = self.generator(mel, start_frame, phase)
        return y if self.harmonic is None else self.harmonic.add_to(y, mel, start_frame)

    def chunk(self, mel: torch.Tensor, window_start: int, keep_from: int, keep_to: int, state=None):
        """``studio.nn``'s chunk step: the audio of frames ``[keep_from, keep_to)`` of one window of a long signal
        and the generator's state for the next window (the bank has none: it runs on absolute time)."""
        mel = self._check_mel(mel).to(self.device)
        y, state = self.generator.chunk(mel, window_start, keep_from, keep_to, state)
        if self.harmonic is not None:
            y = self.harmonic.add_to(y, mel, window_start, keep_from=keep_from)
        return y, state

    def context_frames(self) -> tuple[int, int]:
        """Mel frames ``(left, right)`` that the samples of one frame depend on (the generator's and the bank's)."""
        return summed_context(self.generator, self.harmonic)

    def fold(self) -> "Vocoder":
        """Fold weight norm into plain weights (same output, faster) and switch to eval mode."""
        fold_weight_norm(self.generator)
        return self.eval()

    def inference(self):
        """The path every user-facing call runs (``vocode``, ``resynthesize``, ``vocode_long``, so the CLI, the
        pipelines and the app): ``self.fast("auto")``, i.e. the fastest mode that passes its quality check on this
        CPU, chunked on long inputs. Built on first use and rebuilt when the weights change (in place or
        replaced) or move; ``self(mel)`` stays the plain module (training, references)."""
        key = (self.device, tuple((p.data_ptr(), _version(p)) for p in self.parameters()))
        with _BUILDING:  # concurrent first requests (the app) build it once
            cached = self.__dict__.get("_inference")  # not a submodule: kept out of state_dict / .to()
            if cached is None or cached[0] != key:
                with torch.inference_mode(False):  # callers may be in inference mode; the copy must stay exportable
                    cached = self.__dict__["_inference"] = (key, self.fast("auto"))
        return cached[1]

    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """Mel ``[B, n_mels, frames]`` -> audio ``[B, 1, frames * hop]`` on the fast path (``inference``)."""
        mel = self._check_mel(mel)  # bad input fails before the fast path is built
        return self.inference()(mel)

    def fast(self, mode: str = "auto", *, threads: int | None = None, verify: bool | None = None,
             chunk_frames: int | None = None):
        """A faster ``mel -> audio`` callable with this interface (``studio.vocoder.fast``); ``self`` is unchanged."""
        from .fast import optimize

        return optimize(self, mode, threads=threads, verify=verify, chunk_frames=chunk_frames)

    def stream(self, mel_chunks, chunk_frames: int = 32, model=None):
        """Yield audio ``[B, 1, n * hop]`` as mel chunks arrive, seamlessly (``studio.vocoder.streaming``).

        ``model``: the callable to run (e.g. ``self`` for the plain module); default the fast path (``inference``).
        """
        from .streaming import StreamingVocoder

        yield from StreamingVocoder(model or self.inference(), chunk_frames).stream(mel_chunks)

    def vocode_long(self, mel, chunk_frames: int = 1024, model=None) -> torch.Tensor:
        """``self.vocode(mel)`` computed ``chunk_frames`` at a time, so memory stays bounded on long inputs.
        ``model``: the callable to run (e.g. ``self`` for the plain module); default the fast path."""
        from .streaming import vocode_long

        mel = self._check_mel(mel)  # bad input fails before the fast path is built
        return vocode_long(model or self.inference(), mel, chunk_frames)

    @classmethod
    def from_generator(cls, generator: Generator, harmonic: HarmonicBank | None = None) -> "Vocoder":
        """A vocoder holding copies of a trained ``generator`` (and oscillator bank)."""
        v = cls(generator.config, harmonic.config if harmonic is not None else None)
        v.load_file_state(file_state(generator, harmonic))
        return v

    def file_state(self) -> dict[str, torch.Tensor]:
        """The tensors of ``model.safetensors``: the generator's, the bank's under ``harmonic.``."""
        return file_state(self.generator, self.harmonic)

    def load_file_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load ``file_state``'s layout (strict: a missing or extra tensor is a RuntimeError)."""
        bank = {k[len(BANK):]: v for k, v in state.items() if k.startswith(BANK)}
        self.generator.load_state_dict({k: v for k, v in state.items() if not k.startswith(BANK)})
        if self.harmonic is not None:
            self.harmonic.load_state_dict(bank)
        elif bank:
            raise RuntimeError(f"Unexpected key(s) in state_dict: {', '.join(sorted(BANK + k for k in bank)[:3])}")

    def save_pretrained(self, folder: str | os.PathLike, card: str | None = None, half: bool = False) -> Path:
        """Write ``config.json``, ``model.safetensors`` (weight norm kept, so it can be fine-tuned) and a card."""
        config = to_dict(self.generator_config)
        if self.harmonic_config is not None:
            config["harmonic"] = to_dict(self.harmonic_config)
        return save_model(folder, self.file_state(), {"kind": "vocoder", "architecture": self.architecture,
                                                      "config": config}, card, half)

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike | None = None, *, fold: bool = True,
                        device: str | torch.device = "cpu") -> "Vocoder":
        entry = registry.resolve(name_or_dir or registry.DEFAULTS["vocoder"], kind="vocoder")
        v = cls(*read_config(entry.config, entry.architecture))
        try:
            v.load_file_state(load_weights(entry.weights))
        except RuntimeError as e:
            raise ConfigMismatch(f"{entry.weights} does not match its config ({str(e).splitlines()[0]}).") from None
        v.name = entry.name
        v = v.to(device)
        return v.fold() if fold else v.eval()


BANK = "harmonic."  # the oscillator bank's tensors in a model file


def file_state(generator: torch.nn.Module, harmonic: HarmonicBank | None = None) -> dict[str, torch.Tensor]:
    state = dict(generator.state_dict())
    if harmonic is not None:
        state.update({BANK + k: v for k, v in harmonic.state_dict().items()})
    return state


class GriffinLim(_MelToAudio):
    """Baseline: invert the mel filterbank (least squares), then Griffin-Lim phase recovery (32 iterations)."""

    def __init__(self, config: AudioConfig = AudioConfig(), n_iter: int = 32):
        super().__init__()
        self.config = config
        self.mel = MelSpectrogram(config)
        c = config
        import torchaudio

        self.griffin_lim = torchaudio.transforms.GriffinLim(c.n_fft, n_iter, c.win_length, c.hop_length, power=1.0)
        self.register_buffer("inverse_fbank", torch.linalg.pinv(self.mel.fbank), persistent=False)
        self.name = f"griffin-lim-{n_iter}"

    @torch.inference_mode()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        mel = self._check_mel(mel).to(self.device).float()
        c = self.config
        spec = torch.matmul(self.inverse_fbank, 10.0 ** mel).clamp(min=0.0)  # least squares, [B, n_freqs, frames]
        frames = mel.shape[-1]
        # GriffinLim frames are centred at t*hop; ours at t*hop + hop/2: shift by half a hop.
        shift = c.n_fft // 2 - (c.n_fft - c.hop_length) // 2
        with torch.random.fork_rng(devices=[]):  # its random initial phase, seeded: the baseline's figures repeat
            torch.manual_seed(0)
            y = self.griffin_lim(spec)
        y = torch.nn.functional.pad(y, (shift, 0))[..., : frames * c.hop_length]
        y = torch.nn.functional.pad(y, (0, frames * c.hop_length - y.shape[-1]))
        return y.unsqueeze(1).clamp(-1, 1)
