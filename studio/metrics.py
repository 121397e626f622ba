"""Quality metrics used by evaluation, training validation, tests and model cards.

One definition of each: log-mel L1 is the mean absolute difference of the shared ``AudioConfig`` log10 mels of
the reference and the estimate, after aligning the estimate to the reference (best lag within one hop) and
cutting both to the common length.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .audio import AudioConfig, MelSpectrogram

_mels: dict[AudioConfig, MelSpectrogram] = {}


def mel_transform(config: AudioConfig) -> MelSpectrogram:
    """One cached ``MelSpectrogram`` per config (for metrics and plots)."""
    if config not in _mels:
        _mels[config] = MelSpectrogram(config)
    return _mels[config]


try:
    import fcntl
except ImportError:  # Windows: no lock (and no shared multi-process evaluation there so far)
    fcntl = None

_jit_ready: set[str] = set()


@contextlib.contextmanager
def _librosa_jit(name: str):
    """librosa compiles its kernels with numba on first use and caches them on disk, and numba fills that cache
    unsafely when two processes compile at once (numba#10128: mismatched cache files, then a segfault in every later
    process, seen here with parallel evaluations). A process's first call of each metric holds a machine-wide lock;
    later calls run the already compiled code."""
    if name in _jit_ready or fcntl is None:
        yield
        return
    with open(os.path.join(tempfile.gettempdir(), "melgan-studio-numba.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
            _jit_ready.add(name)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _as_tensor(x) -> torch.Tensor:
    return (x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x, dtype=np.float32))).float().reshape(-1)


def align(ref, est, max_lag: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift ``est`` by the lag (|lag| <= max_lag) that best correlates it with ``ref``; cut both to one length."""
    ref, est = _as_tensor(ref), _as_tensor(est)
    n = min(len(ref), len(est))
    ref, est = ref[:n], est[:n]
    if max_lag > 0 and n > 2 * max_lag:
        core = ref[max_lag: n - max_lag]
        # every lag's dot product in one correlation (513 separate dots took seconds on a busy machine)
        scores = torch.nn.functional.conv1d(est[None, None], core[None, None]).flatten()
        lag = int(torch.argmax(scores)) - max_lag
        if lag > 0:
            ref, est = ref[: n - lag], est[lag:]
        elif lag < 0:
            ref, est = ref[-lag:], est[: n + lag]
    return ref, est


def mel_l1(ref, est, config: AudioConfig = AudioConfig(), *, aligned: bool = False) -> float:
    """Log10-mel L1 distance between two clips at ``config.sample_rate``."""
    if aligned:
        ref, est = _as_tensor(ref), _as_tensor(est)
        n = min(len(ref), len(est))
        ref, est = ref[:n], est[:n]
    else:
        ref, est = align(ref, est)
    m = mel_transform(config)
    with torch.no_grad():
        return (m(ref) - m(est)).abs().mean().item()


def mel_l1_batch(ref: torch.Tensor, est: torch.Tensor, mel: MelSpectrogram) -> torch.Tensor:
    """Per-item log-mel L1 of equal-length batches ``[B, 1, T]`` (no alignment): ``[B]``."""
    return (mel(ref) - mel(est)).abs().mean(dim=(1, 2))


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over three STFT resolutions (Yamamoto et al. 2020).

    Not in the paper; speeds convergence a lot, which matters when training on a CPU. Here, beside the metrics,
    because it is both the vocoder's optional training loss and ``mr_stft_distance``.
    """

    def __init__(self, resolutions=((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))):
        super().__init__()
        self.resolutions = resolutions
        for n_fft, _, win in resolutions:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(win), persistent=False)

    def _mag(self, x, n_fft, hop, win):
        x = x.float().reshape(-1, x.shape[-1])
        spec = torch.stft(x, n_fft, hop, win, getattr(self, f"window_{n_fft}"), return_complex=True)
        return spec.abs().clamp(min=1e-7)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = 0.0
        for n_fft, hop, win in self.resolutions:
            m_hat, m = self._mag(y_hat, n_fft, hop, win), self._mag(y, n_fft, hop, win)
            sc = torch.linalg.norm(m - m_hat, dim=(-2, -1)) / torch.linalg.norm(m, dim=(-2, -1)).clamp(min=1e-7)
            loss = loss + sc.mean() + F.l1_loss(torch.log(m_hat), torch.log(m))
        return loss / len(self.resolutions)


_stft = MultiResolutionSTFTLoss()


def mr_stft_distance(ref, est) -> float:
    """Multi-resolution STFT distance (spectral convergence + log-magnitude L1, 3 resolutions), aligned."""
    ref, est = align(ref, est)
    with torch.no_grad():
        return _stft(est[None], ref[None]).item()


def frame_locked(x: torch.Tensor, hop: int, frames: int = 32, ref: torch.Tensor | None = None) -> torch.Tensor:
    """Energy of the part of ``x`` ``[..., T]`` that repeats every ``hop`` samples (within windows of ``frames``
    hops), relative to the energy of ``ref`` (default: ``x``): ``[...]``.

    A vocoder that re-starts its waveform at every mel frame buzzes at the frame rate (sr / hop, 86 Hz here) and
    its harmonics: that buzz is periodic with the hop, so it survives the average over frames, while music does
    not (real recordings: ~1/frames, chance level). Magnitude metrics barely see it; pitch trackers lock onto it.
    """
    ref = x if ref is None else ref
    frames = min(frames, x.shape[-1] // hop)  # short clips: one window of all their frames
    if frames < 2:
        raise ValueError(f"frame_locked needs at least {2 * hop} samples.")
    n = x.shape[-1] // (hop * frames) * hop * frames
    w = x[..., :n].reshape(*x.shape[:-1], -1, frames, hop)
    locked = w.mean(-2).square().sum((-2, -1)) * frames
    return locked / ref[..., :n].square().sum(-1).clamp(min=1e-8)


def pitch_accuracy(ref, est, sample_rate: int, tolerance_cents: float = 50.0) -> float:
    """Share of frames voiced in ``ref`` whose pYIN f0 in ``est`` is within ``tolerance_cents`` (monophonic audio)."""
    import librosa

    ref, est = align(ref, est)
    kw = dict(fmin=librosa.note_to_hz("C2"), fmax=librosa.note_to_hz("C7"), sr=sample_rate)
    with _librosa_jit("pyin"):
        f_ref, v_ref, _ = librosa.pyin(ref.numpy(), **kw)
    f_est, v_est, _ = librosa.pyin(est.numpy(), **kw)
    voiced = v_ref & np.isfinite(f_ref)
    if not voiced.any():
        return float("nan")
    cents = 1200 * np.abs(np.log2(np.where(v_est & voiced, f_est, np.nan)[voiced] / f_ref[voiced]))
    return float(np.mean(np.nan_to_num(cents, nan=np.inf) <= tolerance_cents))


def chroma_agreement(ref, est, sample_rate: int, hop: int = 512, max_lag: int = 10, floor: float = 0.1) -> float:
    """Do ``est`` and ``ref`` play the same notes? Mean cosine similarity of their librosa CQT chroma (hop ``hop``)
    over the frames of ``ref`` whose RMS (same hop) exceeds ``floor`` x its peak RMS, at the lag of ``est``
    (|lag| <= ``max_lag`` frames) that agrees best. 1: the same pitch classes in the same proportions.

    Only loud frames count: the chroma of near-silence is noise and would pull identical content below 1. The lag
    search forgives a vocoder's or a translator's delay, which is not a change of notes. Silent frames of ``est``
    score 0 against a sounding ``ref``.
    """
    import librosa

    ref = _as_tensor(ref).double().numpy()
    est = _as_tensor(est).double().numpy()
    with _librosa_jit("chroma"):
        ca = librosa.feature.chroma_cqt(y=ref, sr=sample_rate, hop_length=hop).T  # [frames, 12]
        rms = librosa.feature.rms(y=ref, hop_length=hop)[0]
    cb = librosa.feature.chroma_cqt(y=est, sr=sample_rate, hop_length=hop).T
    n = min(len(ca), len(rms))
    if n == 0 or rms[:n].max() <= 0:
        return float("nan")
    loud = np.flatnonzero(rms[:n] > floor * rms[:n].max())
    unit = lambda c: c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)  # zero rows stay zero
    ca, cb = unit(ca), unit(cb)
    best = -np.inf
    for lag in range(-max_lag, max_lag + 1):
        i = loud[(loud + lag >= 0) & (loud + lag < len(cb))]  # ref frame i against est frame i + lag
        if len(i):
            best = max(best, float(np.mean(np.sum(ca[i] * cb[i + lag], axis=1))))
    return best if np.isfinite(best) else float("nan")


def mel_frame_stats(clips, config: AudioConfig = AudioConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[n_mels]`` and covariance ``[n_mels, n_mels]`` of the log-mel frames of ``clips`` (arrays at
    ``config.sample_rate``): the fixed, weight-free embedding behind ``frechet_distance``."""
    m = mel_transform(config)
    with torch.no_grad():
        frames = torch.cat([m(_as_tensor(c))[0].T for c in clips]).double().numpy()
    return frames.mean(0), np.cov(frames, rowvar=False)


def frechet_distance(stats_a, stats_b) -> float:
    """Fréchet distance between Gaussians ``(mean, cov)``: ``|mu_a - mu_b|^2 + Tr(A + B - 2 (A B)^1/2)``."""
    import scipy.linalg

    (mu_a, cov_a), (mu_b, cov_b) = stats_a, stats_b
    covmean, _ = scipy.linalg.sqrtm(cov_a @ cov_b, disp=False)
    covmean = covmean.real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * covmean))
