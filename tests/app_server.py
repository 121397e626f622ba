"""A real ``python -m studio.app`` server in a subprocess, with tiny untrained models (for the bad-input, safe-loading
and load tests; tests/test_app.py has its own copy of the same recipe)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import torch

from conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_models(root: Path) -> Path:
    """Tiny untrained models under the registry's default names."""
    from studio.generation import VQVAE, Prior, PriorConfig, VQVAEConfig, save_generator
    from studio.registry import DEFAULTS
    from studio.translation import TranslatorConfig, TranslatorModel, save_translator
    from studio.vocoder import GeneratorConfig, Vocoder

    torch.manual_seed(0)
    Vocoder(GeneratorConfig(channels=32)).save_pretrained(root / DEFAULTS["vocoder"], card="# tiny vocoder\n")
    tc = TranslatorConfig(domains=("piano", "violin"), channels=32, latent=16, dilations=(1, 2), domain_dim=8)
    save_translator(TranslatorModel(tc), root / DEFAULTS["translator"], card="# tiny translator\n")
    save_generator(VQVAE(VQVAEConfig(channels=32, latent=16, dilations=(1, 2), codebook_size=32)),
                   Prior(PriorConfig(vocab=32, context=32, width=32, layers=1, heads=2)),
                   root / DEFAULTS["generator"], card="# tiny generator\n")
    from studio.transcription import TranscriberConfig, TranscriberModel, save_transcriber

    save_transcriber(TranscriberModel(TranscriberConfig(channels=4, key_channels=8)), root / DEFAULTS["transcriber"],
                     card="# tiny transcriber\n")
    return root


class AppServer:
    """``with AppServer(models, log, "--max-seconds", "60") as app: app.client().predict(...)``.

    ``app.pid`` is the server's process. Its uploads (Gradio's cache, ``GRADIO_TEMP_DIR``), its other temp files
    and the clients' downloads stay next to ``log``, in pytest's temp folder, not in the machine's shared /tmp.
    """

    def __init__(self, models: Path, log: Path, *args: str, env: dict | None = None, startup_s: float = 180):
        self.models, self.log, self.args, self.env, self.startup_s = models, Path(log), args, env or {}, startup_s
        self.proc: subprocess.Popen | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def client(self):
        from gradio_client import Client

        return Client(self.url, verbose=False, download_files=str(self.downloads))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "AppServer":
        port = free_port()
        self.uploads, self.downloads = self.log.parent / "gradio-uploads", self.log.parent / "downloads"
        (self.log.parent / "tmp").mkdir(exist_ok=True)
        env = {**os.environ, "STUDIO_MODELS_DIR": str(self.models), "STUDIO_DEMUCS_DIR": str(self.models / "none"),
               "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1", "GRADIO_TEMP_DIR": str(self.uploads),
               "TMPDIR": str(self.log.parent / "tmp"), **self.env}
        self._log_file = open(self.log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "studio.app", "--port", str(port), *self.args], cwd=ROOT,
                                     env=env, stdout=self._log_file, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + self.startup_s
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the app exited at start:\n{self.log_text()[-3000:]}")
                time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"the app did not start in {self.startup_s:.0f} s:\n{self.log_text()[-3000:]}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        self._log_file.close()


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")
