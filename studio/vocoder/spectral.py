"""The studio's music generator (not in the paper): a frame-rate network that predicts the STFT of the output, and a
phase-vocoder synthesis that gives every partial a running phase.

Why: the paper's generator upsamples by strides that multiply to the hop, so wherever its input mel is steady (a
held note) its output repeats every hop: a comb at multiples of sr / hop (86.1 Hz) instead of the note's partials
(``studio.metrics.frame_locked``). Long adversarial training is how the paper escapes it; a CPU cannot give that.
This generator never repeats a waveform: per STFT bin ``k`` and frame ``n`` it predicts a magnitude ``m`` and the
deviation ``d`` of the bin's phase advance from its nominal advance ``2 pi k hop / n_fft`` (the instantaneous
frequency, as in a phase vocoder). The phase is the running sum of those advances, so a held partial keeps turning
at its own frequency across frames. Both are direct regression targets computed from the training audio's STFT
(frame-rate losses, no waveform in the loop), which is what makes it learn in CPU-hours.

Synthesis, all of it local except the running sum:
- phase at the window centre ``psi[k, n] = (pi k / 2) n + D[k, n]`` with ``D[k, n] = sum_{m < n} d[k, m]``
  (exclusive: every bin starts at phase 0 at frame 0, so the bins of one partial start locked);
- phase locking: each bin takes the phase of the magnitude^2-weighted sum of itself and its two neighbours, twice
  (a loud partial's phase wins its whole main lobe; lobes drift apart otherwise and partly cancel);
- bin value ``m e^{i psi} (-1)^k`` (the window centre sits ``n_fft / 2`` after the frame's first sample);
- inverse DFT as two matrix products with the synthesis window folded in, overlap-add, divided by the window
  envelope. Frames use ``AudioConfig``'s framing (frame ``n`` starts at sample ``n hop - (n_fft - hop) / 2``).

Streaming and chunking: the backbone is causal except ``lookahead`` frames, the synthesis needs 2 frames on each
side, and the running sum is the only state: ``chunk`` vocodes one window of a longer signal from ``D`` at a frame
whose predictions are exact there and returns ``D`` for the next window (``studio.vocoder.streaming`` drives it).
Every op is a plain tensor op (no FFT, no angle), so the whole model exports to ONNX with the state as inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..audio import AudioConfig
from ..errors import ConfigMismatch
from ..nn import input_span


@dataclass(frozen=True)
class SpectralConfig:
    """Backbone: an input conv (7 frames, ``lookahead`` of them ahead) to ``channels``, then ``blocks`` ConvNeXt
    blocks (causal depthwise conv of ``kernel`` frames, LayerNorm, ``expansion`` x MLP); heads: log-magnitude and
    phase-advance deviation for the ``n_fft / 2 + 1`` bins of ``audio``."""

    audio: AudioConfig = field(default_factory=AudioConfig)
    channels: int = 384  # backbone width
    blocks: int = 8  # ConvNeXt blocks
    kernel: int = 7  # frames of each block's causal depthwise conv
    expansion: int = 3  # MLP expansion of each block
    lookahead: int = 2  # frames the input conv sees ahead (0-3): latency against quality
    lock_iterations: int = 2  # passes of phase locking (each bin takes its loudest neighbour's phase)

    def __post_init__(self):
        a = self.audio
        if a.win_length != a.n_fft or a.n_fft != 4 * a.hop_length:
            raise ConfigMismatch(f"the spectral generator needs win_length = n_fft = 4 x hop, got {a.n_fft}/{a.win_length}/"
                                 f"{a.hop_length}.")
        if not 0 <= self.lookahead <= 3 or self.blocks < 1 or self.channels < 1:
            raise ConfigMismatch(f"invalid spectral generator {self}: need 0 <= lookahead <= 3, blocks >= 1.")

    @property
    def bins(self) -> int:
        return self.audio.n_fft // 2 + 1


class CausalConvNeXt(nn.Module):
    """Causal depthwise conv -> LayerNorm over channels -> MLP (GELU) -> layer scale, plus the input."""

    def __init__(self, channels: int, kernel: int, expansion: int):
        super().__init__()
        self.pad = kernel - 1
        self.dw = nn.Conv1d(channels, channels, kernel, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.up = nn.Linear(channels, expansion * channels)
        self.down = nn.Linear(expansion * channels, channels)
        self.scale = nn.Parameter(torch.full((channels,), 0.1))

    def input_span(self, lo: int, hi: int) -> tuple[int, int]:
        """``studio.nn.input_span``: the causal conv reaches ``kernel - 1`` frames back."""
        return lo - self.pad, hi

    def forward(self, x):  # [B, C, T]
        h = self.dw(nn.functional.pad(x, (self.pad, 0))).transpose(1, 2)
        h = self.down(nn.functional.gelu(self.up(self.norm(h))))
        return x + (h * self.scale).transpose(1, 2)


class SpectralGenerator(nn.Module):
    """Log-mel ``[B, n_mels, frames]`` -> waveform ``[B, 1, frames * hop]`` (see the module docstring)."""

    def __init__(self, config: SpectralConfig = SpectralConfig()):
        super().__init__()
        self.config = config
        a, ch, K = config.audio, config.channels, config.bins
        self.inp = nn.Conv1d(a.n_mels, ch, 7)
        self.blocks = nn.Sequential(*(CausalConvNeXt(ch, config.kernel, config.expansion) for _ in range(config.blocks)))
        self.norm = nn.LayerNorm(ch)
        self.head = nn.Linear(ch, 2 * K)
        N, hop = a.n_fft, a.hop_length
        # Inverse real DFT of the K bins with the (periodic Hann) synthesis window and the (-1)^k of the window
        # centre folded in: frame = re @ basis_re + im @ basis_im, [.., K] -> [.., N].
        k = torch.arange(K, dtype=torch.float64)[:, None]
        j = torch.arange(N, dtype=torch.float64)[None]
        weight = torch.full((K, 1), 2.0, dtype=torch.float64)
        weight[0], weight[-1] = 1.0, 1.0
        window = torch.hann_window(N, dtype=torch.float64)
        sign = (-1.0) ** k
        arg = 2 * math.pi * k * j / N
        self.register_buffer("basis_re", (weight * sign * torch.cos(arg) * window / N).float(), persistent=False)
        self.register_buffer("basis_im", (-weight * sign * torch.sin(arg) * window / N).float(), persistent=False)
        self.register_buffer("window_sq", (window ** 2).float(), persistent=False)

    # ---------------------------------------------------------------------------------------------- analysis

    def context_frames(self) -> tuple[int, int]:
        """Mel frames ``(left, right)`` the samples of one frame depend on (receptive field + synthesis)."""
        # the synthesis of frame 0 reads the predictions of frames -2..2; ``predict`` pads 6 - lookahead frames on
        # the left before its 7-tap input conv
        lo, hi = input_span([self.inp, self.blocks], -2, 2)
        shift = 6 - self.config.lookahead
        return shift - lo, hi - shift

    def predict(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-magnitude ``[B, K, F]`` (natural log) and phase-advance deviation ``[B, K, F]`` in (-pi, pi)."""
        c = self.config
        if mel.dim() != 3 or mel.shape[1] != c.audio.n_mels:
            raise ConfigMismatch(f"the generator expects a mel of shape [batch, {c.audio.n_mels}, frames], got {list(mel.shape)}.")
        # Edges repeat the first / last frame (a steady signal stays steady): no edge artefacts in the interior.
        x = nn.functional.pad(mel.float(), (6 - c.lookahead, c.lookahead), mode="replicate")
        h = self.blocks(self.inp(x)).transpose(1, 2)
        out = self.head(self.norm(h)).transpose(1, 2)
        logmag, dev = out.float().chunk(2, dim=1)
        return logmag.clamp(max=8.0), math.pi * torch.tanh(dev)

    # --------------------------------------------------------------------------------------------- synthesis

    def synthesize(self, logmag: torch.Tensor, dev: torch.Tensor, start_frame=0, phase: torch.Tensor | None = None,
                   phase_at=0, carry_at=None):
        """Frames ``[B, K, F]`` of log-magnitude and deviation -> audio ``[B, 1, F * hop]``. ``start_frame``: index
        of the first frame in the whole signal; ``phase`` ``[B, K]``: ``D`` at frame ``phase_at`` of these frames
        (None: 0, as at the signal start). ``carry_at``: also return ``D`` at that frame (the next window's state).
        The frame indices may be ints or one-element int64 tensors (the ONNX graph takes them as inputs)."""
        with torch.autocast(logmag.device.type, enabled=False):  # bf16 phases and DFT would add a -47 dB floor
            return self._synthesize(logmag.float(), dev.float(), start_frame, phase, phase_at, carry_at)

    def _synthesize(self, logmag, dev, start_frame, phase, phase_at, carry_at):
        a = self.config.audio
        B, K, F = logmag.shape
        # D[n] = phase + sum_{phase_at <= m < n} dev[m] (float64: long signals keep their phase exact), + (pi k / 2) n.
        excl = torch.cumsum(dev.double(), -1) - dev.double()
        at = torch.as_tensor(phase_at, device=dev.device).reshape(1)
        run = excl - excl.index_select(-1, at)
        if phase is not None:
            run = run + phase.double()[..., None]
        n = torch.arange(F, device=dev.device) + torch.as_tensor(start_frame, device=dev.device).reshape(1)
        quarter = (torch.arange(K, device=dev.device)[:, None] * n[None]) % 4  # (pi k / 2) n mod 2 pi, exactly
        psi = torch.remainder(run + (math.pi / 2) * quarter, 2 * math.pi).float()
        mag = torch.exp(logmag)
        re, im = self._lock(mag, torch.cos(psi), torch.sin(psi))
        re, im = mag * re, mag * im
        frames = re.transpose(1, 2) @ self.basis_re + im.transpose(1, 2) @ self.basis_im  # [B, F, N]
        y = self._overlap_add(frames) / self._overlap_add(self.window_sq.expand(1, F, -1)).clamp(min=1e-3)
        off = (a.n_fft - a.hop_length) // 2
        y = y[..., off: off + F * a.hop_length].unsqueeze(1)
        y = y if self.training else y.clamp(-1.0, 1.0)
        if carry_at is None:
            return y
        to = torch.as_tensor(carry_at, device=dev.device).reshape(1)
        return y, torch.remainder(run.index_select(-1, to)[..., 0], 2 * math.pi).float()

    def _lock(self, mag, cos, sin):
        """Each bin takes the phase of the magnitude^2-weighted sum over itself and its neighbours (a partial's
        loudest bin wins its lobe), ``lock_iterations`` times; returns the unit phasor ``(cos, sin)``."""
        w = mag * mag
        for _ in range(self.config.lock_iterations):
            re, im = w * cos, w * sin
            re = re + nn.functional.pad(re[:, 1:], (0, 0, 0, 1)) + nn.functional.pad(re[:, :-1], (0, 0, 1, 0))
            im = im + nn.functional.pad(im[:, 1:], (0, 0, 0, 1)) + nn.functional.pad(im[:, :-1], (0, 0, 1, 0))
            norm = torch.sqrt(re * re + im * im)
            ok = norm > 1e-20
            cos = torch.where(ok, re / norm.clamp(min=1e-20), cos)
            sin = torch.where(ok, im / norm.clamp(min=1e-20), sin)
        return cos, sin

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, F, N]`` windows at hop ``N / 4`` -> ``[B, (F + 3) hop]``: four shifted reshapes, summed."""
        B, F, N = frames.shape
        hop = N // 4
        parts = frames.reshape(B, F, 4, hop)
        y = 0
        for q in range(4):
            seq = parts[:, :, q].reshape(B, F * hop)
            y = y + nn.functional.pad(seq, (q * hop, (3 - q) * hop))
        return y

    def chunk(self, mel: torch.Tensor, window_start: int, keep_from: int, keep_to: int, state=None):
        """``studio.nn``'s chunk step, one window of a long signal: the audio of frames ``[keep_from, keep_to)``
        of ``mel`` (which starts at frame ``window_start`` of the signal) and the state for the next window.

        The state is ``(f, D)``: the running deviation ``D`` ``[B, K]`` at absolute frame ``f``, always a frame whose
        predictions were exact here (two frames before the next kept one: the synthesis reaches 2 frames back)."""
        logmag, dev = self.predict(mel)
        f, D, rel, nxt = window_state(state, window_start, keep_to, mel.shape[-1])
        y, D_next = self.synthesize(logmag, dev, window_start, D, rel, nxt - window_start)
        hop = self.config.audio.hop_length
        return y[..., keep_from * hop: keep_to * hop], (nxt, D_next)

    def forward(self, mel: torch.Tensor, start_frame: int = 0, phase: torch.Tensor | None = None,
                predict_only: bool = False):
        """Audio ``[B, 1, frames * hop]``; ``predict_only``: the frame-rate predictions instead (training)."""
        logmag, dev = self.predict(mel)
        if predict_only:
            return logmag, dev
        return self.synthesize(logmag, dev, start_frame, phase)


def window_state(state, window_start: int, keep_to: int, frames: int):
    """The chunk protocol's bookkeeping: ``state`` ``(f, D)`` (None: this first window starts the signal, D = 0
    there) -> ``(f, D, f's index in this window, the frame whose D the next window needs)``: two frames before the
    next kept one, since the synthesis of a frame's samples reaches two frames back."""
    f, D = state if state is not None else (window_start, None)
    rel = f - window_start
    if rel < 0 or rel >= frames:
        raise ValueError(f"chunk state at frame {f} lies outside the window [{window_start}, {window_start + frames}).")
    return f, D, rel, max(f, window_start + keep_to - 2)


def stft_targets(spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Magnitude ``[B, K, F]`` and phase-advance deviation ``[B, K, F]`` (frame n -> n + 1; the last frame's is 0)
    of a complex STFT with ``AudioConfig``'s framing (``MelSpectrogram.stft``: frame n = mel frame n)."""
    K = spec.shape[1]
    nominal = (math.pi / 2 * (torch.arange(K, device=spec.device) % 4)).float()[:, None]
    ph = torch.angle(spec)
    dev = torch.remainder(ph[..., 1:] - ph[..., :-1] - nominal + math.pi, 2 * math.pi) - math.pi
    return spec.abs(), nn.functional.pad(dev, (0, 1))


def spectral_losses(logmag: torch.Tensor, dev: torch.Tensor, mag: torch.Tensor, true_dev: torch.Tensor,
                    floor: float = 1e-5) -> dict[str, torch.Tensor]:
    """Frame-rate regression losses: log-magnitude L1, spectral convergence, and the magnitude-weighted phase
    advance error ``1 - cos(d - d_true)`` (wrap-free) over all but the last frame."""
    log_true = torch.log(mag.clamp(min=floor))
    # below the floor on both sides counts as equal (silence); a prediction below a louder target keeps its gradient
    silent = (logmag <= math.log(floor)) & (mag <= floor)
    l1 = torch.where(silent, 0.0, (logmag - log_true).abs()).mean()
    pred = torch.exp(logmag)
    sc = (torch.linalg.norm(pred - mag, dim=(1, 2)) / torch.linalg.norm(mag, dim=(1, 2)).clamp(min=1e-7)).mean()
    w = mag[..., :-1]
    err = 1 - torch.cos(dev[..., :-1] - true_dev[..., :-1])
    phase = (w * err).sum() / w.sum().clamp(min=1e-7)
    return {"log_mag": l1, "spectral_convergence": sc, "phase_advance": phase}
