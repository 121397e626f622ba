"""The vocoder's training task for the shared loop: hinge GAN + feature matching (+ optional MR-STFT)."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..audio import MelSpectrogram
from ..config import setting, to_dict
from ..data import fixed_clips
from ..errors import StudioError
from ..metrics import MultiResolutionSTFTLoss, frame_locked, mel_l1_batch
from ..train.loop import Task
from .discriminator import DiscriminatorConfig, MultiScaleDiscriminator
from .generator import Generator, GeneratorConfig
from .harmonic import HarmonicBank, HarmonicConfig
from .losses import discriminator_hinge, feature_matching, generator_hinge
from .model import Vocoder
from .spectral import SpectralConfig, SpectralGenerator, spectral_losses, stft_targets


def _fft_sizes(sizes) -> tuple[tuple[int, int, int], ...]:
    """``--stft-resolutions 512 1024``: FFT sizes -> (n_fft, hop N/4, window N)."""
    return tuple((n, n // 4, n) for n in sizes)


@dataclass
class VocoderTrainConfig:
    """Paper defaults (Sec. 3 / official code): Adam 1e-4 (0.5, 0.9), segments of 8192, lambda_fm 10, gain 0.3-1.
    The help of each field is its ``studio train vocoder`` flag's."""

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    # Not in the paper: the oscillator bank beside the generator (``studio.vocoder.harmonic``; flag --harmonic)
    harmonic: HarmonicConfig | None = None
    segment_length: int = 8192  # samples per training segment (paper: 8192)
    lr: float = 1e-4  # Adam learning rate (paper: 1e-4)
    betas: tuple[float, float] = (0.5, 0.9)  # Adam betas (paper: 0.5 0.9)
    lambda_fm: float = 10.0  # weight of the feature-matching loss (paper: 10)
    # weight of the auxiliary MR-STFT loss (paper: 0); off in the paper, a big help on a CPU
    lambda_stft: float = 0.0
    lambda_mel: float = 0.0  # weight of the auxiliary log10-mel L1 loss, as in HiFi-GAN (paper: 0)
    gain: tuple[float, float] = (0.3, 1.0)  # augmentation: random gain in this range (paper: 0.3 1)
    # STFT-only warm-up steps before the GAN losses (needs an auxiliary loss above 0)
    adversarial_from: int = 0
    # weight of the frame-locked error (``metrics.frame_locked`` of y - x re x): against the hop-rate buzz that
    # magnitude losses let through (reconstruction-only training falls into it) (paper: 0)
    lambda_sync: float = 0.0
    # Augmentation toward real recordings (renders are solo and noiseless). Off in the paper.
    mix_prob: float = setting(0.0, "augmentation: probability of adding another segment of the batch (ensembles)")
    noise_db: tuple[float, float] | None = setting(
        None, "augmentation: white noise at a level in [LO, HI] dB re the segment's peak (a recording's noise "
              "floor), e.g. -80 -50", metavar=("LO", "HI"))
    # Oscillator bank (``harmonic``): the first ``harmonic_steps`` steps train the bank
    # alone on the auxiliary losses, at ``harmonic_lr`` (the generator's output would otherwise hide what the bank
    # adds: its comb already fills the spectral envelope, so in a sum the bank is only ever pushed down); after
    # them the bank is frozen and the generator learns around it.
    harmonic_steps: int = setting(0, "first train the oscillator bank alone for this many steps, then freeze it")
    harmonic_lr: float = setting(1e-3, "the bank's learning rate in its warm-up")
    # In the bank's warm-up, noise from white to brown (``colored_noise``) at a level in this range (dB re the
    # segment's peak) is added to its input only, the target staying clean: a recording's hiss and rumble in the mel
    # must not light oscillators
    harmonic_noise_db: tuple[float, float] | None = setting(
        None, "warm-up: noise at [LO, HI] dB re peak in the bank's input only (target clean), e.g. -60 -30",
        metavar=("LO", "HI"))
    # (n_fft, hop, win) of the auxiliary MR-STFT loss; a 4096 window tells neighbouring semitones apart in the bass
    stft_resolutions: tuple[tuple[int, int, int], ...] = setting(
        ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048)),
        "FFT sizes of the MR-STFT loss (hop N/4, window N)", flag={"type": int, "nargs": "+", "metavar": "N_FFT"},
        parse=_fft_sizes)

    @staticmethod
    def upgrade(d: dict) -> dict:
        """Older configs (checkpoints, --config files) held the bank inside the generator: ``generator.harmonic``."""
        gen = d.get("generator")
        if isinstance(gen, dict) and "harmonic" in gen:
            gen = dict(gen)
            d = {**d, "generator": gen, "harmonic": gen.pop("harmonic")}
        return d


def augment(x: torch.Tensor, cfg: VocoderTrainConfig) -> torch.Tensor:
    """Random gain (paper), then the optional mixing and noise of ``cfg``, for a batch ``[B, 1, T]``; the peak of
    each segment stays that of its gain-scaled original."""
    n = x.shape[0]
    new = lambda: torch.empty(n, 1, 1, device=x.device)
    x = x * new().uniform_(*cfg.gain)
    peak = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-4)
    if cfg.mix_prob > 0 and n > 1:
        mixed = x + x.roll(1, dims=0) * new().uniform_(0.3, 1.0) * (new().uniform_() < cfg.mix_prob)
        x = mixed * peak / mixed.abs().amax(dim=-1, keepdim=True).clamp(min=1e-4)
    if cfg.noise_db is not None:
        level = 10 ** (new().uniform_(*cfg.noise_db) / 20) * peak
        x = (x + torch.randn_like(x) * level).clamp(-1, 1)
    return x


def colored_noise(x: torch.Tensor, level_db: tuple[float, float]) -> torch.Tensor:
    """Noise like ``x`` ``[B, 1, T]`` with a power spectrum ~ 1/f^alpha, alpha drawn in [0, 2] per segment (white
    to brown: a room's rumble and hiss), at a level drawn in ``level_db`` (dB re each segment's peak, as RMS)."""
    n = x.shape[0]
    spec = torch.fft.rfft(torch.randn_like(x), dim=-1)
    f = torch.arange(spec.shape[-1], device=x.device).clamp(min=1).float()
    alpha = torch.empty(n, 1, 1, device=x.device).uniform_(0.0, 2.0)
    noise = torch.fft.irfft(spec * f ** (-alpha / 2), n=x.shape[-1], dim=-1)
    noise = noise / noise.square().mean(-1, keepdim=True).sqrt().clamp(min=1e-12)
    peak = x.abs().amax(dim=-1, keepdim=True)
    return noise * peak * 10 ** (torch.empty(n, 1, 1, device=x.device).uniform_(*level_db) / 20)


@contextmanager
def frozen(module: torch.nn.Module, on: bool = True):
    """Build the graph of the forward inside without gradients for ``module``'s parameters."""
    flags = [p.requires_grad for p in module.parameters()] if on else []
    if on:
        module.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


class VocoderValidation:
    """What both vocoder tasks share: log-mel L1 of held-out clips, TensorBoard samples, the exported model folder.
    Needs ``nets["generator"]`` (and ``nets["harmonic"]`` where there is a bank), ``mel``, ``val``, ``audio``,
    ``device`` and ``_to(device)``."""

    # Checkpoints from before the bank sat beside the generator hold it inside: read them where it is now.
    checkpoint_renames = {"model/generator/harmonic.": "model/harmonic/"}

    def synthesize(self, mel: torch.Tensor, phase: torch.Tensor | None = None, nets: dict | None = None):
        """The generator's audio for ``mel`` plus the bank's, where there is one: what ``Vocoder`` computes.
        ``nets``: default the plain modules (``self.run`` for the training step's)."""
        nets = self.nets if nets is None else nets
        y = nets["generator"](mel)
        return y if "harmonic" not in nets else self.nets["harmonic"].add_to(y, mel, phase=phase, run=nets["harmonic"])

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        if not self.val:
            return {}
        self._to(self.device)
        dists = []
        for clip in self.val:
            x = torch.from_numpy(clip["audio"]).to(self.device)[None, None]
            dists.append(mel_l1_batch(x, self.synthesize(self.mel(x)), self.mel).item())
        return {"mel_l1": float(np.mean(dists))}

    @torch.no_grad()
    def samples(self) -> dict:
        self._to(self.device)
        out = {}
        for i, clip in enumerate(self.val[:2]):
            x = torch.from_numpy(clip["audio"]).to(self.device)[None, None]
            out[f"{clip['domain']}_{i}"] = (self.synthesize(self.mel(x))[0, 0].cpu().numpy(), self.audio.sample_rate)
        return out

    def export(self, folder: Path) -> None:
        Vocoder.from_generator(self.nets["generator"], self.nets.get("harmonic")).save_pretrained(folder)


class VocoderTask(VocoderValidation, Task):
    name = "vocoder"

    def __init__(self, cfg: VocoderTrainConfig, val_root=None, val_clips: int = 4, val_seconds: float = 3.0,
                 fast: bool = True):
        """``fast``: the studio's step (D frozen in the G step, G channels-last and D's strided convs as stride-1
        convs on a CPU, fused Adam); the same losses and updates as the textbook step (``fast=False``, the
        benchmark's reference) up to float rounding."""
        super().__init__()
        self.freeze_d = self.cpu_channels_last = fast
        if cfg.adversarial_from > 0 and cfg.lambda_stft <= 0 and cfg.lambda_mel <= 0 and cfg.lambda_sync <= 0:
            raise StudioError("--adversarial-from needs --lambda-stft, --lambda-mel or --lambda-sync above 0 (config: "
                              "adversarial_from, lambda_*): the generator needs a loss before the GAN losses start.")
        if cfg.harmonic_steps > 0 and (cfg.harmonic is None or (cfg.lambda_stft <= 0 and cfg.lambda_mel <= 0)):
            raise StudioError("--harmonic-steps needs --harmonic (config: harmonic) and --lambda-stft or "
                              "--lambda-mel above 0: the bank learns from the auxiliary losses.")
        self.cfg = cfg
        self.audio = cfg.generator.audio
        self.nets = {"generator": Generator(cfg.generator), "discriminator": MultiScaleDiscriminator(cfg.discriminator)}
        groups = [{"params": list(self.nets["generator"].parameters())}]
        if cfg.harmonic is not None:  # beside the generator, as in ``Vocoder``; one optimizer for both
            self.nets["harmonic"] = HarmonicBank(self.audio, cfg.harmonic)
            groups.append({"params": list(self.nets["harmonic"].parameters()), "lr": cfg.harmonic_lr,
                           "name": "harmonic"})
        fused = True if fast else None  # one kernel for all parameters: measured 5x faster than the per-tensor loop
        self.opts = {
            "generator": torch.optim.Adam(groups, cfg.lr, betas=cfg.betas, fused=fused),
            "discriminator": torch.optim.Adam(self.nets["discriminator"].parameters(), cfg.lr, betas=cfg.betas,
                                              fused=fused),
        }
        self.mel = MelSpectrogram(self.audio)
        self.stft = MultiResolutionSTFTLoss(cfg.stft_resolutions)
        self.val = fixed_clips(val_root, self.audio, "valid", val_clips, val_seconds) if val_root else []

    def _to(self, device):
        self.mel.to(device)
        self.stft.to(device)
        on_cpu = self.cpu_channels_last and device.type == "cpu"
        self.nets["generator"].channels_last = self.nets["discriminator"].space_to_depth = on_cpu

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        cfg, dev = self.cfg, self.device
        self._to(dev)
        D = self.run["discriminator"]
        if step < cfg.harmonic_steps:
            return self._harmonic_step(batch["audio"].to(dev))
        x = augment(batch["audio"].to(dev), cfg)
        with torch.no_grad():
            mel = self.mel(x)
        self._set_harmonic_lr(0.0 if cfg.harmonic_steps > 0 else cfg.harmonic_lr)
        adversarial = step >= cfg.adversarial_from
        logs = {}
        with self.autocast():
            y = self.synthesize(mel, self._random_phase(len(x)), self.run)
        if adversarial:  # discriminator step, real and fake in one forward (one DDP forward per backward)
            with self.autocast():
                feats = D(torch.cat([x, y.detach()]))
            real = [[f[: len(x)] for f in scale] for scale in feats]
            fake = [[f[len(x):] for f in scale] for scale in feats]
            loss_d = discriminator_hinge(real, fake)
            self.opts["discriminator"].zero_grad(set_to_none=True)
            loss_d.backward()
            self.opts["discriminator"].step()
            logs["loss_d"] = loss_d.item()
        loss_g = torch.zeros((), device=dev)
        if adversarial:
            # The G step needs D's input gradients only: with D's weights frozen for this forward, backward skips
            # its weight gradients (about a fifth of a step), and the plain module (not DDP) reduces nothing.
            D_g = self.nets["discriminator"] if self.freeze_d else D
            with self.autocast(), frozen(D_g, self.freeze_d):
                fake = D_g(y)
            adv = generator_hinge(fake)
            fm = feature_matching(real, fake)
            loss_g = loss_g + adv + cfg.lambda_fm * fm
            logs.update(loss_g_adv=adv.item(), loss_fm=fm.item())
        if cfg.lambda_stft > 0:
            st = self.stft(y.float(), x)
            loss_g = loss_g + cfg.lambda_stft * st
            logs["loss_stft"] = st.item()
        if cfg.lambda_sync > 0:
            n = cfg.segment_length // self.audio.hop_length
            sync = frame_locked(y.float() - x, self.audio.hop_length, n, ref=x).mean()
            loss_g = loss_g + cfg.lambda_sync * sync
            logs["loss_sync"] = sync.item()
        with torch.set_grad_enabled(cfg.lambda_mel > 0):  # otherwise only logged: no graph for it
            mel_dist = mel_l1_batch(x, y.float(), self.mel).mean()
        if cfg.lambda_mel > 0:
            loss_g = loss_g + cfg.lambda_mel * mel_dist
        self.opts["generator"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.opts["generator"].step()
        logs["mel_l1"] = mel_dist.item()
        return logs

    def _random_phase(self, n: int) -> torch.Tensor | None:
        """Random oscillator phases ``[n, K]`` (a training segment has no absolute time), or None without a bank."""
        bank = self.nets.get("harmonic")
        if bank is None:
            return None
        return torch.rand(n, bank.size, dtype=torch.float64, device=self.device) * (2 * math.pi)

    def _set_harmonic_lr(self, lr: float) -> None:
        for group in self.opts["generator"].param_groups:
            if group.get("name") == "harmonic":
                group["lr"] = lr

    def _harmonic_step(self, x: torch.Tensor) -> dict[str, float]:
        """Warm-up of the oscillator bank alone: its output against the segment's band, auxiliary losses only.
        The target is never noised (``noise_db`` is for the generator); ``harmonic_noise_db`` noises the input."""
        if self.run["harmonic"] is not self.nets["harmonic"]:
            raise RuntimeError("the oscillator-bank warm-up (harmonic_steps) runs in one process: run those steps "
                               "without torchrun, then resume with it.")
        cfg = self.cfg
        self._set_harmonic_lr(cfg.harmonic_lr)
        bank = self.nets["harmonic"]
        x = augment(x, replace(cfg, noise_db=None))
        with torch.no_grad():
            mel = self.mel(x if cfg.harmonic_noise_db is None else x + colored_noise(x, cfg.harmonic_noise_db))
        y = bank(mel, phase=self._random_phase(len(x)))
        # The target is the segment below the bank's top pitch (a brick-wall low-pass half a semitone above it):
        # against the full band, the top oscillator would soak up the energy above it as one loud line.
        top = bank.top_hz * 2 ** (1 / 24) / self.audio.sample_rate  # cycles per sample
        spec = torch.fft.rfft(x, dim=-1)
        spec[..., int(top * x.shape[-1]) + 1:] = 0
        x = torch.fft.irfft(spec, n=x.shape[-1], dim=-1)
        st = self.stft(y, x)
        mel_dist = mel_l1_batch(x, y, self.mel).mean()
        loss = cfg.lambda_stft * st + cfg.lambda_mel * mel_dist
        self.opts["generator"].zero_grad(set_to_none=True)
        loss.backward()
        self.opts["generator"].step()
        return {"loss_stft": st.item(), "mel_l1": mel_dist.item()}

    def state_extra(self) -> dict:
        return {"task": self.name, "config": to_dict(self.cfg)}



@dataclass
class SpectralTrainConfig:
    """The spectral generator (``studio.vocoder.spectral``; not in the paper): frame-rate regression of the STFT's
    log-magnitude and phase advance of each training segment (no waveform, no discriminator in the loop). AdamW
    with a linear warm-up and a half-life decay, both functions of the step (exact resume)."""

    generator: SpectralConfig = field(default_factory=SpectralConfig)
    segment_length: int = 16384  # samples per training segment
    lr: float = 5e-4  # AdamW peak learning rate
    betas: tuple[float, float] = (0.8, 0.99)  # AdamW betas
    weight_decay: float = 0.01  # AdamW weight decay
    warmup_steps: int = 300  # steps of linear learning-rate warm-up
    lr_half_life: int = 20_000  # steps over which the learning rate halves
    lambda_log_mag: float = 1.0  # weight of the log-magnitude loss
    lambda_sc: float = 1.0  # weight of the spectral-convergence loss
    lambda_phase: float = 1.0  # weight of the phase-advance loss
    gain: tuple[float, float] = (0.3, 1.0)  # augmentation: random gain in this range
    mix_prob: float = 0.0  # augmentation: probability of adding another segment of the batch
    noise_db: tuple[float, float] | None = None  # augmentation: white noise in [LO, HI] dB re the segment's peak
    # With this probability a segment is band-limited (brick wall at a cutoff drawn in ``lowpass_hz``) before both
    # its mel and its targets are computed: many real recordings stop at 8 kHz (16 kHz files, lossy codecs), and
    # the vocoder should reproduce them as they are instead of meeting a mel it never saw.
    lowpass_prob: float = 0.0
    lowpass_hz: tuple[float, float] = (3500.0, 11025.0)


def band_limit(x: torch.Tensor, prob: float, hz: tuple[float, float], sample_rate: int) -> torch.Tensor:
    """Each segment of ``x`` ``[B, 1, T]`` low-passed (brick wall, FFT) with probability ``prob`` at a random cutoff."""
    if prob <= 0:
        return x
    n = x.shape[0]
    cut = torch.empty(n, 1, 1, device=x.device).uniform_(*hz)
    cut = torch.where(torch.rand(n, 1, 1, device=x.device) < prob, cut, torch.full_like(cut, sample_rate))
    spec = torch.fft.rfft(x, dim=-1)
    f = torch.fft.rfftfreq(x.shape[-1], 1 / sample_rate).to(x.device)
    return torch.fft.irfft(spec * (f <= cut), n=x.shape[-1], dim=-1)


class SpectralVocoderTask(VocoderValidation, Task):
    name = "vocoder"

    def __init__(self, cfg: SpectralTrainConfig, val_root=None, val_clips: int = 4, val_seconds: float = 3.0):
        super().__init__()
        self.cfg = cfg
        self.audio = cfg.generator.audio
        self.nets = {"generator": SpectralGenerator(cfg.generator)}
        self.opts = {"generator": torch.optim.AdamW(self.nets["generator"].parameters(), cfg.lr, betas=cfg.betas,
                                                    weight_decay=cfg.weight_decay, fused=True)}
        self.mel = MelSpectrogram(self.audio)
        self.val = fixed_clips(val_root, self.audio, "valid", val_clips, val_seconds) if val_root else []

    def lr_at(self, step: int) -> float:
        c = self.cfg
        return c.lr * min(1.0, (step + 1) / max(1, c.warmup_steps)) * 0.5 ** (step / max(1, c.lr_half_life))

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        cfg, dev = self.cfg, self.device
        self._to(dev)
        x = augment(batch["audio"].to(dev), cfg)
        x = band_limit(x, cfg.lowpass_prob, cfg.lowpass_hz, self.audio.sample_rate)
        with torch.no_grad():  # one STFT gives the mel and the targets
            mag, true_dev = stft_targets(self.mel.stft(x))
            mel = self.mel.log(self.mel.fbank @ mag)
        with self.autocast():
            logmag, d = self.run["generator"](mel, predict_only=True)
        losses = spectral_losses(logmag.float(), d.float(), mag, true_dev)
        loss = cfg.lambda_log_mag * losses["log_mag"] + cfg.lambda_sc * losses["spectral_convergence"] \
            + cfg.lambda_phase * losses["phase_advance"]
        for group in self.opts["generator"].param_groups:
            group["lr"] = self.lr_at(step)
        self.opts["generator"].zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.nets["generator"].parameters(), 10.0)
        self.opts["generator"].step()
        return {k: v.item() for k, v in losses.items()} | {"loss": loss.item()}

    def _to(self, device):
        self.mel.to(device)

    def state_extra(self) -> dict:
        return {"task": self.name, "architecture": "spectral", "config": to_dict(self.cfg)}
