"""Unconditional generation: the VQ-VAE and the prior learn; sampling is deterministic, sized and continues a prompt."""

import numpy as np
import pytest

from conftest import run_cli
from studio.data import SegmentDataset
from studio.errors import StudioError
from studio.generation import Generator, PriorConfig, VQVAEConfig
from studio.generation.train import CodeDataset, PriorTask, PriorTrainConfig, VQVAETask, VQVAETrainConfig, encode_corpus
from studio.train.loop import LoopConfig, Trainer, seed_everything
from studio.vocoder import GeneratorConfig, Vocoder

TINY_VQ = VQVAEConfig(channels=48, latent=16, dilations=(1, 2, 4), codebook_size=64, dead_after=10)
TINY_PRIOR = PriorConfig(vocab=64, context=32, width=32, layers=2, heads=2, dropout=0.0)
quiet = dict(log=lambda *a: None)


@pytest.fixture(scope="module")
def trained(rendered, tmp_path_factory):
    """A tiny VQ-VAE and prior trained on the rendered piano (train split) through the shared loop."""
    out = tmp_path_factory.mktemp("gen")
    seed_everything(0)
    vq_task = VQVAETask(VQVAETrainConfig(model=TINY_VQ, segment_length=8192, lr=2e-3), rendered, ("piano",), 2)
    before = vq_task.validate()
    data = SegmentDataset(rendered, TINY_VQ.audio, 8192, "train", domains=["piano"])
    vq_sum = Trainer(vq_task, data, LoopConfig(max_steps=60, batch_size=4, val_every=0, ckpt_every=0), out / "vq", **quiet).fit()
    vqvae = vq_task.nets["vqvae"].eval()
    codes = encode_corpus(vqvae, rendered, "train", ["piano"])
    seed_everything(0)
    pr_task = PriorTask(PriorTrainConfig(model=TINY_PRIOR, lr=3e-3), vqvae, codes)
    pr_sum = Trainer(pr_task, CodeDataset(codes, TINY_PRIOR.context), LoopConfig(max_steps=150, batch_size=8, val_every=0,
                     ckpt_every=0), out / "prior", **quiet).fit()
    vocoder = Vocoder(GeneratorConfig(channels=32))
    vocoder.save_pretrained(out / "vocoder")
    return {"before": before, "vq": vq_sum["val"], "prior": pr_sum["val"], "codes": codes,
            "model": out / "prior" / "export", "vocoder": out / "vocoder"}


def test_vqvae_learns_and_uses_many_codes(trained):
    assert trained["vq"]["mel_l1"] < 0.6 * trained["before"]["mel_l1"], (trained["before"], trained["vq"])
    assert trained["vq"]["codes_used"] > 8


def test_prior_prefers_real_sequences_to_shuffled(trained):
    v = trained["prior"]
    assert v["loss"] < v["loss_shuffled"] - 0.1, v


def test_generation_is_deterministic_sized_finite_and_audible(trained):
    g = Generator.from_pretrained(trained["model"], vocoder=trained["vocoder"])
    a, sr = g.generate(seconds=2.5, seed=3)
    b, _ = g.generate(seconds=2.5, seed=3)
    c, _ = g.generate(seconds=2.5, seed=4)
    assert sr == 22050 and len(a) == int(2.5 * sr)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.isfinite(a).all() and np.sqrt(np.mean(a**2)) > 1e-3
    long, _ = g.generate(seconds=4.0, seed=0, top_k=10, top_p=0.9)  # 86 codes > context 32: windowed sampling
    assert len(long) == 4 * sr and np.isfinite(long).all()
    with pytest.raises(StudioError, match="seconds must be"):
        g.generate(seconds=0)


def test_continuation_keeps_the_prompt(trained, piano_clip):
    from studio.audio import load_audio

    g = Generator.from_pretrained(trained["model"], vocoder=trained["vocoder"])
    prompt, sr = load_audio(piano_clip, 22050)
    y, _ = g.generate(seconds=4.0, seed=0, prompt=piano_clip, prompt_seconds=1.5)
    keep = int(1.5 * sr) - int(0.05 * sr)  # all but the crossfade
    np.testing.assert_allclose(y[:keep], prompt[:keep], atol=1e-6)
    assert len(y) == 4 * sr


def test_generate_cli(trained, tmp_path):
    r = run_cli("generate", "--seconds", "1.5", "-n", "2", "-o", tmp_path, "--model", trained["model"],
                "--vocoder", trained["vocoder"])
    files = sorted(tmp_path.glob("*.wav"))
    assert len(files) == 2 and r.stdout.count("wrote") == 2
