"""The translator's training task for the shared loop.

``notes`` mode: per step, the piano roll of what the target instrument plays in a window (exact score notes,
jittered as a transcription would be) and the loudness contour of the same window on another instrument go in; the
decoder must produce the target's mel (L1). Parallel renders make the target known exactly.

``universal`` mode: per step, the encoder sees a locally pitch-shifted mel; the decoder must rebuild the *unshifted* mel in the
clip's own domain (L1) — or, for a fraction ``parallel`` of the batch, the same window of the piece rendered on
another instrument, decoded as that instrument; the domain classifier learns to tell the domain from the detached
latent; the encoder is pushed the other way through gradient reversal with weight ``confusion`` (0.01 in Mor et
al.).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..audio import MelSpectrogram
from ..config import to_dict
from ..data import fixed_clips, note_clips
from ..latent import crop_to_multiple
from ..train.loop import Task
from .augment import random_local_pitch_shift, room_and_recording
from .model import DomainClassifier, GradientReversal, TranslatorConfig, TranslatorModel


@dataclass
class TranslatorTrainConfig:
    model: TranslatorConfig = field(default_factory=TranslatorConfig)
    segment_length: int = 16384  # samples (64 mel frames at hop 256)
    lr: float = 3e-4  # AdamW learning rate
    confusion: float = 0.01  # weight of the domain-confusion term on the encoder; 0 turns it off
    pitch_shift: float = 0.5  # semitones, max; 0 turns the augmentation off
    # Fraction of each batch whose decoder target is the same window rendered on another instrument (parallel
    # renders of one score) instead of the clip itself: supervision that keeps the notes. 0 = Mor et al.'s
    # unsupervised training. Needs a dataset with several domains per piece.
    parallel: float = 0.0
    # notes mode: train on rolls made to look like a transcription (studio.notes.augment) rather than exact ones
    augment_notes: bool = True
    # notes mode: fraction of windows whose roll is basic-pitch's transcription of the source render (what the
    # pipeline gives the decoder at inference; data_recipes.transcribe writes them); validation then uses them too
    transcribed: float = 0.0
    # notes mode: weight of an L1 between the frame-to-frame changes of the predicted and the target log-mel. Plain
    # L1 on an uncertain onset pays least for a smeared one; this term pays for each attack and release missed
    flux: float = 0.0
    # notes mode (with augment_notes): share of the exact notes left out of each roll. basic-pitch's onset F1 is
    # about 0.66 even on clean renders (studio.notes.Transcriber); a decoder that never saw a missing note plays
    # only what the roll holds, one that did learns to take the missing ones from the source's mel (--source-mel).
    # Not applied to transcribed rolls (--transcribed), which miss notes of their own
    note_drop: float = 0.05
    # notes mode: probability of each part of a recorded sound (room tail, noise floor, band limit; see
    # augment.room_and_recording) added to the *source's* mel; the target stays clean. 0 = clean renders only.
    # Notes mode only (the universal mode's encoder reads the clip it rebuilds)
    recorded: float = 0.0


# The renders' levels are drawn per file (data_recipes.real), so a target's absolute level cannot be predicted from
# the source: scored as is, that guess dominates the loss. The notes mode is scored after the best constant level
# shift (the pipeline matches the output's loudness to the input's anyway), with a small plain term to anchor it.
LEVEL_WEIGHT = 0.1


def level_free_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 of log-mels ``[B, n_mels, T]`` after shifting each prediction by its median difference to the target (a
    gain: the shift is a constant, no gradient)."""
    with torch.no_grad():
        shift = (target - pred).flatten(1).median(dim=1).values[:, None, None]
    return F.l1_loss(pred + shift, target)


def flux_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the frame-to-frame changes of two log-mels ``[B, n_mels, T]``: how far the attacks and releases are
    from the target's (gain-free: a level shift cancels)."""
    return F.l1_loss(pred.diff(dim=-1), target.diff(dim=-1))


class TranslatorTask(Task):
    name = "translator"

    def __init__(self, cfg: TranslatorTrainConfig, val_root=None, val_clips: int = 6, val_seconds: float = 3.0):
        super().__init__()
        self.cfg = cfg
        mc = cfg.model
        self.audio = mc.audio
        self.nets = {"model": TranslatorModel(mc)}
        self.opts = {
            "model": torch.optim.AdamW(self.nets["model"].parameters(), cfg.lr, betas=(0.9, 0.99), weight_decay=1e-4)}
        if mc.mode == "universal":
            self.nets["classifier"] = DomainClassifier(mc.latent, len(mc.domains))
            self.opts["classifier"] = torch.optim.Adam(self.nets["classifier"].parameters(), cfg.lr, betas=(0.9, 0.99))
        self.mel = MelSpectrogram(self.audio)
        self.val = []
        if val_root and mc.mode == "universal":
            self.val = fixed_clips(val_root, self.audio, "valid", val_clips, val_seconds, list(mc.domains))
        elif val_root:
            self.val = note_clips(val_root, self.audio, "valid", list(mc.domains), val_seconds, val_clips,
                                  transcribed=cfg.transcribed > 0)

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        if self.cfg.model.mode == "notes":
            return self.notes_step(batch)
        cfg, dev = self.cfg, self.device
        self.mel.to(dev)
        model, clf = self.run["model"], self.run["classifier"]
        crop = lambda m: crop_to_multiple(m, cfg.model.down)
        with torch.no_grad():
            mel = crop(self.mel(batch["audio"].to(dev)))
            inp = random_local_pitch_shift(mel, self.audio, max_semitones=cfg.pitch_shift) if cfg.pitch_shift else mel
        domain = batch["domain"].to(dev)
        target, target_domain = mel, domain
        if cfg.parallel > 0 and "target_audio" in batch:
            with torch.no_grad():
                pick = torch.rand(len(domain), device=dev) < cfg.parallel
                target = torch.where(pick[:, None, None], crop(self.mel(batch["target_audio"].to(dev))), mel)
                target_domain = torch.where(pick, batch["target_domain"].to(dev), domain)
        with self.autocast():
            z, rec = model(inp, target_domain)
        # classifier step on the detached latent
        logits = clf(z.detach().float())
        loss_c = F.cross_entropy(logits, domain)
        self.opts["classifier"].zero_grad(set_to_none=True)
        loss_c.backward()
        self.opts["classifier"].step()
        acc = (logits.argmax(-1) == domain).float().mean().item()
        # encoder/decoder step: rebuild the clean target mel in its domain, confuse the classifier
        loss_rec = F.l1_loss(rec.float(), target)
        loss = loss_rec
        if cfg.confusion > 0:
            adv = F.cross_entropy(clf(GradientReversal.apply(z.float(), cfg.confusion)), domain)
            loss = loss + adv  # the reversal makes this *maximise* the classifier's loss w.r.t. the encoder
        self.opts["model"].zero_grad(set_to_none=True)
        self.opts["classifier"].zero_grad(set_to_none=True)  # its grads from the confusion pass are not applied
        loss.backward()
        self.opts["model"].step()
        return {"loss_rec": loss_rec.item(), "loss_clf": loss_c.item(), "clf_acc": acc}

    def notes_step(self, batch: dict) -> dict[str, float]:
        dev, model = self.device, self.run["model"]
        self.mel.to(dev)
        with torch.no_grad():
            source, target = self.mel(batch["audio"].to(dev)), self.mel(batch["target_audio"].to(dev))
            if self.cfg.recorded > 0:
                source = room_and_recording(source, self.audio, p=self.cfg.recorded)
            feats = self.nets["model"].note_features(batch["roll"].to(dev), source)
        with self.autocast():
            _, pred = model(feats, batch["target_domain"].to(dev))
        pred = pred.float()
        loss_rec = level_free_l1(pred, target)
        loss = loss_rec + LEVEL_WEIGHT * F.l1_loss(pred, target)
        logs = {"loss_rec": loss_rec.item()}
        if self.cfg.flux > 0:
            loss_flux = flux_l1(pred, target)
            loss = loss + self.cfg.flux * loss_flux
            logs["loss_flux"] = loss_flux.item()
        self.opts["model"].zero_grad(set_to_none=True)
        loss.backward()
        self.opts["model"].step()
        return logs | {"loss": loss.item()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        if not self.val:
            return {}
        if self.cfg.model.mode == "notes":
            self.mel.to(self.device)
            m, errs, flux, rec = self.nets["model"], [], [], []
            g = torch.Generator().manual_seed(0)  # the same rooms at every validation
            for clip in self.val:
                source = self.mel(torch.from_numpy(clip["source"]).to(self.device)[None])
                target = self.mel(torch.from_numpy(clip["target"]).to(self.device)[None])
                roll = torch.from_numpy(clip["roll"]).to(self.device)[None]
                d = torch.tensor([m.config.domains.index(clip["target_domain"])], device=self.device)
                pred = m(m.note_features(roll, source), d)[1]
                errs.append(level_free_l1(pred, target).item())
                flux.append(flux_l1(pred, target).item())
                if self.cfg.recorded > 0:  # the same clips heard through a room, as the training sources are
                    recorded = room_and_recording(source, self.audio, g, p=1.0)
                    rec.append(level_free_l1(m(m.note_features(roll, recorded), d)[1], target).item())
            out = {"mel_l1": float(np.mean(errs)), "mel_flux": float(np.mean(flux))}
            return out | ({"mel_l1_recorded": float(np.mean(rec))} if rec else {})
        self.mel.to(self.device)
        m, clf = self.nets["model"], self.nets["classifier"]
        rec, correct = [], []
        for clip in self.val:
            mel = self.mel(torch.from_numpy(clip["audio"]).to(self.device)[None])
            mel = crop_to_multiple(mel, m.config.down)
            d = torch.tensor([m.config.domains.index(clip["domain"])], device=self.device)
            z = m.encode(mel)
            rec.append(F.l1_loss(m.decode(z, d), mel).item())
            correct.append(float(clf(z).argmax(-1).item() == d.item()))
        return {"mel_l1": float(np.mean(rec)), "clf_acc": float(np.mean(correct))}

    def state_extra(self) -> dict:
        return {"task": self.name, "config": to_dict(self.cfg)}

    def export(self, folder: Path) -> None:
        from .pipeline import save_translator

        save_translator(self.nets["model"], folder)
