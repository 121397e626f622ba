"""``studio.metrics.chroma_agreement``: same notes -> 1, other notes -> low, a delay forgiven, silence ignored."""

import numpy as np
import pytest

from studio.metrics import chroma_agreement

SR = 22050
HOP = 512  # the metric's chroma hop


def _tone(midi: float, n: int) -> np.ndarray:
    return np.sin(2 * np.pi * 440 * 2 ** ((midi - 69) / 12) * np.arange(n) / SR)


def _chord(notes, seconds: float = 3.0) -> np.ndarray:
    n = int(seconds * SR)
    return (sum(_tone(m, n) for m in notes) / len(notes)).astype(np.float32)


C_MAJOR, F_SHARP_MAJOR = _chord((60, 64, 67)), _chord((66, 70, 73))  # no pitch class in common


def test_identical_clips_agree_fully_and_other_notes_do_not():
    assert chroma_agreement(C_MAJOR, C_MAJOR, SR) == pytest.approx(1.0, abs=1e-6)
    assert chroma_agreement(C_MAJOR, F_SHARP_MAJOR, SR) < 0.3
    assert chroma_agreement(C_MAJOR, np.zeros_like(C_MAJOR), SR) == 0.0  # a silent output plays no note


def test_a_delay_of_a_few_frames_is_forgiven():
    # a scale of notes 4 frames long: delayed by 3 frames, most frames hold another note than the input's
    scale = np.concatenate([_tone(m, 4 * HOP) for m in [60, 62, 64, 65, 67, 69, 71, 72] * 4]).astype(np.float32)
    delayed = np.concatenate([np.zeros(3 * HOP, np.float32), scale])[: len(scale)]
    assert chroma_agreement(scale, delayed, SR) > 0.99
    assert chroma_agreement(scale, delayed, SR, max_lag=0) < 0.85  # the lag search is what forgives it


def test_only_the_inputs_sounding_frames_count():
    half = len(C_MAJOR) // 2
    ref = C_MAJOR.copy()
    ref[half:] = 0  # the input falls silent...
    est = C_MAJOR.copy()
    est[half:] = F_SHARP_MAJOR[half:]  # ...where the output plays other notes
    assert chroma_agreement(ref, est, SR) > 0.99
    assert chroma_agreement(C_MAJOR, est, SR) < 0.7  # the same output against an input that kept playing
    assert np.isnan(chroma_agreement(np.zeros_like(C_MAJOR), C_MAJOR, SR))  # no sounding frame: undefined
