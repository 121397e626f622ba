"""The transcriber's training task for the shared loop.

Per step: windows of the parallel renders with the exact notes each render played (``SegmentDataset(notes=True,
augment_notes=False)``); a share heard through a synthetic room, noise floor and band limit
(``studio.rooms.room_audio``: the conditions of a real recording), a share mixed with another window of the
batch (almost always another piece and instrument: polyphony the scores do not have), each brought to a random
level around ``LEVEL_DBFS``. Loss: binary cross-entropy of the note and onset logits against the roll (onsets also half-weighted one frame either
side, so a prediction one frame off is not scored as a miss and a false alarm).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import to_dict
from ..data import SegmentDataset
from ..train.loop import Task
from .model import TranscriberConfig, TranscriberModel, normalise_level


@dataclass
class TranscriberTrainConfig:
    model: TranscriberConfig = field(default_factory=TranscriberConfig)
    segment_length: int = 49152  # samples per window (192 frames, 2.2 s)
    lr: float = 1e-3  # AdamW learning rate
    room: float = 0.5  # share of windows heard through a synthetic room (RT60 0.5-2 s), noise floor and band limit
    mix: float = 0.3  # share of windows mixed with another window of the batch
    gain_db: float = 10.0  # each window's level within +-gain_db dB of LEVEL_DBFS (a passage of a normalised clip)
    onset_weight: float = 5.0  # weight of an onset frame against a non-onset frame (onsets are ~1% of frames)
    warmup_frames: int = 32  # frames at each window's start left out of the loss (a room's tail builds up there)


def onset_target(roll: torch.Tensor) -> torch.Tensor:
    """``[B, 88, T]`` onset targets from a roll's velocity channel: 1 at the onset frame, 0.5 one frame either side."""
    on = (roll[:, 1] > 0).float()
    near = torch.maximum(F.pad(on[..., 1:], (0, 1)), F.pad(on[..., :-1], (1, 0)))
    return torch.maximum(on, 0.5 * near)


def transcription_loss(logits: torch.Tensor, roll: torch.Tensor, onset_weight: float, skip: int = 0):
    """(note BCE, onset BCE) of logits ``[B, 2, 88, T]`` against a roll ``[B, 2, 88, T]``, frames from ``skip``."""
    logits, roll = logits[..., skip:].float(), roll[..., skip:]
    note = F.binary_cross_entropy_with_logits(logits[:, 0], roll[:, 0])
    target = onset_target(roll)
    weight = 1.0 + (onset_weight - 1.0) * (target > 0).float()
    onset = F.binary_cross_entropy_with_logits(logits[:, 1], target, weight=weight)
    return note, onset


class TranscriberTask(Task):
    name = "transcriber"

    def __init__(self, cfg: TranscriberTrainConfig, val_root=None, val_clips: int = 24, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.audio = cfg.model.audio
        self.nets = {"model": TranscriberModel(cfg.model)}
        self.opts = {"model": torch.optim.AdamW(self.nets["model"].parameters(), cfg.lr, betas=(0.9, 0.99),
                                                weight_decay=1e-4)}
        self.val = []
        if val_root:  # fixed windows of the valid split, each also through a fixed room
            from ..notes import read_ranges
            from ..rooms import room_audio

            ds = SegmentDataset(val_root, self.audio, cfg.segment_length, "valid", sorted(read_ranges(val_root)),
                                seed=seed + 1, notes=True, augment_notes=False)
            for i in range(val_clips):
                item = ds[i]
                x = item["audio"][0].numpy()
                rng = np.random.default_rng([seed, i])
                self.val.append({"audio": x, "room": room_audio(x, self.audio.sample_rate, rng), "roll": item["roll"]})

    def augment(self, audio: torch.Tensor, roll: torch.Tensor, rng: np.random.Generator):
        """A batch ``[B, N]``, ``[B, 2, 88, T]`` made to sound recorded and polyphonic (see the module's doc)."""
        from ..rooms import room_audio

        cfg, sr = self.cfg, self.audio.sample_rate
        x = audio.numpy().astype(np.float32)
        b = len(x)
        mix = rng.random(b) < cfg.mix
        partner = (np.arange(b) + 1 + rng.integers(0, max(1, b - 1), b)) % b  # never the item itself (b > 1)
        out, rolls = [], roll.clone()
        for i in range(b):
            y = x[i]
            if mix[i] and b > 1:
                j = partner[i]
                g = 10 ** (rng.uniform(-6, 6) / 20) * np.sqrt(np.mean(y**2) / max(np.mean(x[j] ** 2), 1e-12))
                y = y + g * x[j]
                rolls[i, 0] = torch.maximum(roll[i, 0], roll[j, 0])
                rolls[i, 1] = torch.maximum(roll[i, 1], roll[j, 1])
            if rng.random() < cfg.room:
                y = room_audio(y, sr, rng)
            out.append(torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)))
        x = normalise_level(torch.stack(out))
        gain = torch.from_numpy(10 ** (rng.uniform(-cfg.gain_db, cfg.gain_db, (b, 1)) / 20)).float()
        return x * gain, rolls

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        cfg, dev = self.cfg, self.device
        rng = np.random.default_rng([cfg.model.channels, step])
        audio, roll = self.augment(batch["audio"][:, 0], batch["roll"], rng)
        with self.autocast():
            logits = self.run["model"](audio.to(dev))
        note, onset = transcription_loss(logits, roll.to(dev), cfg.onset_weight, cfg.warmup_frames)
        loss = note + onset
        self.opts["model"].zero_grad(set_to_none=True)
        loss.backward()
        self.opts["model"].step()
        return {"loss": loss.item(), "note_bce": note.item(), "onset_bce": onset.item()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        if not self.val:
            return {}
        m = self.nets["model"]
        out = {}
        for key in ("audio", "room"):
            x = normalise_level(torch.from_numpy(np.stack([c[key] for c in self.val])))
            roll = torch.stack([c["roll"] for c in self.val])
            logits = m(x.to(self.device))
            note, onset = transcription_loss(logits, roll.to(self.device), self.cfg.onset_weight,
                                             self.cfg.warmup_frames)
            probs = torch.sigmoid(logits[:, 0, :, self.cfg.warmup_frames:]) >= 0.5
            truth = roll[:, 0, :, self.cfg.warmup_frames:].to(self.device) > 0
            tp = (probs & truth).sum().item()
            f1 = 2 * tp / max(1, probs.sum().item() + truth.sum().item())
            name = "" if key == "audio" else "_room"
            out |= {f"bce{name}": note.item() + onset.item(), f"frame_f1{name}": f1}
        return out

    def item_seconds(self) -> float:
        return self.cfg.segment_length / self.audio.sample_rate

    def state_extra(self) -> dict:
        return {"task": self.name, "config": to_dict(self.cfg)}

    def export(self, folder: Path) -> None:
        from .pipeline import save_transcriber

        save_transcriber(self.nets["model"], folder)
