"""Posteriors -> note events (``studio.notes``' ``[n, 4]`` arrays): onset peaks start notes, the note posterior
carries them on; long activity without an onset (a tied or slurred note) becomes a note of its own."""

from __future__ import annotations

import numpy as np

from ..notes import LOWEST_MIDI, empty


def decode_notes(note: np.ndarray, onset: np.ndarray, frame_rate: float, onset_threshold: float = 0.5,
                 frame_threshold: float = 0.3, min_frames: int = 4, gap_frames: int = 2) -> np.ndarray:
    """``note``/``onset``: ``[88, T]`` probabilities. A note starts at each local maximum of ``onset`` at or above
    ``onset_threshold`` and lasts while ``note`` stays at or above ``frame_threshold`` (dips of up to ``gap_frames``
    bridged) or until the key's next onset; runs of ``note`` with no onset, at least ``2 * min_frames`` long, are
    notes too. Notes shorter than ``min_frames`` are dropped. Velocity: the mean note posterior over the note."""
    keys, frames = note.shape
    out = []
    for k in range(keys):
        o = onset[k]
        prev = np.concatenate([[-1.0], o[:-1]])
        nxt = np.concatenate([o[1:], [-1.0]])
        peaks = np.flatnonzero((o >= onset_threshold) & (o >= prev) & (o > nxt))
        covered = np.zeros(frames, dtype=bool)
        for i, t0 in enumerate(peaks):
            stop = peaks[i + 1] if i + 1 < len(peaks) else frames
            end, below = t0 + 1, 0
            while end < stop and below <= gap_frames:
                below = below + 1 if note[k, end] < frame_threshold else 0
                end += 1
            end -= below  # the trailing dip is not part of the note
            end = max(end, t0 + 1)
            covered[t0:end] = True
            if end - t0 >= min_frames:  # cut by the key's next onset: it ends where that note starts
                out.append((t0 + 0.5, end + 0.5 if end == stop < frames else end, k, float(note[k, t0:end].mean())))
        # activity that no onset explains: a note whose attack was too soft to peak
        active = (note[k] >= frame_threshold) & ~covered
        if active.any():
            edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
            for a, b in zip(edges[::2], edges[1::2]):
                if b - a >= 2 * min_frames:
                    out.append((a + 0.25, b, k, float(note[k, a:b].mean())))
    if not out:
        return empty()
    # Times: an onset peak's frame t0 is where the note starts, so its centre, (t0 + 0.5) hops; a note heard from frame
    # a without an onset started somewhere in the hop before a's centre (a + 0.25: piano_roll puts it back on frame a);
    # a note last heard on frame end - 1 stopped between the centres of end - 1 and end, so at end hops (or where the
    # key's next note starts).
    arr = np.array(out, dtype=np.float64)
    notes = np.stack([arr[:, 0] / frame_rate, arr[:, 1] / frame_rate, arr[:, 2] + LOWEST_MIDI, arr[:, 3]], 1)
    return notes[np.lexsort((notes[:, 2], notes[:, 0]))]
