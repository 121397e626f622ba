"""Streaming and chunked vocoding: no seams, and a latency computed from the receptive field."""

import numpy as np
import pytest
import torch

from studio.audio import AudioConfig, load_audio
from studio.errors import ConfigMismatch
from studio.nn import chunked
from studio.vocoder import Generator, GeneratorConfig, Vocoder
from studio.vocoder.streaming import StreamingVocoder, algorithmic_latency_ms, chunks_of, context_frames, vocode_long


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def paper():
    """A random-init paper-size vocoder, weight norm folded."""
    torch.manual_seed(0)
    return Vocoder().fold()


@pytest.fixture(scope="module")
def real_mel(paper, piano_clip):
    x, _ = load_audio(piano_clip, 22050)
    with torch.inference_mode():
        return paper.mel(torch.from_numpy(x[: 3 * 22050]))  # [1, 80, 258]


@pytest.fixture(scope="module")
def one_shot(paper, real_mel):
    with torch.inference_mode():
        return paper(real_mel)


def _measured_context(generator, frames=48, f=24):
    """Mel frames whose gradient reaches the output samples of frame ``f`` (autograd, not the layer walk)."""
    mel = torch.randn(1, generator.config.audio.n_mels, frames, requires_grad=True)
    hop = generator.config.audio.hop_length
    generator(mel)[..., f * hop: (f + 1) * hop].sum().backward()
    hit = (mel.grad[0].abs().sum(0) > 0).nonzero().flatten()
    return f - int(hit.min()), int(hit.max()) - f


@pytest.mark.parametrize("cfg", [
    GeneratorConfig(channels=32),
    GeneratorConfig(channels=32, dilations=(1, 3, 9, 27)),
    GeneratorConfig(audio=AudioConfig(sample_rate=44100, n_fft=2048, hop_length=512, win_length=2048),
                    channels=32, ratios=(8, 8, 4, 2)),
])
def test_receptive_field_walk_matches_autograd(cfg):
    torch.manual_seed(0)
    g = Generator(cfg)
    assert context_frames(g) == _measured_context(g)


def test_paper_latency_is_the_right_context():
    left, right = context_frames(Generator())
    assert (left, right) == (6, 6)
    assert algorithmic_latency_ms(Generator()) == pytest.approx(6 * 256 / 22050 * 1000)  # 69.7 ms


@pytest.mark.parametrize("chunk_frames,piece,frames", [(1, 5, 40), (8, 8, 100), (32, 100, 258), (50, 1, 120)])
def test_streamed_audio_equals_the_one_shot_output(paper, real_mel, one_shot, chunk_frames, piece, frames):
    mel = real_mel[..., :frames]
    if frames < real_mel.shape[-1]:
        with torch.inference_mode():
            one_shot = paper(mel)
    sv = StreamingVocoder(paper, chunk_frames=chunk_frames)
    parts = list(sv.stream(chunks_of(mel, piece)))
    assert all(p.shape[-1] % 256 == 0 and p.shape[-1] > 0 for p in parts)
    y = torch.cat(parts, dim=-1)
    assert y.shape == one_shot.shape
    assert (y - one_shot).abs().max() < 1e-4


def test_push_returns_audio_as_soon_as_the_right_context_arrives(paper, real_mel):
    real_mel = real_mel[..., :60]
    with torch.inference_mode():
        one_shot = paper(real_mel)
    sv = StreamingVocoder(paper, chunk_frames=4)
    assert sv.push(real_mel[..., :9]).shape[-1] == 0  # 9 frames: 4 + 6 of look-ahead not yet there
    assert sv.push(real_mel[..., 9:10]).shape[-1] == 4 * 256  # frame 10 completes the first chunk's context
    rest = sv.push(real_mel[..., 10:])
    tail = sv.flush()
    y = torch.cat([one_shot[..., : 4 * 256], rest, tail], dim=-1)
    assert (y - one_shot).abs().max() < 1e-4


def test_vocode_long_and_batches_have_no_seams(paper, real_mel, one_shot):
    assert (paper.vocode_long(real_mel, chunk_frames=37) - one_shot).abs().max() < 1e-4
    batch = torch.cat([real_mel, real_mel.flip(-1)])[..., :64]
    with torch.inference_mode():
        ref = paper(batch)
    assert (vocode_long(paper, batch, chunk_frames=20) - ref).abs().max() < 1e-4
    y = torch.cat(list(paper.stream(chunks_of(batch, 7), chunk_frames=16)), dim=-1)
    assert (y - ref).abs().max() < 1e-4


def test_chunked_hands_each_window_its_absolute_start_frame_and_the_state():
    """``studio.nn.chunked``: every window gets its absolute first frame (``start_frame`` + offset) and the state
    the previous window returned; the kept frames tile the output."""
    calls = []

    def step(x, start_frame, keep_from, keep_to, state):
        calls.append((start_frame, x.shape[-1], keep_from, keep_to, state))
        return x[..., keep_from:keep_to].repeat_interleave(2, -1), len(calls)

    x = torch.arange(25.0)[None]
    y = chunked(step, x, 10, (3, 2), scale=2, start_frame=100)
    assert torch.equal(y, x.repeat_interleave(2, -1))
    assert calls == [(100, 12, 0, 10, None), (107, 15, 3, 13, 1), (117, 8, 3, 8, 2)]


def test_streaming_runs_the_fast_path_too(paper, real_mel, one_shot):
    fast = paper.fast("fp32")
    y = torch.cat(list(paper.stream(chunks_of(real_mel, 20), chunk_frames=20, model=fast)), dim=-1)
    assert (y - one_shot).abs().max() < 1e-4


def test_short_and_bad_streams():
    torch.manual_seed(0)
    v = Vocoder(GeneratorConfig(channels=32)).fold()
    mel = torch.randn(1, 80, 3) - 3
    with torch.inference_mode():
        ref = v(mel)
    sv = StreamingVocoder(v, chunk_frames=1)
    assert sv.push(mel).shape[-1] == 0
    assert torch.allclose(sv.flush(), ref, atol=1e-5)  # fewer than 4 frames: the same edge padding as one-shot
    assert sv.flush().shape[-1] == 0
    with pytest.raises(ConfigMismatch, match=r"\[batch, 80, frames\]"):
        sv.push(torch.randn(1, 64, 5))
    sv.push(torch.randn(1, 80, 5))
    with pytest.raises(ConfigMismatch, match="batch size changed"):
        sv.push(torch.randn(2, 80, 5))
    with pytest.raises(ConfigMismatch, match="chunk_frames"):
        StreamingVocoder(v, chunk_frames=0)
    assert np.isfinite(sv.algorithmic_latency_ms)


def test_shipped_default_streams_within_50ms_and_equals_one_shot(piano_clip):
    """The shipped vocoder (spectral): look-ahead <= 50 ms, and streamed audio equals the one-shot output, both for
    the plain module and for the fast path every user-facing call runs (``Vocoder.inference``)."""
    from studio import registry

    v = Vocoder.from_pretrained(registry.DEFAULTS["vocoder"])
    assert algorithmic_latency_ms(v) <= 50.0
    x, _ = load_audio(piano_clip, 22050)
    with torch.inference_mode():
        mel = v.mel(torch.from_numpy(x[: 4 * 22050]))  # 345 frames: several chunks, a real clip
        one_shot = v(mel)
        fast = v.inference()
        fast_one_shot = fast(mel)
    for model, ref in ((v, one_shot), (fast, fast_one_shot)):
        for chunk in (1, 8, 32):
            sv = StreamingVocoder(model, chunk_frames=chunk)
            assert sv.algorithmic_latency_ms <= 50.0
            y = torch.cat(list(sv.stream(chunks_of(mel, 5))), dim=-1)
            assert y.shape == ref.shape and (y - ref).abs().max() < 1e-4, (model, chunk)
