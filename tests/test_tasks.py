"""The task table (``studio.tasks``): ``studio train X``'s flags are its config dataclasses' fields, so a new training
option is one field; unset flags leave the config alone; the flags users already type keep their meaning."""

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field

import pytest

from studio import tasks
from studio.cli import build_parser
from studio.config import override
from studio.tasks import TASKS, TRANSLATOR, build_config, flags, task_for
from studio.train.estimate import targets

# The flags of each command before the table generated them (they must keep working: READMEs, cards, scripts).
BEFORE = {
    "vocoder": "--adversarial-from --arch --channels --harmonic --harmonic-lr --harmonic-noise-db --harmonic-steps "
               "--hop-length --init --lambda-mel --lambda-stft --lambda-sync --lowpass-prob --lr --mix-prob "
               "--noise-db --ratios --sample-rate --segment-length --stft-resolutions",
    "translator": "--channels --confusion --domains --init --lr --parallel --segment-length",
    "vqvae": "--channels --codebook-size --domains --lr --segment-length",
    "prior": "--context --domains --dropout --layers --lr --vqvae --width",
    "transcriber": "--channels --domains --key-channels --lr --mix --room --segment-length",
}
LOOP = "--data --out --resume --max-steps --batch-size --batch --val-every --ckpt-every --log-every --seed " \
       "--num-workers --device --precision --threads --max-minutes --keep-best --patience --config"


def _subparser(parser, *path):
    for name in path:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def _options(parser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def _parse(*argv):
    return build_parser().parse_args(["train", *argv, "--data", "d", "--out", "o"])


@pytest.mark.parametrize("command", list(TASKS))
def test_every_config_field_is_a_flag(command):
    """Each field of the train config and of its model config is a flag of ``studio train`` and ``studio plan``,
    except nested dataclasses (audio settings, the discriminator) and the fields the entry derives."""
    for verb in ("train", "plan"):
        opts = _options(_subparser(build_parser(), verb, command))
        for spec in TASKS[command]:
            model_cls = spec.model_config
            expected = set()
            for cls, prefix in ((spec.config, ""), (model_cls, spec.model + "-")):
                hints = typing.get_type_hints(cls)
                for f in dataclasses.fields(cls):
                    hint = hints[f.name]
                    hint = next((h for h in typing.get_args(hint) if h is not type(None)), hint) \
                        if type(None) in typing.get_args(hint) else hint
                    if f.name in spec.derived or dataclasses.is_dataclass(hint):
                        continue
                    clash = prefix and f.name in {g.name for g in dataclasses.fields(spec.config)}
                    expected.add("--" + ((prefix if clash else "") + f.name).replace("_", "-"))
            expected |= {"--" + n.replace("_", "-") for n in spec.audio_flags}
            assert expected <= opts, (verb, spec.arch, sorted(expected - opts))


@pytest.mark.parametrize("command", list(TASKS))
def test_the_flags_users_already_type_keep_working(command):
    for verb in ("train", "plan"):
        opts = _options(_subparser(build_parser(), verb, command))
        assert set(BEFORE[command].split()) <= opts
        assert set(LOOP.split()) - ({"--out", "--resume"} if verb == "plan" else set()) <= opts


def test_unset_flags_leave_the_config_and_zero_is_a_value():
    a = _parse("vocoder")
    assert build_config(task_for("vocoder"), a, {}) == task_for("vocoder").config()
    a = _parse("vocoder", "--lr", "0", "--channels", "64", "--lambda-stft", "0")
    cfg = build_config(task_for("vocoder"), a, {})
    assert cfg.lr == 0 and cfg.generator.channels == 64  # `a.lr or cfg.lr` used to drop --lr 0
    cfg = build_config(task_for("vqvae"), _parse("vqvae", "--lr", "0", "--codebook-size", "64"), {})
    assert cfg.lr == 0 and cfg.model.codebook_size == 64


def test_flags_reach_nested_fields_together_and_convert():
    """--sample-rate, --hop-length and --ratios land in one rebuild of the generator config (its check of ratios
    x hop sees them together); FFT sizes become (n, n/4, n); lists become tuples; bools have --no-."""
    a = _parse("vocoder", "--sample-rate", "44100", "--hop-length", "512", "--ratios", "8", "8", "4", "2",
               "--stft-resolutions", "512", "4096", "--noise-db", "-80", "-50", "--no-weight-norm")
    cfg = build_config(task_for("vocoder"), a, {})
    g = cfg.generator
    assert (g.audio.sample_rate, g.audio.hop_length, g.ratios, g.weight_norm) == (44100, 512, (8, 8, 4, 2), False)
    assert cfg.stft_resolutions == ((512, 128, 512), (4096, 1024, 4096)) and cfg.noise_db == (-80.0, -50.0)


def test_arch_picks_the_entry_and_ignores_the_other_arch_flags():
    a = _parse("vocoder", "--arch", "spectral", "--lowpass-prob", "0.5", "--lambda-stft", "1", "--channels", "32")
    cfg = build_config(task_for("vocoder", a.arch), a, {})
    assert type(cfg).__name__ == "SpectralTrainConfig" and cfg.lowpass_prob == 0.5 and cfg.generator.channels == 32
    assert "--lowpass-prob" in {f.option for f in flags(task_for("vocoder", "spectral"))}
    assert "--lambda-stft" not in {f.option for f in flags(task_for("vocoder", "spectral"))}


def test_help_comes_from_the_field_metadata_or_comment_and_names_the_default():
    helps = {o: a.help for a in _subparser(build_parser(), "train", "translator")._actions for o in a.option_strings}
    assert "domain-confusion" in helps["--confusion"] and "(default: 0.01)" in helps["--confusion"]
    helps = {o: a.help for a in _subparser(build_parser(), "train", "vocoder")._actions for o in a.option_strings}
    assert "MR-STFT" in helps["--lambda-stft"] and helps["--lowpass-prob"].startswith("spectral only:")


# A training option added later, as the one edit it takes: a field (here on a copy of the translator's configs).
@dataclass(frozen=True)
class _Model(TRANSLATOR.model_config):
    register: str = "mid"  # pitch register the decoder favours
    dropout: float = 0.0  # the train config below has one too: this one is --model-dropout


@dataclass
class _Train(TRANSLATOR.config):
    model: _Model = field(default_factory=_Model)
    conditioning: typing.Literal["audio", "score"] = "audio"  # what the translator is conditioned on
    warm_start: bool = False
    dropout: float = 0.1


def test_a_new_config_field_is_a_working_flag_with_no_other_edit(monkeypatch):
    monkeypatch.setitem(TASKS, "translator", (dataclasses.replace(TRANSLATOR, config=_Train),))
    opts = _options(_subparser(build_parser(), "train", "translator"))
    assert {"--conditioning", "--register", "--warm-start", "--no-warm-start", "--model-dropout", "--dropout"} <= opts
    a = _parse("translator", "--conditioning", "score", "--register", "low", "--warm-start", "--model-dropout", "0.2",
               "--domains", "piano", "violin", "--mode", "universal")  # (universal: no notes to find in "d")
    cfg = build_config(task_for("translator"), a, {})
    assert (cfg.conditioning, cfg.model.register, cfg.warm_start) == ("score", "low", True)
    assert (cfg.model.dropout, cfg.dropout) == (0.2, 0.1)
    assert cfg.model.domains == ("piano", "violin")
    with pytest.raises(SystemExit):  # a Literal's values are the flag's choices
        _parse("translator", "--conditioning", "midi")
    assert build_config(task_for("translator"), _parse("translator", "--domains", "piano", "--mode", "universal"),
                        {}).conditioning == "audio"


def test_a_field_without_a_flag_form_is_refused_by_name():
    @dataclass
    class Odd:
        pairs: dict = field(default_factory=dict)

    with pytest.raises(TypeError, match="Odd.pairs"):
        tasks.flag_kwargs(Odd, "pairs")


def test_override_rebuilds_each_dataclass_once():
    cfg = override(task_for("vocoder").config(), {"generator.audio.hop_length": 128, "generator.ratios": (8, 4, 2, 2)})
    assert cfg.generator.audio.hop_length == 128 and cfg.generator.ratios == (8, 4, 2, 2)


@pytest.mark.parametrize("command", list(TASKS))
def test_the_planner_builds_each_shipped_run_from_the_table(command):
    """``studio plan``'s estimate of the shipped models (the app's Models tab): the entry for the shipped
    architecture, its record's settings and batch items of the right shapes."""
    import torch

    from studio.plan import SyntheticData

    task, batch, rec = tasks.shipped_task(command)
    assert batch == rec.get("batch", 16)
    item = SyntheticData(command, task)[3]
    if command == "prior":
        assert item["codes"].shape == (task.cfg.model.context,) and item["codes"].max() < task.cfg.model.vocab
    else:
        assert item["audio"].shape == (1, task.cfg.segment_length) and isinstance(item["audio"], torch.Tensor)
    assert json.dumps(task.state_extra())  # a real task of the loop
    rows = {r["name"]: r for r in targets(task, 1.0, batch, train_hours=10.0)}  # the time to the card's steps
    shipped = next(r for name, r in rows.items() if name.startswith("shipped"))
    assert shipped["steps"] == rec["steps"] and shipped["epochs"] == rec["steps"] * batch * task.item_seconds() / 36000


def test_cli_trains_each_table_entry_end_to_end(rendered, tmp_path):
    """VQ-VAE -> prior over its codes -> translator, then the translator fine-tuned from it with ``--lr 0`` (its
    weights come back unchanged: 0 is a learning rate, not "unset"), each through ``studio train`` at toy size."""
    import torch

    from conftest import run_cli
    from studio.weights import load_tensors

    loop = ("--batch-size", "2", "--val-every", "0", "--ckpt-every", "0", "--threads", "1")
    env = {"OMP_NUM_THREADS": "1"}
    run_cli("train", "vqvae", "--data", rendered, "--out", tmp_path / "vq", "--channels", "16", "--latent", "8",
            "--dilations", "1", "--codebook-size", "16", "--segment-length", "4096", "--max-steps", "2", *loop, env=env)
    run_cli("train", "prior", "--data", rendered, "--vqvae", tmp_path / "vq" / "export", "--out", tmp_path / "pr",
            "--width", "16", "--layers", "1", "--heads", "2", "--context", "16", "--max-steps", "2", *loop, env=env)
    prior = json.loads((tmp_path / "pr" / "export" / "config.json").read_text())["config"]["prior"]
    assert (prior["vocab"], prior["width"], prior["context"]) == (16, 16, 16)  # vocab: the VQ-VAE's codebook
    tiny = ("--channels", "16", "--latent", "8", "--dilations", "1", "--domain-dim", "8", "--segment-length", "4096")
    run_cli("train", "translator", "--data", rendered, "--out", tmp_path / "tr", "--domains", "piano", "violin",
            *tiny, "--max-steps", "1", *loop, env=env)
    run_cli("train", "translator", "--data", rendered, "--out", tmp_path / "ft", "--init", tmp_path / "tr" / "export",
            "--lr", "0", "--max-steps", "1", *loop, env=env)
    start, _ = load_tensors(tmp_path / "tr" / "export" / "model.safetensors")
    after, _ = load_tensors(tmp_path / "ft" / "export" / "model.safetensors")
    assert start.keys() == after.keys() and all(torch.equal(start[k], after[k]) for k in start)
    config = json.loads((tmp_path / "ft" / "export" / "config.json").read_text())["config"]
    assert config["domains"] == ["piano", "violin"] and config["channels"] == 16  # the initial model's



@pytest.mark.parametrize("command, sizes", [("vqvae", ("--channels", "16", "--codebook-size", "16")),
                                            ("prior", ("--width", "16", "--layers", "1", "--context", "16"))])
def test_studio_plan_runs_every_table_entry(rendered, command, sizes):
    """``studio plan`` for the entries test_plan.py leaves out (the prior encodes the data with the shipped VQ-VAE)."""
    from conftest import run_cli

    r = run_cli("plan", command, "--data", rendered, *sizes, "--batch", "2", "--steps", "1", "--warmup", "0",
                "--threads", "1", "--json", "-", env={"OMP_NUM_THREADS": "1"}, timeout=300)
    p = json.loads(r.stdout[r.stdout.index("{"):])
    assert p["model"] == command and p["steps_run"] == 1 and p["minimum"]["scope"] == "per domain"
    assert any(t["name"].startswith("shipped") for t in p["targets"]) and p["item_seconds"] > 0
