"""Training tasks for the shared loop: the VQ-VAE (mel reconstruction + commitment) and the prior (next code)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..audio import MelSpectrogram, read_segment
from ..config import to_dict
from ..data import fixed_clips, read_manifest
from ..errors import DatasetError
from ..latent import crop_to_multiple
from ..train.loop import Task
from .prior import Prior, PriorConfig
from .vqvae import VQVAE, VQVAEConfig


@dataclass
class VQVAETrainConfig:
    model: VQVAEConfig = field(default_factory=VQVAEConfig)
    segment_length: int = 16384  # samples per training segment (64 mel frames at hop 256)
    lr: float = 3e-4  # AdamW learning rate


class VQVAETask(Task):
    name = "vqvae"
    shipped = ("generator", "vqvae")

    def __init__(self, cfg: VQVAETrainConfig, val_root=None, domains=("piano",), val_clips: int = 4):
        super().__init__()
        self.cfg = cfg
        self.audio = cfg.model.audio
        self.nets = {"vqvae": VQVAE(cfg.model)}
        self.opts = {"vqvae": torch.optim.AdamW(self.nets["vqvae"].parameters(), cfg.lr, betas=(0.9, 0.99))}
        self.mel = MelSpectrogram(self.audio)
        self.val = fixed_clips(val_root, self.audio, "valid", val_clips, 4.0, list(domains)) if val_root else []

    def _mel(self, audio: torch.Tensor) -> torch.Tensor:
        self.mel.to(self.device)
        mel = self.mel(audio.to(self.device))
        return crop_to_multiple(mel, self.cfg.model.down)

    def train_step(self, batch, step):
        with torch.no_grad():
            mel = self._mel(batch["audio"])
        with self.autocast():
            rec, codes, commit, ppl = self.run["vqvae"](mel)
        loss_rec = F.l1_loss(rec.float(), mel)
        loss = loss_rec + self.cfg.model.commitment * commit
        self.opts["vqvae"].zero_grad(set_to_none=True)
        loss.backward()
        self.opts["vqvae"].step()
        return {"loss_rec": loss_rec.item(), "commit": commit.item(), "perplexity": ppl.item()}

    @torch.no_grad()
    def validate(self):
        if not self.val:
            return {}
        m = self.nets["vqvae"]
        rec, codes = [], []
        for clip in self.val:
            mel = self._mel(torch.from_numpy(clip["audio"])[None])
            r, c, _, _ = m(mel)
            rec.append(F.l1_loss(r, mel).item())
            codes.append(c.flatten())
        counts = torch.bincount(torch.cat(codes), minlength=m.config.codebook_size).float()
        p = counts / counts.sum()
        return {"mel_l1": float(np.mean(rec)), "perplexity": float(torch.exp(-(p * p.clamp(min=1e-10).log()).sum())),
                "codes_used": int((counts > 0).sum())}

    def state_extra(self):
        return {"task": self.name, "config": to_dict(self.cfg)}

    def export(self, folder: Path) -> None:
        from .pipeline import save_vqvae

        save_vqvae(self.nets["vqvae"], folder)


@torch.no_grad()
def encode_corpus(vqvae: VQVAE, root, split: str, domains=("piano",), device="cpu") -> list[torch.Tensor]:
    """Code sequences ``[T_codes]`` of every file of ``split`` (the prior's training data)."""
    mel_fn = MelSpectrogram(vqvae.config.audio).to(device)
    out = []
    for e in read_manifest(root, split, list(domains)):
        sr = vqvae.config.audio.sample_rate
        x = read_segment(Path(root) / e.path, 0, int(e.duration * sr), e.sample_rate, sr)
        mel = mel_fn(torch.from_numpy(x).to(device)[None])
        mel = crop_to_multiple(mel, vqvae.config.down)
        out.append(vqvae.eval().encode(mel)[0].cpu())
    return out


class CodeDataset(Dataset):
    """Item ``i`` -> ``{"codes": [length]}``: a window of one sequence, a pure function of ``(seed, i)``."""

    def __init__(self, sequences: list[torch.Tensor], length: int, seed: int = 0):
        self.seqs = [s for s in sequences if len(s) >= 2]
        if not self.seqs:
            raise DatasetError("no code sequences to train on: every piece is shorter than 2 VQ-VAE codes.")
        self.length, self.seed = length, seed
        w = np.array([len(s) for s in self.seqs], dtype=float)
        self.weights = w / w.sum()

    def __len__(self):
        return 2**62

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, i])
        s = self.seqs[rng.choice(len(self.seqs), p=self.weights)]
        if len(s) <= self.length:
            return {"codes": F.pad(s, (0, self.length - len(s)), value=int(s[-1]))}
        start = int(rng.integers(0, len(s) - self.length + 1))
        return {"codes": s[start: start + self.length]}


@dataclass
class PriorTrainConfig:
    model: PriorConfig = field(default_factory=PriorConfig)
    vqvae: str = ""  # the VQ-VAE model folder whose codes this prior models
    lr: float = 5e-4  # AdamW learning rate


class PriorTask(Task):
    name = "prior"
    shipped = ("generator", "prior")

    def __init__(self, cfg: PriorTrainConfig, vqvae: VQVAE, val_codes: list[torch.Tensor] | None = None):
        super().__init__()
        self.cfg = cfg
        self.vqvae = vqvae.eval()
        self.nets = {"prior": Prior(cfg.model)}
        self.opts = {"prior": torch.optim.AdamW(self.nets["prior"].parameters(), cfg.lr, betas=(0.9, 0.95),
                                                weight_decay=0.01)}
        # every whole context-long window of each validation piece (up to 8 per piece): with one window per piece
        # the validation loss was too noisy to pick a best step from
        n = cfg.model.context
        self.val = [c[i: i + n] for c in (val_codes or []) for i in range(0, max(1, len(c) - n + 1), n)[:8]
                    if len(c[i: i + n]) >= 8]

    def item_seconds(self) -> float:
        vq = self.vqvae.config  # a context of codes
        return self.cfg.model.context * vq.down * vq.audio.hop_length / vq.audio.sample_rate

    def train_step(self, batch, step):
        codes = batch["codes"].to(self.device)
        with self.autocast():
            logits = self.run["prior"](codes[:, :-1])  # through the (DDP) module's forward
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), codes.reshape(-1))
        self.opts["prior"].zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.nets["prior"].parameters(), 1.0)
        self.opts["prior"].step()
        return {"loss": loss.item()}

    @torch.no_grad()
    def validate(self):
        if not self.val:
            return {}
        p = self.nets["prior"]
        g = torch.Generator().manual_seed(0)
        real = [p.loss(c[None].to(self.device)).item() for c in self.val]
        shuffled = [p.loss(c[torch.randperm(len(c), generator=g)][None].to(self.device)).item() for c in self.val[:16]]
        return {"loss": float(np.mean(real)), "loss_shuffled": float(np.mean(shuffled)), "windows": len(self.val)}

    def state_extra(self):
        return {"task": self.name, "config": to_dict(self.cfg)}

    def export(self, folder: Path) -> None:
        from .pipeline import save_generator

        save_generator(self.vqvae, self.nets["prior"], folder)
