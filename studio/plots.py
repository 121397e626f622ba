"""Spectrogram pictures (matplotlib, no display needed) for the app, notebooks and reports."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .audio import AudioConfig  # noqa: E402
from .metrics import mel_transform  # noqa: E402

def log_mel(audio: np.ndarray, config: AudioConfig = AudioConfig()) -> np.ndarray:
    with torch.no_grad():
        return mel_transform(config)(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)))[0].numpy()


def mel_figure(panels: list[tuple[str, np.ndarray]], config: AudioConfig = AudioConfig(), marks: dict | None = None):
    """One row per ``(title, audio)``: log-mel spectrograms on a shared colour scale. ``marks``: title -> seconds
    at which to draw a vertical line (e.g. where a continuation starts)."""
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.3 * len(panels)), squeeze=False, constrained_layout=True)
    for ax, (title, audio) in zip(axes[:, 0], panels):
        m = log_mel(audio, config)
        ax.imshow(m, origin="lower", aspect="auto", vmin=math.log10(config.log_floor), vmax=max(0.5, float(m.max())), cmap="magma",
                  extent=[0, m.shape[1] / config.frame_rate, 0, m.shape[0]])
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("mel bin")
        if marks and title in marks:
            ax.axvline(marks[title], color="cyan", lw=1.5, ls="--")
    axes[-1, 0].set_xlabel("seconds")
    return fig


def figure_png(fig, path) -> str:
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)
