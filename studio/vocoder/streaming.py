"""Chunked and streaming vocoding with no seams: the one place for long-file and live inference.

The generator is a stack of convolutions, so each output sample depends on a bounded window of mel frames: its
*receptive field*, which each generator reports (``context_frames``; the paper's reads it from its layers with
``studio.nn.input_span``). Chunks run through ``studio.nn.chunked``, the mechanism every model shares. A chunk of frames ``[a, b)`` is
vocoded from the window ``[a - left, b + right)`` and the samples of ``[a, b)`` are cut out of the result; every
kept sample then sees exactly the inputs it sees in a one-shot run (reflection padding inside the network only
touches the cropped margins), so the concatenated chunks equal the one-shot output up to float rounding.

For the paper generator (hop 256, ratios 8-8-2-2, dilations 1-3-9) the context is 6 frames on the left and 6 on
the right, so the *algorithmic latency* of streaming is ``right * hop / sr`` = 6 * 256 / 22050 s = 69.7 ms: audio
for frame ``t`` can be produced once frame ``t + 6`` has arrived (plus the time to compute it, and the wait for the
rest of a chunk when chunks are longer than one frame).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from ..errors import ConfigMismatch
from ..nn import chunked, window


def _audio_of(model):
    """The ``AudioConfig`` of a Vocoder, a FastVocoder or a generator (whose ``config`` holds it as ``audio``);
    the model must have ``context_frames()`` and ``chunk()`` (``studio.nn``'s chunk step)."""
    if not hasattr(model, "chunk") or not hasattr(model, "context_frames") or not hasattr(model, "config"):
        raise TypeError(f"expected a Vocoder, FastVocoder or generator, got {type(model).__name__}")
    return getattr(model.config, "audio", model.config)


def context_frames(model) -> tuple[int, int]:
    """Mel frames of context ``(left, right)`` that the output samples of one frame depend on."""
    _audio_of(model)
    return model.context_frames()


def algorithmic_latency_ms(model) -> float:
    """Right-context frames x hop / sample rate, in ms: the look-ahead streaming needs before a frame's audio."""
    a = _audio_of(model)
    return context_frames(model)[1] * a.hop_length / a.sample_rate * 1000.0


def _as_batch(mel: torch.Tensor) -> torch.Tensor:
    if not isinstance(mel, torch.Tensor):
        mel = torch.as_tensor(mel, dtype=torch.float32)
    return mel.unsqueeze(0) if mel.dim() == 2 else mel


class StreamingVocoder:
    """Feed log-mel chunks as they arrive; get audio back with no seams.

    ``push(mel [B, n_mels, n] or [n_mels, n])`` returns the audio ``[B, 1, k * hop]`` of every frame that now has
    its full right context, in pieces of ``chunk_frames`` frames (``k`` may be 0); ``flush()`` returns the rest at
    the end of the stream. The concatenation equals ``model(whole_mel)`` up to float rounding.

    ``model`` is anything with the Vocoder interface (``Vocoder``, the fast path ``vocoder.fast()``, or a bare
    ``Generator``). Smaller chunks lower the latency; each chunk also computes ``left + right`` frames of context,
    so larger chunks cost less per second of audio.
    """

    def __init__(self, model, chunk_frames: int = 32, context: tuple[int, int] | None = None):
        if chunk_frames < 1:
            raise ConfigMismatch(f"chunk_frames must be at least 1, got {chunk_frames}.")
        self.model = model
        a = _audio_of(model)
        self.hop, self.sample_rate, self.n_mels = a.hop_length, a.sample_rate, a.n_mels
        self.left, self.right = context if context is not None else context_frames(model)
        self.chunk_frames = chunk_frames
        self.reset()

    def reset(self) -> None:
        self._state = None  # the generator's state between windows (the spectral generator's running phase)
        self._buf: torch.Tensor | None = None  # frames [self._buf_start, self._total)
        self._buf_start = 0
        self._next = 0  # next frame to emit
        self._total = 0

    @property
    def algorithmic_latency_ms(self) -> float:
        return self.right * self.hop / self.sample_rate * 1000.0

    @property
    def chunk_latency_ms(self) -> float:
        """Worst wait of a frame before compute: the rest of its chunk plus the right context."""
        return (self.chunk_frames - 1 + self.right) * self.hop / self.sample_rate * 1000.0

    def _run(self, a: int, b: int) -> torch.Tensor:
        w = window(a, b, self._total, (self.left, self.right))
        mel = self._buf[..., w.start - self._buf_start: w.stop - self._buf_start]
        with torch.inference_mode():
            y, self._state = self.model.chunk(mel, w.start, w.keep_from, w.keep_to, self._state)
        return y

    def _trim(self) -> None:
        drop = max(0, self._next - self.left) - self._buf_start
        if drop > 0:
            self._buf = self._buf[..., drop:]
            self._buf_start += drop

    def push(self, mel) -> torch.Tensor:
        mel = _as_batch(mel)
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise ConfigMismatch(f"expected mel chunks of shape [batch, {self.n_mels}, frames], got {list(mel.shape)}.")
        if self._buf is not None and mel.shape[0] != self._buf.shape[0]:
            raise ConfigMismatch(f"the batch size changed mid-stream ({self._buf.shape[0]} -> {mel.shape[0]}).")
        self._buf = mel if self._buf is None else torch.cat([self._buf, mel.to(self._buf)], dim=-1)
        self._total += mel.shape[-1]
        out = []
        while self._total - self.right - self._next >= self.chunk_frames:
            a = self._next
            out.append(self._run(a, a + self.chunk_frames))
            self._next = a + self.chunk_frames
        self._trim()
        return self._cat(out, mel.shape[0])

    def flush(self) -> torch.Tensor:
        """Audio of the frames still held back (the stream ended: the end of the mel is the end of the signal)."""
        if self._buf is None:
            return torch.zeros(1, 1, 0)
        out = []
        while self._next < self._total:  # at most chunk_frames + right frames are left; keep chunks bounded
            a, b = self._next, min(self._total, self._next + self.chunk_frames + self.right)
            out.append(self._run(a, b))
            self._next = b
        y = self._cat(out, self._buf.shape[0])
        self.reset()
        return y

    def _cat(self, parts: list[torch.Tensor], batch: int) -> torch.Tensor:
        if parts:
            return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        return torch.zeros(batch, 1, 0, device=self._buf.device if self._buf is not None else "cpu")

    def stream(self, mel_chunks: Iterable) -> Iterator[torch.Tensor]:
        """Yield the audio of an iterable of mel chunks as it becomes available (non-empty pieces only)."""
        self.reset()
        for chunk in mel_chunks:
            y = self.push(chunk)
            if y.shape[-1]:
                yield y
        y = self.flush()
        if y.shape[-1]:
            yield y


def vocode_long(model, mel, chunk_frames: int = 1024, context: tuple[int, int] | None = None,
                out: torch.Tensor | None = None, start_frame: int = 0) -> torch.Tensor:
    """Vocode a long mel ``[B, n_mels, frames]`` chunk by chunk: activations stay bounded by ``chunk_frames``.
    ``start_frame``: where the mel starts in absolute time (the oscillator bank's and the spectral synthesis's).

    Returns ``[B, 1, frames * hop]`` float32 (or writes into ``out``, e.g. a CPU tensor for a GPU model), equal to
    ``model(mel)`` up to float rounding. The output (4 bytes per sample) is the only buffer that grows with the
    length; on a CPU the smaller working set is also faster (see ``studio.vocoder.fast``).
    """
    if chunk_frames < 1:
        raise ConfigMismatch(f"chunk_frames must be at least 1, got {chunk_frames}.")
    context = context if context is not None else context_frames(model)
    with torch.inference_mode():
        return chunked(model.chunk, _as_batch(mel), chunk_frames, context, _audio_of(model).hop_length, out,
                       start_frame)


def chunks_of(mel: torch.Tensor, frames: int) -> Iterator[torch.Tensor]:
    """Split a mel ``[B, n_mels, T]`` into consecutive pieces of ``frames`` frames (the last may be shorter)."""
    mel = _as_batch(mel)
    for a in range(0, mel.shape[-1], frames):
        yield mel[..., a: a + frames]
