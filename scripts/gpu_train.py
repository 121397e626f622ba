"""Time-boxed training of the spectral vocoder on a rented GPU (or a CPU), from the shipped weights.

Two steps, because the GPU machine has only a stock PyTorch image (torch, numpy, safetensors, tqdm, tensorboard; no
soundfile, torchaudio, librosa or network):

1. Here, with the studio installed: pack training segments into one compact file (16-bit audio, plus the mel
   filterbank so the GPU side needs no torchaudio)::

       python scripts/gpu_train.py pack --data /path/to/dataset --out data/gpu-pack.npz --minutes 10

2. There, with the repository and the pack (10 min of audio is ~26 MB; keep repository + pack under the limit of
   your transfer)::

       python scripts/gpu_train.py train --pack data/gpu-pack.npz --out runs/gpu --minutes 9

   It fine-tunes the shipped default vocoder (``--init``; a spectral one) for ``--minutes`` of wall time with the
   studio's one training loop, checkpoints every ``--ckpt-minutes`` (2) into ``--out`` (``--resume`` continues a
   run), prints steps/s and losses, and leaves ``<out>/export`` (config + fp32 weights; ``<out>/export-fp16`` is
   the same model in half precision, the size of a shipped model). ``--smoke`` runs a few CPU steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cmd_pack(a) -> int:
    from studio.audio import mel_filterbank
    from studio.config import to_dict
    from studio.data import SegmentDataset
    from studio.vocoder.spectral import SpectralConfig

    audio = SpectralConfig().audio
    seg = a.segment_length
    n = max(1, int(a.minutes * 60 * audio.sample_rate / seg))
    data = SegmentDataset(a.data, audio, seg, "train", seed=a.seed)
    # a different part of the index space than any training run's first steps; near-silent windows are skipped
    items = [data[10**9 + i]["audio"][0].numpy() for i in range(n)]
    pcm = np.stack([np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16) for x in items])
    meta = {"audio": to_dict(audio), "segment_length": seg, "source": str(a.data), "segments": n}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.npz")
    np.savez(tmp, audio=pcm, fbank=mel_filterbank(audio).numpy(), meta=np.array(json.dumps(meta)))
    tmp.replace(out)
    print(f"wrote {out}: {n} segments x {seg} samples = {n * seg / audio.sample_rate / 60:.1f} min, "
          f"{out.stat().st_size / 2**20:.1f} MiB")
    return 0


class PackDataset(torch.utils.data.Dataset):
    """Item ``i`` -> a random window of ``length`` samples of a random packed segment (a function of ``i``)."""

    def __init__(self, pcm: np.ndarray, length: int, seed: int = 0):
        self.pcm, self.length, self.seed = pcm, min(length, pcm.shape[1]), seed

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, i])
        row = self.pcm[rng.integers(len(self.pcm))]
        start = int(rng.integers(0, row.shape[0] - self.length + 1))
        return {"audio": torch.from_numpy(row[start: start + self.length].astype(np.float32) / 32768.0)[None]}


def load_pack(path) -> tuple[np.ndarray, dict]:
    from studio.audio import KNOWN_FILTERBANKS, AudioConfig

    with np.load(path, allow_pickle=False) as f:
        pcm, fbank, meta = f["audio"], f["fbank"], json.loads(str(f["meta"]))
    KNOWN_FILTERBANKS[AudioConfig(**meta["audio"])] = torch.from_numpy(fbank)  # no torchaudio needed
    return pcm, meta


def cmd_train(a) -> int:
    from safetensors.torch import load_file

    from studio.audio import AudioConfig
    from studio.config import from_dict, load_json, save_json
    from studio.train.loop import LoopConfig, Trainer
    from studio.vocoder.spectral import SpectralConfig
    from studio.vocoder.train import SpectralTrainConfig, SpectralVocoderTask

    pcm, meta = load_pack(a.pack)
    init = Path(a.init)
    cfg_json = load_json(init / "config.json")
    if cfg_json.get("architecture") != "spectral":
        print(f"error: {init} is not a spectral vocoder", file=sys.stderr)
        return 2
    gen = from_dict(SpectralConfig, cfg_json["config"])
    if AudioConfig(**meta["audio"]) != gen.audio:
        print(f"error: the pack's audio settings differ from {init}'s; pack again for this model", file=sys.stderr)
        return 2
    segment = 4096 if a.smoke else a.segment_length
    cfg = SpectralTrainConfig(generator=gen, segment_length=segment, lr=a.lr, warmup_steps=0 if a.smoke else 100,
                              lr_half_life=a.half_life)
    task = SpectralVocoderTask(cfg)
    out = Path(a.out)
    if not (a.resume and (out / "checkpoint.safetensors").is_file()):
        weights = load_file(str(init / "model.safetensors"))
        task.nets["generator"].load_state_dict({k: t.float() for k, t in weights.items()})
    device = "cpu" if a.smoke or not torch.cuda.is_available() else "cuda"
    loop = LoopConfig(max_steps=a.max_steps or (5 if a.smoke else 10**9), batch_size=2 if a.smoke else a.batch,
                      log_every=1 if a.smoke else 50, val_every=0, ckpt_every=0, device=device,
                      precision="fp32" if a.smoke else a.precision, max_minutes=a.minutes, ckpt_minutes=a.ckpt_minutes)
    t0 = time.monotonic()
    summary = Trainer(task, PackDataset(pcm, segment, a.seed), loop, out, resume=a.resume).fit()
    steps = summary["steps_run"]
    print(json.dumps({"device": device, "steps": summary["step"], "steps_run": steps,
                      "steps_per_second": steps / max(1e-9, time.monotonic() - t0),
                      "last": summary["history"][-1] if summary["history"] else {}}))
    # the shipped size: the same model in half precision, with what this run added
    from studio.vocoder import Vocoder

    half = Vocoder.from_generator(task.nets["generator"]).save_pretrained(out / "export-fp16", half=True)
    record = load_json(half / "config.json") | {"training": {"steps_added": steps, "device": device, "pack": meta}}
    save_json(record, half / "config.json")
    print(f"wrote {half} ({(half / 'model.safetensors').stat().st_size / 2**20:.1f} MiB)")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack", help="pack training segments (needs the studio's audio stack)")
    pk.add_argument("--data", required=True, help="dataset folder (manifest.csv + audio/)")
    pk.add_argument("--out", required=True)
    pk.add_argument("--minutes", type=float, default=10.0, help="minutes of audio to pack")
    pk.add_argument("--segment-length", type=int, default=65536)
    pk.add_argument("--seed", type=int, default=0)
    pk.set_defaults(func=cmd_pack)
    tr = sub.add_parser("train", help="time-boxed fine-tuning from the pack (stock PyTorch is enough)")
    tr.add_argument("--pack", required=True)
    tr.add_argument("--out", required=True)
    tr.add_argument("--init", default=str(ROOT / "models" / "melgan-music-22k"), help="a spectral vocoder folder")
    tr.add_argument("--minutes", type=float, default=9.0)
    tr.add_argument("--ckpt-minutes", type=float, default=2.0)
    tr.add_argument("--batch", type=int, default=64)
    tr.add_argument("--segment-length", type=int, default=32768)
    tr.add_argument("--lr", type=float, default=2e-4)
    tr.add_argument("--half-life", type=int, default=20_000)
    tr.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    tr.add_argument("--max-steps", type=int, default=None)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--resume", action="store_true")
    tr.add_argument("--smoke", action="store_true", help="a few CPU steps at a tiny size (tests)")
    tr.set_defaults(func=cmd_train)
    a = p.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
