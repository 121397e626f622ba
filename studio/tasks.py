"""The task table: what ``studio train X`` (and ``studio plan X``) trains, one entry per model and architecture.

An entry names the train-config dataclass, the task (which names the shipped model its training produces:
``Task.shipped``), how its dataset is built and what the planner checks. The training flags are generated from the entry's config: every field of
the train config and of its model config (the field named by ``model``) is a flag, unless it is a nested dataclass
(the audio settings, the discriminator...) or ``derived`` (set from the data or a hand-written flag). So a new
training option is one dataclass field: its flag, help text (``studio.config.field_comments``), default and the
way it reaches the config come from the field. A model-config field whose name the train config also uses is
``--<model>-<name>``. The few flags with logic of their own (``--arch``, ``--init``, ``--domains``, ``--vqvae``,
``--harmonic``) are written by hand below, beside the entries that take them.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from . import registry
from .config import field_comments, flag_kwargs, flag_value, from_dict, override
from .errors import ConfigMismatch, StudioError
from .train.estimate import shipped_entry, shipped_of
from .generation.train import CodeDataset, PriorTask, PriorTrainConfig, VQVAETask, VQVAETrainConfig, encode_corpus
from .notes import PITCHES
from .transcription.model import transcriber_config
from .transcription.train import TranscriberTask, TranscriberTrainConfig
from .translation.model import translator_config
from .translation.train import TranslatorTask, TranslatorTrainConfig
from .vocoder.model import read_config as read_vocoder_config
from .vocoder.train import SpectralTrainConfig, SpectralVocoderTask, VocoderTask, VocoderTrainConfig


@dataclass(frozen=True)
class TrainTask:
    """One entry: what ``studio train <command>`` (``--arch <arch>``) builds, and the hooks for what its flags
    alone cannot say."""

    command: str  # studio train <command>
    arch: str | None  # --arch, where one command trains several architectures (the first listed is the default)
    help: str
    config: type  # the train-config dataclass
    model: str  # its field holding the model config (whose fields are flags too)
    task: type  # the loop's Task: task(cfg, val_root) unless ``make`` says otherwise
    dataset: Callable  # (cfg, args, ctx) -> the training Dataset
    max_steps: int  # --max-steps and --batch-size defaults
    batch: int
    min_hours: tuple[str, float]  # the documented minimum of training audio (README, "How much data")
    derived: tuple[str, ...] = ()  # config fields set from the data or a hand-written flag, not flags themselves
    audio_flags: tuple[str, ...] = ()  # fields of the model's AudioConfig that are flags too
    shipped_record: tuple[tuple[str, str], ...] = (("segment", "segment_length"),)  # record key -> config field
    add_flags: Callable | None = None  # (argparse group) -> None: this entry's hand-written flags
    prepare: Callable | None = None  # (args, planning) -> ctx: work before the config (the prior's VQ-VAE codes)
    finish: Callable | None = None  # (cfg, args, ctx) -> cfg: the derived fields, after the flags
    load_init: Callable | None = None  # (task, name): --init's weights into a new task
    synthetic: Callable | None = None  # (cfg, i, torch.Generator) -> a batch item of the right shapes
    shipped_context: Callable | None = None  # (registry entry) -> ctx for ``finish`` in the planner's estimate
    # (cfg, val_root, args, ctx) -> Task, where the task needs more than (cfg, val_root); val_root None: no
    # validation clips (a plan); args None: the planner's estimate of the shipped run
    make: Callable | None = None
    read_config: Callable | None = None  # (dict) -> the model config of --init's model (default: from_dict)

    def make_task(self, cfg, val_root, args, ctx: dict):
        return self.make(cfg, val_root, args, ctx) if self.make else self.task(cfg, val_root)

    @property
    def shipped(self) -> tuple[str, str | None]:
        """(registry kind, stage) of the shipped model this training produces: the task's own (``Task.shipped``)."""
        return shipped_of(self.task)

    @property
    def model_config(self) -> type:
        return typing.get_type_hints(self.config)[self.model]


@dataclass(frozen=True)
class Flag:
    option: str  # --segment-length
    path: str  # segment_length, generator.channels, generator.audio.hop_length: where its value goes
    cls: type  # the dataclass holding the field
    name: str  # the field


def flags(spec: TrainTask) -> list[Flag]:
    """The generated flags of ``spec``: its train config's fields, its model config's and the listed audio fields."""
    model_cls = spec.model_config
    top = {f.name for f in dataclasses.fields(spec.config)}
    out = []
    for cls, prefix in ((spec.config, ""), (model_cls, spec.model + ".")):
        for f in dataclasses.fields(cls):
            if f.name in spec.derived or flag_kwargs(cls, f.name) is None:
                continue
            option = f"{spec.model}-{f.name}" if prefix and f.name in top else f.name
            out.append(Flag("--" + option.replace("_", "-"), prefix + f.name, cls, f.name))
    if spec.audio_flags:
        audio_cls = typing.get_type_hints(model_cls)["audio"]
        out += [Flag("--" + n.replace("_", "-"), f"{spec.model}.audio.{n}", audio_cls, n) for n in spec.audio_flags]
    return out


def overrides(spec: TrainTask, args) -> dict:
    """The flags given on the command line (not None) as ``path -> value`` for ``studio.config.override``."""
    return {f.path: flag_value(f.cls, f.name, getattr(args, f.path)) for f in flags(spec)
            if getattr(args, f.path, None) is not None}


def _default(spec: TrainTask, f: Flag):
    obj = spec.config()
    for part in f.path.split("."):
        obj = getattr(obj, part)
    return list(obj) if isinstance(obj, tuple) else obj


def add_config_flags(group, specs: list[TrainTask]) -> None:
    """One flag per config field of ``specs`` (the architectures of one command): unset (None) unless given, the
    help saying each architecture's default; a flag only some architectures have says which."""
    seen: dict[str, list] = {}
    for spec in specs:
        for f in flags(spec):
            seen.setdefault(f.option, []).append((spec, f))
    for option, owners in seen.items():
        spec, f = owners[0]
        if any(o.path != f.path for _, o in owners):
            raise TypeError(f"{option} means {sorted({o.path for _, o in owners})} in different architectures.")
        help_text = f.cls.__dataclass_fields__[f.name].metadata.get("help") or field_comments(f.cls).get(f.name, "")
        if len(specs) > 1 and len(owners) < len(specs):
            help_text = f"{', '.join(s.arch for s, _ in owners)} only: {help_text}"
        defaults = [(s.arch, _default(s, o)) for s, o in owners]
        shown = (f"{defaults[0][1]}" if len({repr(d) for _, d in defaults}) == 1
                 else ", ".join(f"{a} {d}" for a, d in defaults))
        help_text = f"{help_text} (default: {shown})".strip().replace("%", "%%")
        kwargs = flag_kwargs(f.cls, f.name)
        if kwargs.get("action") is None:  # the flag's name, not its dotted destination
            kwargs.setdefault("metavar", option.lstrip("-").replace("-", "_").upper())
        group.add_argument(option, dest=f.path, default=None, help=help_text, **kwargs)


def build_config(spec: TrainTask, args, ctx: dict, base=None):
    """The run's config: ``base`` (the default or the ``--config`` file), the ``--init`` model's architecture, the
    flags, then the derived fields."""
    cfg = base if base is not None else spec.config()
    if getattr(args, "init", None):  # fine-tuning: the architecture is the initial model's
        entry = registry.resolve(args.init, kind=spec.shipped[0])
        if spec.arch is not None and (entry.architecture or ARCHS[spec.command][0]) != spec.arch:
            raise ConfigMismatch(f"--init {args.init} is a {entry.architecture or ARCHS[spec.command][0]} "
                                 f"{spec.command}; --arch {spec.arch} needs a {spec.arch} one.")
        cfg = replace(cfg, **{spec.model: _read_model_config(spec, entry.config)})
    cfg = override(cfg, overrides(spec, args))
    return spec.finish(cfg, args, ctx) if spec.finish else cfg


def _read_model_config(spec: TrainTask, d: dict):
    return (spec.read_config or (lambda d: from_dict(spec.model_config, d)))(d)


def load_state(net: torch.nn.Module, state: dict, name: str) -> None:
    """``state`` into ``net``, or a one-line ConfigMismatch naming ``--init``."""
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a shape differs
        reason = str(e).splitlines()[-1].strip()
        raise ConfigMismatch(f"--init {name} does not fit the network being trained ({reason}).") from None
    if unexpected or missing:
        raise ConfigMismatch(f"--init {name} does not fit the network being trained "
                             f"({len(missing)} missing, {len(unexpected)} unexpected weights).")


# ------------------------------------------------------------------------------------------- the hand-written flags
def _init_flag(what: str, extra: str = "") -> Callable:
    def add(g):
        g.add_argument("--init", default=None, help=f"start from this {what} (registry name or folder) to fine-tune "
                       f"it{extra}")
    return add


def _domains_flag(default, help_text: str) -> Callable:
    def add(g):
        g.add_argument("--domains", nargs="+", default=default, help=help_text)
    return add


def _vocoder_flags(g) -> None:
    g.add_argument("--arch", default="melgan", choices=ARCHS["vocoder"],
                   help="melgan: the paper's generator (GAN training); spectral: the studio's frame-rate STFT "
                        "generator with phase-vocoder synthesis (studio.vocoder.spectral; regression training). A flag "
                        "marked 'melgan only' or 'spectral only' is ignored by the other")
    g.add_argument("--harmonic", action="store_true",
                   help="melgan only: add the oscillator bank (studio.vocoder.harmonic; not in the paper): pitch for "
                        "held notes")
    _init_flag("vocoder", ", e.g. melgan-music-22k; the discriminator starts fresh")(g)


def _prior_flags(g) -> None:
    g.add_argument("--vqvae", default=None, help="the trained VQ-VAE folder (a run's export/)")
    _domains_flag(["piano"], "the dataset's domains to encode")(g)


def _both(*adders) -> Callable:
    def add(g):
        for a in adders:
            a(g)
    return add


# ------------------------------------------------------------------------------------------------- the entries
def _segments(args, audio, segment_length: int, **kwargs):
    from .data import SegmentDataset

    return SegmentDataset(args.data, audio, segment_length, "train", seed=args.seed, **kwargs)


def _noise_item(cfg, i, g) -> dict:
    return {"audio": torch.randn(1, cfg.segment_length, generator=g) * 0.1}


def _harmonic(cfg, args, ctx):
    """The oscillator bank (``cfg.harmonic``): the ``--init`` model's, else a new one with ``--harmonic``."""
    if cfg.harmonic is None and getattr(args, "init", None):
        cfg = replace(cfg, harmonic=read_vocoder_config(registry.resolve(args.init, kind="vocoder").config)[1])
    if cfg.harmonic is None and getattr(args, "harmonic", False):
        from .vocoder.harmonic import HarmonicConfig

        cfg = replace(cfg, harmonic=HarmonicConfig())
    return cfg


def _load_vocoder(task, name):
    from .vocoder import Vocoder

    v = Vocoder.from_pretrained(name, fold=False)
    load_state(task.nets["generator"], v.generator.state_dict(), name)
    if v.harmonic is not None:  # (a vocoder without a bank may start one: the bank then starts fresh)
        load_state(task.nets["harmonic"], v.harmonic.state_dict(), name)


def _translator_domains(cfg, args, ctx):
    """The domains (all in the manifest; notes mode: those with notes) and, in notes mode, their ranges."""
    if getattr(args, "init", None):  # the initial model's domains
        return cfg
    from .data import read_manifest
    from .notes import read_ranges

    model = cfg.model
    if getattr(args, "model.down", None) is None:  # unset: the mode's own (notes 1, universal 2)
        model = replace(model, down=None)
    ranges = read_ranges(args.data) if model.mode == "notes" else {}
    domains = args.domains or sorted({e.domain for e in read_manifest(args.data, "train")
                                      if model.mode != "notes" or e.domain in ranges})
    if model.mode == "notes" and set(domains) - set(ranges):
        raise StudioError(f"{args.data} has no notes for {sorted(set(domains) - set(ranges))}: the notes mode trains on "
                          "parallel renders with their notes (data_recipes.real or .render write them; --mode "
                          "universal needs none).")
    return replace(cfg, model=replace(model, domains=tuple(domains),
                                      ranges=tuple(ranges[d] for d in domains) if model.mode == "notes" else ()))


def _translator_dataset(cfg, args, ctx):
    notes = cfg.model.mode == "notes"
    return _segments(args, cfg.model.audio, cfg.segment_length, domains=list(cfg.model.domains),
                     parallel=notes or cfg.parallel > 0, notes=notes, augment_notes=cfg.augment_notes,
                     transcribed=cfg.transcribed, note_drop=cfg.note_drop)


def _load_translator(task, name):
    from .translation.pipeline import load_translator_model

    net = task.nets["model"]
    load_state(net, net.widen_state(load_translator_model(name)[0].state_dict()), name)  # --source-mel may widen it


def _prior_context(args, planning: bool) -> dict:
    """The VQ-VAE (``--vqvae``, the run's own on resume, the shipped one for a plan) and the corpus as its codes."""
    from .generation.pipeline import load_vqvae
    from .train.checkpoint import read_checkpoint_meta

    vqvae_dir = args.vqvae or (registry.DEFAULTS["generator"] if planning else None)
    ckpt = Path(args.out) / "checkpoint.safetensors" if not planning else None
    if ckpt is not None and args.resume and ckpt.is_file():
        vqvae_dir = read_checkpoint_meta(ckpt)["extra"]["config"]["vqvae"]
    if not vqvae_dir:
        raise StudioError("give the trained VQ-VAE with --vqvae DIR (e.g. runs/vqvae/export).")
    vqvae = load_vqvae(vqvae_dir)
    if args.threads:  # encoding the corpus comes before the loop sets them (hours of audio: minutes on a busy CPU)
        torch.set_num_threads(args.threads)
    return {"vqvae": vqvae, "vqvae_dir": str(vqvae_dir),
            "train_codes": encode_corpus(vqvae, args.data, "train", args.domains),
            "val_codes": [] if planning else encode_corpus(vqvae, args.data, "valid", args.domains)}


def _shipped_vqvae(entry) -> dict:
    from .generation.pipeline import load_vqvae

    return {"vqvae": load_vqvae(entry.path), "vqvae_dir": str(entry.path), "val_codes": []}


def _prior_vqvae(cfg, args, ctx):
    return replace(cfg, vqvae=ctx["vqvae_dir"], model=replace(cfg.model, vocab=ctx["vqvae"].config.codebook_size))


MELGAN = TrainTask(
    command="vocoder", arch="melgan", help="train the MelGAN vocoder (paper settings by default)",
    config=VocoderTrainConfig, model="generator", task=VocoderTask,
    dataset=lambda cfg, args, ctx: _segments(args, cfg.generator.audio, cfg.segment_length),
    max_steps=400_000, batch=16, min_hours=("total", 1.0),
    audio_flags=("sample_rate", "hop_length"), add_flags=_vocoder_flags, finish=_harmonic,
    load_init=_load_vocoder, synthetic=_noise_item, read_config=lambda d: read_vocoder_config(d)[0],
    shipped_record=(("segment", "segment_length"), ("lambda_stft", "lambda_stft"), ("lambda_mel", "lambda_mel"),
                    ("adversarial_from", "adversarial_from")))

SPECTRAL = replace(
    MELGAN, arch="spectral", config=SpectralTrainConfig, audio_flags=(), finish=None, read_config=None,
    task=SpectralVocoderTask, shipped_record=(("segment", "segment_length"),))

TRANSLATOR = TrainTask(
    command="translator", arch=None, help="train the music domain translator on a multi-domain dataset",
    config=TranslatorTrainConfig, model="model", task=TranslatorTask,
    dataset=_translator_dataset, read_config=translator_config,
    max_steps=20_000, batch=16, min_hours=("per domain", 0.25), derived=("domains", "ranges"),
    add_flags=_both(_domains_flag(None, "domains to learn (default: all in the manifest; notes mode: all with notes)"),
                    _init_flag("translator")),
    finish=_translator_domains, load_init=_load_translator,
    synthetic=lambda cfg, i, g: _noise_item(cfg, i, g) | {
        "domain": i % len(cfg.model.domains), "target_audio": _noise_item(cfg, i, g)["audio"],
        "target_domain": (i + 1) % len(cfg.model.domains),
        "roll": torch.zeros(2, PITCHES, cfg.segment_length // cfg.model.audio.hop_length)})

def _transcriber_dataset(cfg, args, ctx):
    from .notes import read_ranges

    domains = args.domains or sorted(read_ranges(args.data))
    if not domains:
        raise StudioError(f"{args.data} has no notes: the transcriber trains on renders with the notes they played "
                          "(data_recipes.real or .render write them).")
    return _segments(args, cfg.model.audio, cfg.segment_length, domains=domains, notes=True, augment_notes=False)


TRANSCRIBER = TrainTask(
    command="transcriber", arch=None, help="train the note transcriber (audio -> notes) on renders with their notes",
    config=TranscriberTrainConfig, model="model", task=TranscriberTask,
    dataset=_transcriber_dataset, read_config=transcriber_config,
    max_steps=5_000, batch=8, min_hours=("per domain", 0.25),
    add_flags=_domains_flag(None, "rendered domains to learn from (default: all with notes)"),
    synthetic=lambda cfg, i, g: _noise_item(cfg, i, g) | {
        "roll": torch.zeros(2, PITCHES, cfg.segment_length // cfg.model.audio.hop_length)})

VQVAE = TrainTask(
    command="vqvae", arch=None, help="train the VQ-VAE over mel frames (piano by default)",
    config=VQVAETrainConfig, model="model", task=VQVAETask,
    make=lambda cfg, val_root, args, ctx: VQVAETask(cfg, val_root, domains=tuple(args.domains) if args else ("piano",)),
    dataset=lambda cfg, args, ctx: _segments(args, cfg.model.audio, cfg.segment_length, domains=list(args.domains)),
    max_steps=20_000, batch=16, min_hours=("per domain", 0.25),
    add_flags=_domains_flag(["piano"], "the dataset's domains to learn"), synthetic=_noise_item)

PRIOR = TrainTask(
    command="prior", arch=None, help="train the Transformer prior over a trained VQ-VAE's codes",
    config=PriorTrainConfig, model="model", task=PriorTask,
    make=lambda cfg, val_root, args, ctx: PriorTask(cfg, ctx["vqvae"], ctx.get("val_codes")),
    dataset=lambda cfg, args, ctx: CodeDataset(ctx["train_codes"], cfg.model.context, args.seed),
    max_steps=20_000, batch=32, min_hours=("per domain", 0.25),
    derived=("vqvae", "vocab"), shipped_record=(), add_flags=_prior_flags, prepare=_prior_context,
    finish=_prior_vqvae, shipped_context=_shipped_vqvae,
    synthetic=lambda cfg, i, g: {"codes": torch.randint(cfg.model.vocab, (cfg.model.context,), generator=g)})

TASKS: dict[str, tuple[TrainTask, ...]] = {  # command -> its architectures, the default first
    "vocoder": (MELGAN, SPECTRAL),
    "translator": (TRANSLATOR,),
    "transcriber": (TRANSCRIBER,),
    "vqvae": (VQVAE,),
    "prior": (PRIOR,),
}
ARCHS = {command: [s.arch for s in specs] for command, specs in TASKS.items() if specs[0].arch}


def task_for(command: str, arch: str | None = None) -> TrainTask:
    """The entry of ``command`` for ``arch`` (None: the default architecture)."""
    specs = TASKS[command]
    return next((s for s in specs if s.arch == arch), specs[0])


def add_train_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """``command``'s hand-written flags, then one per config field of its architectures."""
    specs = list(TASKS[command])
    g = parser.add_argument_group(command)
    if specs[0].add_flags:
        specs[0].add_flags(g)
    add_config_flags(g, specs)


def shipped_task(command: str):
    """(training task with the shipped model's architecture, the card's batch size, the card's record): the planner's
    estimate of the run that produced the shipped model."""
    kind, stage = task_for(command).shipped
    entry, rec = shipped_entry(kind, stage)
    spec = task_for(command, entry.architecture)
    model = _read_model_config(spec, entry.config[stage] if stage else entry.config)
    cfg = replace(spec.config(), **{spec.model: model},
                  **{field: rec[key] for key, field in spec.shipped_record if key in rec})
    ctx = {}
    if spec.shipped_context:  # the prior: the shipped VQ-VAE (no corpus to encode)
        ctx = spec.shipped_context(entry)
        cfg = spec.finish(cfg, None, ctx)
    return spec.make_task(cfg, None, None, ctx), int(rec.get("batch", 16)), rec
