"""``studio ...`` command line. Thin: each subcommand parses arguments and calls the public API."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from .errors import StudioError


def _add_loop_args(p: argparse.ArgumentParser, max_steps: int, batch: int) -> None:
    g = p.add_argument_group("training loop")
    g.add_argument("--data", required=True, help="dataset folder with manifest.csv (see data_recipes/)")
    g.add_argument("--out", required=True, help="run folder: checkpoint, TensorBoard logs, exported model")
    g.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.safetensors at its exact step")
    g.add_argument("--max-steps", type=int, default=max_steps)
    g.add_argument("--batch-size", type=int, default=batch, help="per process")
    g.add_argument("--val-every", type=int, default=500)
    g.add_argument("--ckpt-every", type=int, default=500)
    g.add_argument("--log-every", type=int, default=10)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--num-workers", type=int, default=0)
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    g.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    g.add_argument("--max-minutes", type=float, default=None, help="stop with a checkpoint after this wall time")
    g.add_argument("--config", help="JSON file with the model/training config (flags below override it)")


def _loop_config(a):
    from .train.loop import LoopConfig

    return LoopConfig(max_steps=a.max_steps, batch_size=a.batch_size, log_every=a.log_every, val_every=a.val_every,
                      ckpt_every=a.ckpt_every, seed=a.seed, num_workers=a.num_workers, device=a.device,
                      precision=a.precision, max_minutes=a.max_minutes, threads=a.threads)


def cmd_train_vocoder(a) -> int:
    from .audio import AudioConfig
    from .config import from_dict, load_json
    from .data import SegmentDataset
    from .train.checkpoint import read_checkpoint_meta
    from .train.loop import CHECKPOINT, Trainer, seed_everything
    from .vocoder.train import VocoderTask, VocoderTrainConfig

    ckpt = Path(a.out) / CHECKPOINT
    if a.resume and ckpt.is_file():  # the run's own config wins on resume
        cfg = from_dict(VocoderTrainConfig, read_checkpoint_meta(ckpt)["extra"]["config"])
    else:
        cfg = from_dict(VocoderTrainConfig, load_json(a.config)) if a.config else VocoderTrainConfig()
        gen = cfg.generator
        if a.sample_rate or a.hop_length:
            audio = replace(gen.audio, sample_rate=a.sample_rate or gen.audio.sample_rate,
                            hop_length=a.hop_length or gen.audio.hop_length)
            gen = replace(gen, audio=audio)
        gen = replace(gen, channels=a.channels or gen.channels,
                      ratios=tuple(a.ratios) if a.ratios else gen.ratios)
        cfg = replace(cfg, generator=gen,
                      segment_length=a.segment_length or cfg.segment_length,
                      lambda_stft=cfg.lambda_stft if a.lambda_stft is None else a.lambda_stft,
                      lambda_mel=cfg.lambda_mel if a.lambda_mel is None else a.lambda_mel,
                      adversarial_from=cfg.adversarial_from if a.adversarial_from is None else a.adversarial_from,
                      lr=a.lr or cfg.lr)
    audio: AudioConfig = cfg.generator.audio
    seed_everything(a.seed)
    task = VocoderTask(cfg, val_root=a.data)
    data = SegmentDataset(a.data, audio, cfg.segment_length, "train", seed=a.seed)
    summary = Trainer(task, data, _loop_config(a), a.out, resume=a.resume).fit()
    print(json.dumps({k: summary[k] for k in ("step", "steps_run", "seconds_per_step", "val")}))
    return 0


def cmd_vocode(a) -> int:
    from .audio import save_audio
    from .vocoder import GriffinLim, Vocoder

    vocoder = GriffinLim(n_iter=a.iterations) if a.griffin_lim else Vocoder.from_pretrained(a.model)
    audio, sr = vocoder.resynthesize(a.input)
    save_audio(a.output, audio, sr)
    print(f"wrote {a.output} ({len(audio) / sr:.2f} s at {sr} Hz) with {vocoder.name}")
    return 0


def cmd_models(a) -> int:
    from .registry import list_models, models_dir

    entries = list_models()
    if not entries:
        print(f"no models in {models_dir()}")
    for e in entries:
        print(f"{e.name:32s} {e.kind:12s} {e.path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="studio", description="MelGAN Studio: vocoder, translation, generation.")
    sub = p.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model").add_subparsers(dest="model", required=True)
    tv = train.add_parser("vocoder", help="train the MelGAN vocoder (paper settings by default)",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_loop_args(tv, max_steps=400_000, batch=16)
    g = tv.add_argument_group("vocoder")
    g.add_argument("--segment-length", type=int, default=None, help="samples per training segment (paper: 8192)")
    g.add_argument("--lambda-stft", type=float, default=None, help="weight of the auxiliary MR-STFT loss (paper: 0)")
    g.add_argument("--lambda-mel", type=float, default=None, help="weight of the auxiliary log-mel L1 loss (paper: 0)")
    g.add_argument("--adversarial-from", type=int, default=None, help="STFT-only warm-up steps before the GAN losses")
    g.add_argument("--lr", type=float, default=None, help="Adam learning rate (paper: 1e-4)")
    g.add_argument("--channels", type=int, default=None, help="generator width after the input conv (paper: 512)")
    g.add_argument("--ratios", type=int, nargs="+", default=None, help="upsampling ratios; product = hop (paper: 8 8 2 2)")
    g.add_argument("--sample-rate", type=int, default=None, help="e.g. 44100 (then give --hop-length and --ratios)")
    g.add_argument("--hop-length", type=int, default=None)
    tv.set_defaults(func=cmd_train_vocoder)

    v = sub.add_parser("vocode", help="resynthesize an audio file through a vocoder (mel -> audio)")
    v.add_argument("input", help="audio file (wav, flac, ogg, mp3...)")
    v.add_argument("-o", "--output", required=True, help="output .wav/.flac")
    v.add_argument("--model", default=None, help="registry name or model folder (default: the shipped vocoder)")
    v.add_argument("--griffin-lim", action="store_true", help="use the Griffin-Lim baseline instead of MelGAN")
    v.add_argument("--iterations", type=int, default=32, help="Griffin-Lim iterations")
    v.set_defaults(func=cmd_vocode)

    m = sub.add_parser("models", help="list the installed models")
    m.set_defaults(func=cmd_models)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
