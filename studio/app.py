"""The studio web UI: ``python -m studio.app`` (Gradio, http://127.0.0.1:7860 by default).

Thin by design: every handler validates its input, calls the public API (Translator, Generator, Vocoder) and
draws spectrograms. User errors become a one-line message in the UI (``gr.Error``), never a traceback. Only files
uploaded or recorded through the app are read: a path outside Gradio's upload folder is refused.
Limits come from flags or environment variables: STUDIO_MAX_FILE_MB, STUDIO_MAX_SECONDS, STUDIO_CONCURRENCY.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from . import registry
from .audio import AudioConfig, is_silent, load_audio, prepare_audio, save_audio
from .errors import ModelNotFound, StudioError
from .metrics import mel_l1
from .plots import figure_png, mel_figure


MODEL_RATE = AudioConfig().sample_rate  # every shipped model's (each checks its AudioConfig on load)
MAX_DECODED_MB = 256  # one decoded upload at most (300 s of 44.1 kHz stereo for Demucs is 101 MB)


@dataclass
class AppConfig:
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    max_file_mb: float = float(os.environ.get("STUDIO_MAX_FILE_MB", 50))
    max_seconds: float = float(os.environ.get("STUDIO_MAX_SECONDS", 300))
    concurrency: int = int(os.environ.get("STUDIO_CONCURRENCY", 2))


def user_error(message: str) -> gr.Error:
    """A one-line message for the user; not an exception worth a traceback in the server's log."""
    return gr.Error(message, print_exception=False)


def upload_folder() -> Path:
    """Where Gradio stores uploads and recordings: ``$GRADIO_TEMP_DIR``, else ``<temp dir>/gradio``."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def in_upload_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` (symlinks and ``..`` resolved) lies inside the upload folder."""
    try:
        return Path(path).resolve().is_relative_to(upload_folder())
    except (OSError, RuntimeError, ValueError):  # e.g. a symlink loop, a NUL byte
        return False


class Studio:
    """The models (loaded once, on first use) and the work behind each tab."""

    def __init__(self, config: AppConfig):
        self.config = config
        self._lock = threading.RLock()
        self._cache: dict[str, object] = {}
        self.out_dir = Path(tempfile.mkdtemp(prefix="studio-out-"))

    def _get(self, key: str, load):
        with self._lock:
            if key not in self._cache:
                try:
                    self._cache[key] = load()
                except ModelNotFound as e:
                    self._cache[key] = e
        value = self._cache[key]
        if isinstance(value, Exception):
            raise user_error(str(value))
        return value

    def vocoder(self):
        from .vocoder import Vocoder

        return self._get("vocoder", lambda: Vocoder.from_pretrained())

    def translator(self):
        from .translation import Translator

        return self._get("translator", lambda: Translator.from_pretrained(vocoder=self.vocoder()))

    def generator(self):
        from .generation import Generator

        return self._get("generator", lambda: Generator.from_pretrained(vocoder=self.vocoder()))

    def demucs(self):
        from .separation import load_demucs

        return self._get("demucs", load_demucs)

    def demucs_status(self) -> str | None:
        """None when Demucs weights are installed, else the reason stem isolation is off."""
        try:
            self.demucs()
            return None
        except gr.Error as e:
            return e.message

    # ------------------------------------------------------------------------------------------- helpers
    def load(self, path, what: str = "clip", stem: bool = False) -> tuple[np.ndarray, int]:
        """An upload decoded block by block straight to the models' rate (mono), or Demucs' (44.1 kHz stereo)."""
        if not path:
            raise user_error(f"Upload or record a {what} first.")
        path = Path(path)
        if not in_upload_folder(path):  # a path sent through the API, not an upload: never read the server's files
            raise user_error(f"The {what} must be uploaded or recorded through the app; "
                             f"files on the server are not read.")
        try:
            audio, sr = load_audio(path, 44100 if stem else MODEL_RATE, mono=not stem,
                                   max_seconds=self.config.max_seconds, max_decoded_mb=MAX_DECODED_MB)
        except StudioError as e:
            raise user_error(str(e)) from None
        if is_silent(audio):
            raise user_error(f"The {what} is silent (below -60 dBFS); upload one with sound in it.")
        return audio, sr

    def write(self, audio: np.ndarray, sr: int, stem: str) -> str:
        return str(save_audio(self.out_dir / f"{stem}-{time.time_ns()}.wav", audio, sr))

    def figure(self, panels, config, name: str, marks=None) -> str:
        return figure_png(mel_figure(panels, config, marks), self.out_dir / f"{name}-{time.time_ns()}.png")

    # --------------------------------------------------------------------------------------------- tabs
    def translate(self, path, target, use_stem, stem, blend_with, blend, progress=gr.Progress()):
        progress(0.05, desc="loading")
        audio, sr = self.load(path, stem=bool(use_stem))
        t = self.translator()
        if target not in t.domains:
            raise user_error(f"Choose a target instrument: {', '.join(t.domains)}.")
        demucs = self.demucs() if use_stem else None
        progress(0.3, desc="translating")
        start = time.perf_counter()
        try:
            y, out_sr = t(audio, sr, target=target, stem=stem if use_stem else None, demucs=demucs,
                          blend_with=blend_with if blend_with and blend_with != "(none)" else None, blend=float(blend))
        except StudioError as e:
            raise user_error(str(e)) from None
        seconds = time.perf_counter() - start
        progress(0.9, desc="drawing")
        src = t.prepare(audio, sr)
        fig = self.figure([("input", src), (f"as {target}", y)], t.config, "translate")
        mix = f" blended {float(blend):.0%} with **{blend_with}**" if blend_with not in (None, "", "(none)") and blend else ""
        info = (f"Translated {len(y) / out_sr:.1f} s to **{target}**{mix} in {seconds:.2f} s "
                f"({len(y) / out_sr / seconds:.1f}× real time) with `{t.name}`.")
        return self.write(y, out_sr, f"translated-{target}"), fig, info

    def generate(self, seconds, temperature, top_k, seed, count, prompt_path, prompt_seconds, progress=gr.Progress()):
        g = self.generator()
        prompt = None
        if prompt_path:
            prompt = self.load(prompt_path, "prompt")  # (audio, sr)
        files, images = [], []
        count = int(count)
        start = time.perf_counter()
        for i in progress.tqdm(range(count), desc="generating"):
            try:
                y, sr = g.generate(float(seconds), float(temperature), seed=int(seed) + i,
                                   prompt=prompt[0] if prompt else None, prompt_sr=prompt[1] if prompt else None,
                                   prompt_seconds=float(prompt_seconds) if prompt else None,
                                   top_k=int(top_k) if top_k else None)
            except StudioError as e:
                raise user_error(str(e)) from None
            title = f"sample {int(seed) + i}"
            # the boundary: where the kept prompt ends (a prompt shorter than asked is kept whole)
            marks = {title: min(float(prompt_seconds), prompt[0].shape[-1] / prompt[1], len(y) / sr)} if prompt else None
            files.append(self.write(y, sr, f"piano-seed{int(seed) + i}"))
            images.append((self.figure([(title, y)], g.config, "gen", marks), title))
        info = f"{count} sample(s) of {float(seconds):.1f} s in {time.perf_counter() - start:.1f} s with `{g.name}`."
        return files[0], images, files, info

    def interpolate_generator(self, path_a, path_b, mode, steps, seconds, progress=gr.Progress()):
        return self.interpolate("generator", path_a, path_b, mode, steps, seconds, None, progress)

    def interpolate_translator(self, path_a, path_b, mode, steps, seconds, target, progress=gr.Progress()):
        return self.interpolate("translator", path_a, path_b, mode, steps, seconds, target, progress)

    def interpolate(self, space, path_a, path_b, mode, steps, seconds, target, progress):
        """Interpolate two uploads in the generator's (``space="generator"``) or the translator's latent space."""
        from .explore import interpolate

        model = self.generator() if space == "generator" else self.translator()
        a = self.load(path_a, "clip A")
        b = self.load(path_b, "clip B")
        morph = mode == "Morph over time"
        progress(0.2, desc="interpolating")
        try:
            r = interpolate(model, a[0], b[0], a[1], b[1], steps=int(steps), morph=morph, seconds=float(seconds),
                            target=target if space == "translator" else None)
        except StudioError as e:
            raise user_error(str(e)) from None
        progress(0.9, desc="drawing")
        sr = r.sample_rate
        gap = np.zeros(int(0.25 * sr), dtype=np.float32)  # the steps one after the other, a short pause between
        joined = np.concatenate([x for y in r.audio for x in (y, gap)][:-1])
        files = [self.write(y, sr, f"interp-{t.replace(' ', '').replace('=', '')}") for y, t in zip(r.audio, r.titles())]
        panels = [("A", r.a)] + list(zip(r.titles(), r.audio)) + [("B", r.b)]
        fig = self.figure(panels, model.config, "interpolate")
        what = "a morph from A to B" if morph else f"{len(r.audio)} steps from A to B"
        info = f"{what}, {float(seconds):.1f} s each, through `{model.name}`" + (
            f" decoded as **{target}**" if space == "translator" else " (VQ-VAE latents)") + "."
        return self.write(joined, sr, "interpolation"), fig, files, info

    def estimates(self, progress=gr.Progress()):
        """The planner on this machine for each shipped model's training run, next to the card's figures."""
        from .plan import estimate_shipped

        rows = ["| model | card: steps, wall time, hardware | this machine: s/step | this machine: time for the card's steps |",
                "|---|---|---|---|"]
        for model in progress.tqdm(["vocoder", "translator", "vqvae", "prior"], desc="measuring"):
            try:
                p = estimate_shipped(model)
            except (StudioError, KeyError) as e:
                rows.append(f"| {model} | – | could not measure: {e} | – |")
                continue
            shipped = next((t for t in p.targets if t["name"].startswith("shipped")), None)
            if shipped is None:
                rows.append(f"| {model} | no training record in its config.json | {p.seconds_per_step:.2f} "
                            f"(batch {p.batch}, {p.precision}) | – |")
                continue
            rows.append(f"| {model} | {shipped['steps']:,} steps; {shipped['source'].split(': ', 1)[1]} | "
                        f"{p.seconds_per_step:.2f} (batch {p.batch}, {p.precision}) | {shipped['seconds'] / 60:.1f} min |")
        return "\n".join(rows) + ("\n\nMeasured now with `studio plan` (2 real training steps each after warm-up, "
                                  "on synthetic batches); run `studio plan MODEL --data DIR` for your own data and "
                                  "settings.")

    def compare(self, path, progress=gr.Progress()):
        from .vocoder import GriffinLim

        v = self.vocoder()
        audio, sr = self.load(path)
        progress(0.2, desc="MelGAN")
        start = time.perf_counter()
        with torch.inference_mode():
            y_melgan, out_sr = v.resynthesize(audio, sr)
        rtf = len(y_melgan) / out_sr / (time.perf_counter() - start)
        progress(0.6, desc="Griffin-Lim")
        y_gl, _ = GriffinLim(v.config, 32).resynthesize(audio, sr)
        ref, _ = prepare_audio(audio, sr, out_sr)
        d_m, d_g = mel_l1(ref, y_melgan, v.config), mel_l1(ref, y_gl, v.config)
        fig = self.figure([("input", ref), (f"MelGAN ({v.name})", y_melgan), ("Griffin-Lim, 32 iterations", y_gl)],
                          v.config, "compare")
        table = (f"| vocoder | log-mel L1 to input |\n|---|---|\n| MelGAN `{v.name}` | {d_m:.3f} |\n"
                 f"| Griffin-Lim (32 it.) | {d_g:.3f} |\n\nMelGAN ran at **{rtf:.1f}× real time** on this machine "
                 f"({torch.get_num_threads()} threads). Note: magnitude metrics flatter Griffin-Lim; listen too.")
        return self.write(y_melgan, out_sr, "melgan"), self.write(y_gl, out_sr, "griffin-lim"), fig, table


def _training_line(entry) -> str:
    """'Trained: N steps in M min on HW' from the model's training record (config.json)."""
    recs = entry.training
    recs = {k: v for k, v in recs.items() if isinstance(v, dict)} or ({entry.kind: recs} if recs else {})
    parts = [f"{stage}: {r['steps']:,} steps at batch {r.get('batch', '?')} in {r.get('wall_minutes', '?')} min on "
             f"{r.get('hardware', '?')}" for stage, r in recs.items() if "steps" in r]
    return ("**Trained** — " + "; ".join(parts) + "\n\n") if parts else ""


def models_markdown() -> str:
    from .separation import demucs_dir

    parts = [f"Models are read from `{registry.models_dir()}` (set `STUDIO_MODELS_DIR` to use another folder). "
             f"Each is a folder with `config.json`, `model.safetensors` and a `README.md` card; the defaults are "
             + ", ".join(f"`{v}` ({k})" for k, v in registry.DEFAULTS.items())
             + f". Demucs weights for stem isolation go in `{demucs_dir()}`."]
    entries = registry.list_models()
    if not entries:
        parts.append("**No models are installed.**")
    for e in entries:
        parts.append(f"---\n### {e.name} ({e.kind})\n\n{_training_line(e)}{e.card}")
    return "\n\n".join(parts)


def interpolation_controls(space: str, prefix: str, button: str):
    """The accordion of the interpolation controls: (its button, [clip A, clip B, mode, steps, seconds])."""
    with gr.Accordion(f"Interpolate two clips ({space})", open=False):
        clips = [gr.Audio(sources=["upload", "microphone"], type="filepath", label=f"Clip {c}",
                          elem_id=f"{prefix}-{c.lower()}") for c in "AB"]
        mode = gr.Radio(["Steps", "Morph over time"], value="Steps", label="Mode")
        steps = gr.Slider(2, 8, value=4, step=1, label="Steps")
        seconds = gr.Slider(1, 15, value=4, step=0.5, label="Seconds")
        go = gr.Button(button)
    return go, clips + [mode, steps, seconds]


def build(studio: Studio) -> gr.Blocks:
    try:
        from .translation.pipeline import load_translator_model

        domains = list(load_translator_model()[0].config.domains)
    except StudioError:
        domains = []
    stem_reason = studio.demucs_status()
    with gr.Blocks(title="MelGAN Studio") as demo:
        gr.Markdown("# MelGAN Studio\nMel-spectrogram → waveform with MelGAN: translate timbre, generate piano, "
                    "compare vocoders. Everything runs on this machine.")
        with gr.Tab("Translate"):
            with gr.Row():
                with gr.Column():
                    t_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Your clip")
                    t_target = gr.Dropdown(domains, value=domains[1] if len(domains) > 1 else None,
                                           label="Play it on", interactive=bool(domains))
                    with gr.Accordion("Blend and stems", open=False):
                        t_blend_with = gr.Dropdown(["(none)"] + domains, value="(none)", label="Blend with")
                        t_blend = gr.Slider(0, 1, value=0.0, step=0.05, label="Blend (0 = target only, 1 = blend only)")
                        t_use_stem = gr.Checkbox(False, label="Isolate a stem with Demucs first",
                                                 interactive=stem_reason is None,
                                                 info=stem_reason or "Separates the mixture before translating.")
                        t_stem = gr.Dropdown(["other", "bass", "vocals", "drums"], value="other", label="Stem",
                                             interactive=stem_reason is None)
                    t_go = gr.Button("Translate", variant="primary")
                    ti_go, ti_inputs = interpolation_controls("universal encoder", "ti",
                                                              "Interpolate through the translator")
                    if not domains:
                        gr.Markdown("No translator model is installed: see the Models tab.")
                with gr.Column():
                    t_out = gr.Audio(label="Translated", type="filepath", interactive=False)
                    t_info = gr.Markdown()
                    t_fig = gr.Image(label="Mel spectrograms: before / after", type="filepath")
                    t_files = gr.File(label="Downloads", file_count="multiple")
            t_go.click(studio.translate, [t_in, t_target, t_use_stem, t_stem, t_blend_with, t_blend],
                       [t_out, t_fig, t_info], api_name="translate")
            ti_go.click(studio.interpolate_translator, ti_inputs + [t_target], [t_out, t_fig, t_files, t_info],
                        api_name="interpolate_translator")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column():
                    g_seconds = gr.Slider(1, 30, value=8, step=0.5, label="Seconds")
                    g_temp = gr.Slider(0.1, 1.5, value=1.0, step=0.05, label="Temperature")
                    g_topk = gr.Slider(0, 512, value=0, step=1, label="Top-k (0 = off)")
                    g_seed = gr.Number(0, precision=0, label="Seed")
                    g_count = gr.Slider(1, 8, value=2, step=1, label="How many")
                    with gr.Accordion("Continue this clip", open=False):
                        g_prompt = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Prompt")
                        g_prompt_s = gr.Slider(0.5, 15, value=3, step=0.5, label="Seconds of the prompt to keep")
                    g_go = gr.Button("Generate piano", variant="primary")
                    gi_go, gi_inputs = interpolation_controls("VQ-VAE latents", "gi", "Interpolate")
                with gr.Column():
                    g_audio = gr.Audio(label="First sample", type="filepath", interactive=False)
                    g_info = gr.Markdown()
                    g_gallery = gr.Gallery(label="Spectrograms", columns=1, height="auto")
                    g_files = gr.File(label="Downloads", file_count="multiple")
            g_go.click(studio.generate, [g_seconds, g_temp, g_topk, g_seed, g_count, g_prompt, g_prompt_s],
                       [g_audio, g_gallery, g_files, g_info], api_name="generate")
            gi_fig = gr.Image(label="Interpolation: mel spectrograms", type="filepath")
            gi_go.click(studio.interpolate_generator, gi_inputs,
                        [g_audio, gi_fig, g_files, g_info], api_name="interpolate")
        with gr.Tab("Vocoder"):
            with gr.Row():
                with gr.Column():
                    v_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Your clip")
                    v_go = gr.Button("Resynthesize", variant="primary")
                    v_table = gr.Markdown()
                with gr.Column():
                    v_melgan = gr.Audio(label="MelGAN", type="filepath", interactive=False)
                    v_gl = gr.Audio(label="Griffin-Lim", type="filepath", interactive=False)
            v_fig = gr.Image(label="Mel spectrograms", type="filepath")
            v_go.click(studio.compare, [v_in], [v_melgan, v_gl, v_fig, v_table], api_name="compare")
        with gr.Tab("Models"):
            with gr.Row():
                m_go = gr.Button("Estimate training time on this machine")
            m_table = gr.Markdown("How long would the shipped models' training runs take here? The button runs a "
                                  "few real training steps of each (about half a minute).")
            m_go.click(studio.estimates, [], [m_table], api_name="estimates")
            gr.Markdown(models_markdown())
    return demo


def main(argv=None) -> int:
    d = AppConfig()
    p = argparse.ArgumentParser(prog="python -m studio.app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=d.host, help="interface to bind (default: localhost only)")
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--share", action="store_true", help="create a public Gradio link (needs internet)")
    p.add_argument("--max-file-mb", type=float, default=d.max_file_mb, help="upload size limit (STUDIO_MAX_FILE_MB)")
    p.add_argument("--max-seconds", type=float, default=d.max_seconds, help="clip length limit (STUDIO_MAX_SECONDS)")
    p.add_argument("--concurrency", type=int, default=d.concurrency,
                   help="requests processed at once; others wait in the queue (STUDIO_CONCURRENCY)")
    a = p.parse_args(argv)
    cfg = AppConfig(a.host, a.port, a.share, a.max_file_mb, a.max_seconds, a.concurrency)
    demo = build(Studio(cfg))
    demo.queue(default_concurrency_limit=cfg.concurrency, max_size=64)
    demo.launch(server_name=cfg.host, server_port=cfg.port, share=cfg.share, max_file_size=int(cfg.max_file_mb * 1024 * 1024),
                show_error=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
