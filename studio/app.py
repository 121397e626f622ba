"""The studio web UI: ``python -m studio.app`` (Gradio, http://127.0.0.1:7860 by default).

Thin by design: every handler validates its input, calls the public API (Translator, Generator, Vocoder) and
draws spectrograms. User errors become a one-line message in the UI (``gr.Error``), never a traceback, and never
a server path. Users are kept apart: each session (a browser tab, an API client) writes into its own folder with an
unguessable name, reads only uploads it made itself, and its files are deleted when it ends (the tab closes) or
has been idle for ``--session-minutes``.
Limits come from flags or environment variables: STUDIO_MAX_FILE_MB, STUDIO_MAX_SECONDS, STUDIO_CONCURRENCY,
STUDIO_SESSION_MINUTES.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
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
from .notes import REGISTERS as NOTE_REGISTERS
from .plots import figure_png, mel_figure

MODEL_RATE = AudioConfig().sample_rate  # every shipped model's (each checks its AudioConfig on load)
MAX_DECODED_MB = 256  # one decoded upload at most (300 s of 44.1 kHz stereo for Demucs is 101 MB)
SESSION_PREFIX = "studio-session-"
# the Translate tab's register choice -> Translator's ``register``
REGISTERS = dict(zip(("Fold into its range", "Keep the original octaves"), NOTE_REGISTERS))
REGISTER_CHOICES = tuple(REGISTERS)


@dataclass
class AppConfig:
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    max_file_mb: float = float(os.environ.get("STUDIO_MAX_FILE_MB", 50))
    max_seconds: float = float(os.environ.get("STUDIO_MAX_SECONDS", 300))
    concurrency: int = int(os.environ.get("STUDIO_CONCURRENCY", 2))
    session_minutes: float = float(os.environ.get("STUDIO_SESSION_MINUTES", 60))


def public(message: str) -> str:
    """``message`` with server paths replaced by what a user can act on: the folder's role and its setting."""
    from .separation import ENV as DEMUCS_ENV, demucs_dir

    for folder, name in [(demucs_dir(), f"the Demucs folder (setting {DEMUCS_ENV})"),
                         (registry.models_dir(), "the models folder (setting STUDIO_MODELS_DIR)"),
                         (upload_folder(), "the upload folder")]:
        for form in {str(folder), str(Path(folder).resolve())}:
            message = re.sub(re.escape(form) + r"(/[^\s'\"`,;:()]*)?", lambda m: name if not m.group(1) else
                             f"'{Path(m.group(1)).name}' in {name}", message)
    # anything else that looks like an absolute path: its last part only
    return re.sub(r"(?<![\w.~])(/[^\s/'\"`,;:()]+){2,}", lambda m: f"'{Path(m.group(0)).name}'", message)


def user_error(message: str) -> gr.Error:
    """A one-line message for the user; not an exception worth a traceback in the server's log."""
    return gr.Error(public(message), print_exception=False)


def upload_folder() -> Path:
    """Where Gradio stores uploads and recordings (its cache): ``$GRADIO_TEMP_DIR``, else ``<temp dir>/gradio``."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def in_upload_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` (symlinks and ``..`` resolved) lies inside the upload folder."""
    try:
        return Path(path).resolve().is_relative_to(upload_folder())
    except (OSError, RuntimeError, ValueError):  # e.g. a symlink loop, a NUL byte
        return False


def session_of(request: gr.Request | None) -> str:
    """Gradio's session hash: one per browser tab or API client (``local`` for direct calls in Python)."""
    return getattr(request, "session_hash", None) or "local"


class Sessions:
    """Who may read which file, and the per-session output folders.

    Outputs go to a folder per session inside Gradio's cache (so Gradio serves them without a copy), named with a
    random token: nobody can guess another session's URLs. An upload is claimed by the first session that uses it
    (the browser claims it as soon as it is uploaded); another session presenting the same path is refused, unless
    the file was uploaded again since (Gradio names uploads by content, so the same file uploaded by two users is
    one path, replaced by each upload). When a session ends, or has been idle for ``idle_s``, its folder and the
    uploads it claimed are deleted; folders no live session owns (left by an earlier run) once they are as old.
    """

    def __init__(self, root: Path, idle_s: float):
        self.root, self.idle_s = root, idle_s
        self._lock = threading.Lock()
        self._folders: dict[str, Path] = {}
        self._seen: dict[str, float] = {}
        self._claims: dict[str, tuple[str, int]] = {}  # upload path -> (session, inode)
        self._count = 0

    def new_folder(self, session: str) -> Path:
        """A fresh subfolder of the session's folder, so that outputs keep plain names (``cello-to-violin.wav``)."""
        with self._lock:
            self._seen[session] = time.monotonic()
            if session not in self._folders:
                self._folders[session] = self.root / f"{SESSION_PREFIX}{secrets.token_hex(16)}"
            self._count += 1
            d = self._folders[session] / str(self._count)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def may_read(self, session: str, path: Path) -> bool:
        """True when ``session`` may use ``path``: its own output, or an upload no other session holds."""
        path = path.resolve()
        with self._lock:
            self._seen[session] = time.monotonic()
            for owner, folder in self._folders.items():
                if path.is_relative_to(folder):
                    return owner == session
            if any(p.startswith(SESSION_PREFIX) for p in path.relative_to(self.root).parts):
                return False  # an ended session's output
            try:
                inode = path.stat().st_ino
            except OSError:
                return True  # missing: the reader says so
            owner = self._claims.get(str(path))
            if owner is not None and owner[1] == inode and owner[0] != session:
                return False
            self._claims[str(path)] = (session, inode)
            return True

    def end(self, session: str) -> None:
        """Delete the session's outputs and the uploads it claimed."""
        with self._lock:
            folder = self._folders.pop(session, None)
            self._seen.pop(session, None)
            mine = {p: ino for p, (s, ino) in self._claims.items() if s == session}
            for p in mine:
                del self._claims[p]
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        for p, inode in mine.items():
            path = Path(p)
            try:
                if path.stat().st_ino == inode:  # not uploaded again since by someone else
                    path.unlink()
                    path.parent.rmdir()  # Gradio's per-upload folder, when empty
            except OSError:
                pass

    def reap(self) -> None:
        """End idle sessions; delete session folders no live session owns (left by an earlier run)."""
        now = time.monotonic()
        with self._lock:
            idle = [s for s, t in self._seen.items() if now - t > self.idle_s]
            live = set(self._folders.values())
        for s in idle:
            self.end(s)
        for d in self.root.glob(f"{SESSION_PREFIX}*"):
            try:
                old = time.time() - d.stat().st_mtime > self.idle_s
            except OSError:
                continue
            if d not in live and old:
                shutil.rmtree(d, ignore_errors=True)

    def start_reaper(self) -> None:
        def loop():
            while True:
                self.reap()
                time.sleep(max(1.0, min(60.0, self.idle_s / 4)))

        threading.Thread(target=loop, name="studio-reaper", daemon=True).start()


def _stem_of(path, fallback: str = "clip") -> str:
    """A file-name-safe stem of an upload's original name (``My Cello.wav`` -> ``My-Cello``)."""
    stem = re.sub(r"[^\w-]+", "-", Path(str(path or "")).stem).strip("-_")[:40]
    return stem or fallback


def likely_instrument(path, domains) -> str | None:
    """The instrument an upload's name mentions (``cello_take2.wav`` -> ``cello``), if any."""
    words = set(re.split(r"[^a-z]+", Path(str(path or "")).stem.lower()))
    return next((d for d in domains if d.lower() in words), None)


def default_target(domains, source: str | None = None) -> str | None:
    """Violin (a lead voice that differs from piano, the most common upload), or cello when the clip is a violin."""
    prefs = [d for d in ("violin", "cello", "flute") if d in domains] + list(domains)
    return next((d for d in prefs if d != source), None)


class Studio:
    """The models (loaded once, on first use) and the work behind each tab."""

    def __init__(self, config: AppConfig):
        self.config = config
        self._lock = threading.RLock()
        self._cache: dict[str, object] = {}
        self.sessions = Sessions(upload_folder(), config.session_minutes * 60)
        self._seconds_per_second: float | None = None  # translation time per second of audio, measured here

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
        except gr.Error:
            from .separation import ENV

            return (f"Off: no Demucs weights are installed on this server (they go in the Demucs folder, "
                    f"setting {ENV}).")

    # ------------------------------------------------------------------------------------------- helpers
    def load(self, path, what: str = "clip", stem: bool = False, session: str = "local") -> tuple[np.ndarray, int]:
        """An upload decoded block by block straight to the models' rate (mono), or Demucs' (44.1 kHz stereo)."""
        if not path:
            raise user_error(f"Upload or record a {what} first.")
        path = Path(path)
        if not in_upload_folder(path):  # a path sent through the API, not an upload: never read the server's files
            raise user_error(f"The {what} must be uploaded or recorded through the app; "
                             f"files on the server are not read.")
        if not path.exists():  # an idle session's files are deleted (Sessions.reap)
            raise user_error(f"The {what} is no longer on the server (files are deleted after "
                             f"{self.config.session_minutes:g} min without use); upload it again.")
        if not self.sessions.may_read(session, path):
            raise user_error(f"The {what} must be uploaded or recorded in your own session; "
                             f"other users' files are not read.")
        try:
            audio, sr = load_audio(path, 44100 if stem else MODEL_RATE, mono=not stem,
                                   max_seconds=self.config.max_seconds, max_decoded_mb=MAX_DECODED_MB)
        except StudioError as e:
            raise user_error(str(e)) from None
        if is_silent(audio):
            raise user_error(f"The {what} is silent (below -60 dBFS); upload one with sound in it.")
        return audio, sr

    def claim(self, path, request: gr.Request = None) -> None:
        """Claim a fresh upload or recording for the session that made it (the browser calls this at once)."""
        if path and in_upload_folder(path):
            self.sessions.may_read(session_of(request), Path(path))

    def end_session(self, request: gr.Request = None) -> None:
        self.sessions.end(session_of(request))

    def write(self, folder: Path, audio: np.ndarray, sr: int, name: str) -> str:
        return str(save_audio(folder / f"{name}.wav", audio, sr))

    def figure(self, folder: Path, panels, config, name: str, marks=None) -> str:
        return figure_png(mel_figure(panels, config, marks), folder / f"{name}.png")

    # --------------------------------------------------------------------------------------------- tabs
    def estimate(self, path, request: gr.Request = None) -> str:
        """What a translation of this upload will take here, from the speed measured on this machine."""
        if not path:
            return ""
        from .audio import audio_info

        try:
            seconds = min(audio_info(path).duration, self.config.max_seconds)
        except StudioError as e:
            return public(str(e))
        if self._seconds_per_second is None:  # not measured yet: translate 2 s of noise once
            try:
                t = self.translator()
            except gr.Error:
                return ""
            x = np.random.default_rng(0).normal(0, 0.1, 2 * MODEL_RATE).astype(np.float32)
            t.vocoder.inference()  # the fast path, built (auto's check and race) before the timing
            start = time.perf_counter()
            t(x, MODEL_RATE, target=t.domains[0])
            self._seconds_per_second = (time.perf_counter() - start) / 2
        eta = seconds * self._seconds_per_second
        when = f"about **{eta:.0f} s**" if eta >= 1 else "**under a second**"
        return (f"A {seconds:.1f} s clip: translating it takes {when} on this machine "
                f"(measured here: {1 / self._seconds_per_second:.1f}× real time; longer while others use it).")

    def translate(self, path, target, use_stem, stem, blend_with, blend, register=REGISTER_CHOICES[0],
                  progress=gr.Progress(), request: gr.Request = None):
        session = session_of(request)
        progress(0.05, desc="loading")
        audio, sr = self.load(path, stem=bool(use_stem), session=session)
        t = self.translator()
        if target not in t.domains:
            raise user_error(f"Choose a target instrument: {', '.join(t.domains)}.")
        blend = float(blend or 0)
        if blend > 0 and blend_with in (None, "", "(none)"):
            raise user_error(f"Blend is {blend:.0%} but 'Blend with' is (none): choose a second instrument, "
                             f"or set Blend to 0.")
        demucs = self.demucs() if use_stem else None
        n_seconds = audio.shape[-1] / sr
        eta = f", about {n_seconds * self._seconds_per_second:.0f} s" if self._seconds_per_second else ""
        progress(0.3, desc=f"translating {n_seconds:.1f} s{eta}")
        start = time.perf_counter()
        try:
            y, out_sr = t(audio, sr, target=target, stem=stem if use_stem else None, demucs=demucs,
                          blend_with=blend_with if blend > 0 else None, blend=blend,
                          register=REGISTERS.get(register, register))
        except StudioError as e:
            raise user_error(str(e)) from None
        seconds = time.perf_counter() - start
        self._seconds_per_second = seconds / max(len(y) / out_sr, 1e-3)
        progress(0.9, desc="drawing")
        folder = self.sessions.new_folder(session)
        name = f"{_stem_of(path)}-to-{target}" + (f"-{blend_with}-{blend:.2f}" if blend > 0 else "")
        src = t.prepare(audio, sr)
        fig = self.figure(folder, [("input", src), (f"as {target}", y)], t.config, name)
        mix = f" blended {blend:.0%} with **{blend_with}**" if blend > 0 else ""
        info = (f"Translated {len(y) / out_sr:.1f} s to **{target}**{mix} in {seconds:.2f} s "
                f"({len(y) / out_sr / seconds:.1f}× real time) with `{t.name}`.")
        wav = self.write(folder, y, out_sr, name)
        return wav, fig, info, [wav, fig]

    def generate(self, seconds, temperature, top_k, seed, count, prompt_path, prompt_seconds, progress=gr.Progress(),
                 request: gr.Request = None):
        session = session_of(request)
        g = self.generator()
        prompt = None
        if prompt_path:
            prompt = self.load(prompt_path, "prompt", session=session)  # (audio, sr)
        folder = self.sessions.new_folder(session)
        samples, files, notes = [], [], []
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
            if g.last_info.message():
                notes.append(("⚠ " if g.last_info.near_silent else "") + g.last_info.message())
            title = f"sample {int(seed) + i}"
            # the boundary: where the kept prompt ends (a prompt shorter than asked is kept whole)
            marks = {title: min(float(prompt_seconds), prompt[0].shape[-1] / prompt[1], len(y) / sr)} if prompt else None
            name = (f"{_stem_of(prompt_path)}-continued" if prompt else "piano") + f"-seed{int(seed) + i}"
            wav = self.write(folder, y, sr, name)
            png = self.figure(folder, [(title, y)], g.config, name, marks)
            samples.append((wav, png, title))
            files += [wav, png]
        info = f"{count} sample(s) of {float(seconds):.1f} s in {time.perf_counter() - start:.1f} s with `{g.name}`."
        if notes:  # near-silent draws: said, never returned silently
            info += "\n\n" + "\n".join(f"- {m}" for m in notes)
        return samples, files, info

    def interpolate_generator(self, path_a, path_b, mode, steps, seconds, progress=gr.Progress(),
                              request: gr.Request = None):
        return self.interpolate("generator", path_a, path_b, mode, steps, seconds, None, progress, request)

    def interpolate_translator(self, path_a, path_b, mode, steps, seconds, target, progress=gr.Progress(),
                               request: gr.Request = None):
        return self.interpolate("translator", path_a, path_b, mode, steps, seconds, target, progress, request)

    def interpolate(self, space, path_a, path_b, mode, steps, seconds, target, progress, request):
        """Interpolate two uploads in the generator's (``space="generator"``) or the translator's latent space."""
        from .explore import interpolate

        session = session_of(request)
        model = self.generator() if space == "generator" else self.translator()
        a = self.load(path_a, "clip A", session=session)
        b = self.load(path_b, "clip B", session=session)
        morph = mode == "Morph over time"
        progress(0.2, desc="interpolating")
        try:
            r = interpolate(model, a[0], b[0], a[1], b[1], steps=int(steps), morph=morph, seconds=float(seconds),
                            target=target if space == "translator" else None)
        except StudioError as e:
            raise user_error(str(e)) from None
        progress(0.9, desc="drawing")
        sr = r.sample_rate
        folder = self.sessions.new_folder(session)
        name = f"{_stem_of(path_a, 'A')}-{_stem_of(path_b, 'B')}-" + ("morph" if morph else "interp")
        gap = np.zeros(int(0.25 * sr), dtype=np.float32)  # the steps one after the other, a short pause between
        joined = np.concatenate([x for y in r.audio for x in (y, gap)][:-1])
        names = [name] if morph else [f"{name}-w{a:.2f}" for a in r.alphas]  # w: the weight of B
        files = [self.write(folder, y, sr, n) for y, n in zip(r.audio, names)]
        panels = [("A", r.a)] + list(zip(r.titles(), r.audio)) + [("B", r.b)]
        fig = self.figure(folder, panels, model.config, name)
        what = "a morph from A to B" if morph else f"{len(r.audio)} steps from A to B"
        info = f"{what}, {float(seconds):.1f} s each, through `{model.name}`" + (
            f" decoded as **{target}**" if space == "translator" else " (VQ-VAE latents)") + "."
        return (files[0] if morph else self.write(folder, joined, sr, f"{name}-all")), fig, files, info

    def estimates(self):
        """The planner on this machine for each shipped model's training run, next to the card's figures; the table
        grows a row per model (a generator: cancelling stops it between models)."""
        from .plan import estimate_shipped
        from .tasks import TASKS

        rows = ["| model | card: steps, wall time, hardware | this machine: s/step | this machine: time for the card's steps |",
                "|---|---|---|---|"]
        start = time.perf_counter()
        models = list(TASKS)
        for i, model in enumerate(models):
            yield "\n".join(rows) + f"\n\n*Measuring {model} ({i + 1} of {len(models)}), " \
                                    f"{time.perf_counter() - start:.0f} s so far…*"
            try:
                p = estimate_shipped(model)
            except (StudioError, KeyError) as e:
                rows.append(f"| {model} | – | could not measure: {public(str(e))} | – |")
                continue
            shipped = next((t for t in p.targets if t["name"].startswith("shipped")), None)
            if shipped is None:
                rows.append(f"| {model} | no training record in its config.json | {p.seconds_per_step:.2f} "
                            f"(batch {p.batch}, {p.precision}) | – |")
                continue
            rows.append(f"| {model} | {shipped['steps']:,} steps; {shipped['source'].split(': ', 1)[1]} | "
                        f"{p.seconds_per_step:.2f} (batch {p.batch}, {p.precision}) | {shipped['seconds'] / 60:.1f} min |")
        yield "\n".join(rows) + (f"\n\nMeasured now in {time.perf_counter() - start:.0f} s with `studio plan` "
                                 "(2 real training steps each after warm-up, on synthetic batches); run "
                                 "`studio plan MODEL --data DIR` for your own data and settings.")

    def compare(self, path, progress=gr.Progress(), request: gr.Request = None):
        from .vocoder import GriffinLim

        session = session_of(request)
        v = self.vocoder()
        audio, sr = self.load(path, session=session)
        progress(0.2, desc="MelGAN")
        v.inference()  # the fast path resynthesize runs, built (auto's check and race) before the timing
        start = time.perf_counter()
        with torch.inference_mode():
            y_melgan, out_sr = v.resynthesize(audio, sr)
        rtf = len(y_melgan) / out_sr / (time.perf_counter() - start)
        progress(0.6, desc="Griffin-Lim")
        y_gl, _ = GriffinLim(v.config, 32).resynthesize(audio, sr)
        ref, _ = prepare_audio(audio, sr, out_sr)
        d_m, d_g = mel_l1(ref, y_melgan, v.config), mel_l1(ref, y_gl, v.config)
        folder = self.sessions.new_folder(session)
        name = _stem_of(path)
        fig = self.figure(folder, [("input", ref), (f"MelGAN ({v.name})", y_melgan), ("Griffin-Lim, 32 iterations", y_gl)],
                          v.config, f"{name}-compare")
        table = (f"| vocoder | log-mel L1 to input |\n|---|---|\n| MelGAN `{v.name}` | {d_m:.3f} |\n"
                 f"| Griffin-Lim (32 it.) | {d_g:.3f} |\n\nMelGAN ran at **{rtf:.1f}× real time** on this machine "
                 f"({torch.get_num_threads()} threads). Note: magnitude metrics flatter Griffin-Lim; listen too.")
        return (self.write(folder, y_melgan, out_sr, f"{name}-melgan"),
                self.write(folder, y_gl, out_sr, f"{name}-griffin-lim"), fig, table)


# What each kind of model does for a musician, and what to expect of the shipped ones (their cards have the figures).
PURPOSE = {"vocoder": "Turns a mel spectrogram back into sound: every tab plays through it.",
           "translator": "Plays your clip on another instrument (Translate tab).",
           "generator": "Makes new piano music, continues a clip, walks between two clips (Generate tab).",
           "transcriber": "Hears which notes a clip plays, for the translator (`studio translate --transcriber`; the app's "
                          "Translate tab uses basic-pitch)."}
EXPECT = {"melgan-music-22k": "Good: keeps the notes of real recordings (chroma agreement 0.95 with the input); "
                              "partials slightly broader than the originals.",
          "translator-notes-22k": "Plays the notes it hears (basic-pitch) on the target instrument: note changes come "
                                  "through, melodies are smoothed into held lines where the transcription holds notes.",
          "translator-music-22k": "Early (universal encoder): takes on the target instrument's colour but loses "
                                  "most notes.",
          "piano-vqvae-prior-22k": "Early: piano-like textures that stutter; no long-range melody.",
          "notes-transcriber-22k": "Finds the notes of rendered (sampled) music far better than basic-pitch; on real "
                                   "recordings no better, so the translator uses basic-pitch unless asked."}


def _training_line(entry) -> str:
    """'Trained: N steps in M min on HW' from the model's training record (config.json)."""
    recs = entry.training
    recs = {k: v for k, v in recs.items() if isinstance(v, dict)} or ({entry.kind: recs} if recs else {})
    parts = [f"{stage}: {r['steps']:,} steps at batch {r.get('batch', '?')} in {r.get('wall_minutes', '?')} min on "
             f"{r.get('hardware', '?')}" for stage, r in recs.items() if "steps" in r]
    return ("**Trained** — " + "; ".join(parts) + "\n\n") if parts else ""


def _trained_on(entry) -> str:
    """The training data in a few words: the record's ``data`` up to its first detail, else the card's data row."""
    data = entry.training.get("data") if isinstance(entry.training.get("data"), str) else None
    if data is None:
        m = re.search(r"^\|\s*data\s*\|\s*(.+?)\s*\|\s*$", entry.card, re.M)
        data = m.group(1) if m else None
    if not data:
        return "see its card"
    data = re.sub(r"`?data_recipes\.(\w+)`?:?\s*", "", data)
    while re.search(r"\([^()]*\)", data):  # the credits and details go (innermost first)
        data = re.sub(r"\s*\([^()]*\)", "", data)
    data = re.sub(r"\s+", " ", data).strip(" ,.:")
    return data[:160].rsplit(" ", 1)[0] + "…" if len(data) > 160 else data


def models_summary() -> str:
    """What a musician reads first: per installed model, what it is for, what it learnt from, how good it is (a list,
    not a table, so that it reflows on a phone)."""
    entries = registry.list_models()
    if not entries:
        return "**No models are installed.** An administrator puts them in the models folder (setting STUDIO_MODELS_DIR)."
    return "\n\n".join(f"### {e.name}\n{PURPOSE.get(e.kind, e.kind)}  \n**Trained on:** {_trained_on(e)}  \n"
                       f"**What to expect:** {EXPECT.get(e.name, 'see its card below')}" for e in entries)


def models_markdown() -> str:
    """Where models come from, in words a user can pass on to whoever runs the server (no server paths)."""
    from .separation import ENV

    return ("Models are read from the server's models folder (setting `STUDIO_MODELS_DIR`). Each is a folder with "
            "`config.json`, `model.safetensors` and a `README.md` card; the defaults are "
            + ", ".join(f"`{v}` ({k})" for k, v in registry.DEFAULTS.items() if k != "transcriber")
            + f". Demucs weights for stem isolation go in the Demucs folder (setting `{ENV}`).")


def interpolation_controls(space: str, prefix: str, button: str):
    """The accordion of the interpolation controls and its own outputs: (button, inputs, outputs)."""
    with gr.Accordion(f"Interpolate two clips ({space})", open=False):
        with gr.Row():
            clips = [gr.Audio(sources=["upload", "microphone"], type="filepath", label=f"Clip {c}",
                              elem_id=f"{prefix}-{c.lower()}") for c in "AB"]
        mode = gr.Radio(["Steps", "Morph over time"], value="Steps", label="Mode")
        steps = gr.Slider(2, 8, value=4, step=1, label="Steps")
        seconds = gr.Slider(1, 15, value=4, step=0.5, label="Seconds")
        go = gr.Button(button)
        out = gr.Audio(label="Interpolation (all steps)", type="filepath", interactive=False, elem_id=f"{prefix}-out")
        info = gr.Markdown(label="Interpolation summary")
        fig = gr.Image(label="Interpolation: mel spectrograms", type="filepath", elem_id=f"{prefix}-fig")
        files = gr.File(label="Interpolation downloads", file_count="multiple")
    return go, clips + [mode, steps, seconds], [out, fig, files, info], clips


CSS = """
#models-summary * { word-break: normal; overflow-wrap: break-word; hyphens: none; }
"""


def build(studio: Studio) -> gr.Blocks:
    try:
        from .translation.pipeline import load_translator_model

        domains = list(load_translator_model()[0].config.domains)
    except StudioError:
        domains = []
    stem_reason = studio.demucs_status()
    idle_s = int(studio.config.session_minutes * 60)
    # Gradio's own reaping of uploads nobody used (ours go with their session, see Sessions)
    with gr.Blocks(title="MelGAN Studio", delete_cache=(max(60, idle_s // 4), idle_s)) as demo:
        gr.Markdown("# MelGAN Studio\nMel-spectrogram → waveform with MelGAN: translate timbre, generate piano, "
                    "compare vocoders. Everything runs on this machine; your files are deleted when you close "
                    "the page.")
        private = dict(api_visibility="private", queue=False, show_progress="hidden")
        with gr.Tab("Translate"):
            with gr.Row():
                with gr.Column():
                    t_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Your clip")
                    t_eta = gr.Markdown(elem_id="translate-eta", label="Time estimate")
                    t_target = gr.Dropdown(domains, value=default_target(domains), label="Play it on",
                                           interactive=bool(domains))
                    with gr.Accordion("Blend and stems", open=False):
                        t_blend_with = gr.Dropdown(["(none)"] + domains, value="(none)", label="Blend with")
                        t_blend = gr.Slider(0, 1, value=0.0, step=0.05, label="Blend (0 = target only, 1 = blend only)")
                        t_use_stem = gr.Checkbox(False, label="Isolate a stem with Demucs first",
                                                 interactive=stem_reason is None,
                                                 info=stem_reason or "Separates the mixture before translating.")
                        t_stem = gr.Dropdown(["other", "bass", "vocals", "drums"], value="other", label="Stem",
                                             interactive=stem_reason is None)
                        t_register = gr.Radio(list(REGISTER_CHOICES), value=REGISTER_CHOICES[0],
                                              label="Notes the instrument cannot reach",
                                              info="Fold moves them by octaves into its range, as an arranger "
                                                   "would; keep plays them where they are.")
                    t_go = gr.Button("Translate", variant="primary")
                    if not domains:
                        gr.Markdown("No translator model is installed: see the Models tab.")
                with gr.Column():
                    t_out = gr.Audio(label="Translated", type="filepath", interactive=False)
                    t_info = gr.Markdown(label="Summary")
                    t_fig = gr.Image(label="Mel spectrograms: before / after", type="filepath")
                    t_files = gr.File(label="Downloads", file_count="multiple", elem_id="translate-downloads")
            ti_go, ti_inputs, ti_outputs, ti_clips = interpolation_controls(
                "the translator's encoder", "ti", "Interpolate through the translator")

            def on_clip(path, target, request: gr.Request):
                """Claim the upload for this session; aim away from the instrument its name mentions."""
                studio.claim(path, request)
                source = likely_instrument(path, domains)
                return gr.update(value=default_target(domains, source)) if source and source == target else gr.update()

            t_in.change(on_clip, [t_in, t_target], [t_target], **private).then(
                studio.estimate, [t_in], [t_eta], api_visibility="private", concurrency_id="estimate",
                show_progress="minimal")
            t_go.click(studio.translate, [t_in, t_target, t_use_stem, t_stem, t_blend_with, t_blend, t_register],
                       [t_out, t_fig, t_info, t_files], api_name="translate")
            ti_go.click(studio.interpolate_translator, ti_inputs + [t_target], ti_outputs,
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
                with gr.Column():
                    g_info = gr.Markdown(label="Summary")
                    g_samples = gr.State([])

                    @gr.render(inputs=g_samples)
                    def show_samples(samples):
                        # one player and one whole (uncropped) spectrogram per sample
                        for i, (wav, png, title) in enumerate(samples):
                            with gr.Group(elem_classes="sample", elem_id=f"sample-{i}"):
                                gr.Audio(wav, label=title, type="filepath", interactive=False, key=f"wav-{i}")
                                gr.Image(png, label=f"{title}: mel spectrogram", type="filepath",
                                         interactive=False, key=f"png-{i}")

                    g_files = gr.File(label="Downloads", file_count="multiple")
            g_go.click(studio.generate, [g_seconds, g_temp, g_topk, g_seed, g_count, g_prompt, g_prompt_s],
                       [g_samples, g_files, g_info], api_name="generate")
            gi_go, gi_inputs, gi_outputs, gi_clips = interpolation_controls("VQ-VAE latents", "gi", "Interpolate")
            gi_go.click(studio.interpolate_generator, gi_inputs, gi_outputs, api_name="interpolate")
        with gr.Tab("Vocoder"):
            with gr.Row():
                with gr.Column():
                    v_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Your clip")
                    v_go = gr.Button("Resynthesize", variant="primary")
                    v_table = gr.Markdown(label="Comparison")
                with gr.Column():
                    v_melgan = gr.Audio(label="MelGAN", type="filepath", interactive=False)
                    v_gl = gr.Audio(label="Griffin-Lim", type="filepath", interactive=False)
            v_fig = gr.Image(label="Mel spectrograms", type="filepath")
            v_go.click(studio.compare, [v_in], [v_melgan, v_gl, v_fig, v_table], api_name="compare")
        for clip in [g_prompt, v_in, *ti_clips, *gi_clips]:
            clip.change(studio.claim, [clip], None, **private)
        with gr.Tab("Models"):
            gr.Markdown(models_summary(), elem_id="models-summary")
            for e in registry.list_models():
                with gr.Accordion(f"{e.name}: the full card ({e.kind})", open=False):
                    gr.Markdown(f"{_training_line(e)}{public(e.card)}")
            with gr.Accordion("Training time on this machine", open=False):
                gr.Markdown("How long would the shipped models' training runs take here? This runs a few real "
                            "training steps of each of the four models, one after the other: a minute or two on an "
                            "idle machine, several while others use it. It runs in its own queue (translations go "
                            "on) and rows appear as each model is measured; Cancel stops it after the current one.")
                with gr.Row():
                    m_go = gr.Button("Estimate training time on this machine")
                    m_stop = gr.Button("Cancel", variant="stop")
                m_table = gr.Markdown(label="Training estimates")
                m_run = m_go.click(studio.estimates, [], [m_table], api_name="estimates",
                                   concurrency_id="planner", concurrency_limit=1)
                m_stop.click(lambda table: re.sub(r"\n\n\*Measuring .*\*$", "", table or "") + "\n\n*Cancelled.*",
                             [m_table], [m_table], cancels=[m_run], **private)
            gr.Markdown(models_markdown())
        demo.unload(studio.end_session)
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
    p.add_argument("--session-minutes", type=float, default=d.session_minutes,
                   help="a session's files are deleted when its page closes or after this long idle "
                        "(STUDIO_SESSION_MINUTES)")
    a = p.parse_args(argv)
    cfg = AppConfig(a.host, a.port, a.share, a.max_file_mb, a.max_seconds, a.concurrency, a.session_minutes)
    studio = Studio(cfg)
    studio.sessions.start_reaper()
    demo = build(studio)
    demo.queue(default_concurrency_limit=cfg.concurrency, max_size=64)
    demo.launch(server_name=cfg.host, server_port=cfg.port, share=cfg.share, max_file_size=int(cfg.max_file_mb * 1024 * 1024),
                show_error=True, css=CSS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
