"""Nothing the studio loads can run code: weights are safetensors, configs JSON/YAML data, legacy ``.pt`` and Demucs
``.th`` pickles go through ``torch.load(weights_only=True)``; and the app reads only uploaded files.

Every malicious file here carries a payload that creates a marker file when unpickled (proved by loading one
copy the unsafe way in a subprocess); the tests check the loaders refuse it *and* the marker never appears.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file
from torch import nn

from app_server import AppServer, tiny_models
from conftest import ROOT
from studio.errors import StudioError
from studio.separation import load_demucs
from studio.weights import CheckpointError, load_legacy_state_dict, load_tensors
from test_stems import package, tiny_htdemucs

FOLD = "Fold into its range"  # the Translate tab's register choice (studio.app.REGISTERS)


class Payload:
    """Unpickling this runs ``touch <marker>`` (``os.system``, pickled as ``posix.system``)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class PopenPayload(Payload):
    def __reduce__(self):
        return subprocess.Popen, (["touch", str(self.marker)],)


def evil_pickle(path: Path, marker: Path, payload=Payload, around=None) -> Path:
    """A real ``torch.save`` file: tensors plus an object whose unpickling touches ``marker``."""
    obj = {"weight": torch.zeros(2, 2), "bias": torch.zeros(2), "extra": payload(marker)}
    torch.save(around(obj) if around else obj, path)
    return path


def test_the_payload_is_live_when_unpickled_unsafely(tmp_path):
    """Control: the same kind of file does run its code under ``torch.load(weights_only=False)``."""
    marker = tmp_path / "control-marker"
    path = evil_pickle(tmp_path / "control.pt", marker)
    r = subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(path)!r}, weights_only=False)"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert marker.exists()


def test_legacy_state_dict_loader_refuses_code_and_runs_none_of_it(tmp_path):
    marker = tmp_path / "marker"
    # (pickle's protocol 2 names subprocess.Popen by its Python 2 name, commands.Popen)
    for payload, module in ((Payload, r"posix\.system"), (PopenPayload, r"(subprocess|commands)\.Popen")):
        path = evil_pickle(tmp_path / f"{payload.__name__}.pt", marker, payload)
        with pytest.raises(CheckpointError, match=f"was refused: it would import {module}; only a plain state dict"):
            load_legacy_state_dict(path)
    assert not marker.exists()
    # a whole pickled module is code too; a training-checkpoint dict is not a state dict
    torch.save(nn.Linear(3, 2), tmp_path / "module.pt")
    with pytest.raises(CheckpointError, match="it would import torch.nn.modules.linear.Linear"):
        load_legacy_state_dict(tmp_path / "module.pt")
    lin = nn.Linear(3, 2)
    torch.save({"model": lin.state_dict(), "step": 3}, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match="not a state dict; accepted: a mapping of parameter names to tensors"):
        load_legacy_state_dict(tmp_path / "ckpt.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x80\x02junk" * 10)
    with pytest.raises(CheckpointError):
        load_legacy_state_dict(tmp_path / "junk.pt")
    # what it is for: a plain state dict loads, tensors intact
    torch.save(lin.state_dict(), tmp_path / "plain.pt")
    sd = load_legacy_state_dict(tmp_path / "plain.pt")
    assert sd.keys() == {"weight", "bias"} and torch.equal(sd["weight"], lin.weight.detach())


def test_weights_are_safetensors_only(tmp_path):
    """A pickle named like our weights (``model.safetensors``) is refused as not safetensors, unread."""
    from studio.vocoder import GeneratorConfig, Vocoder

    marker = tmp_path / "marker"
    folder = Vocoder(GeneratorConfig(channels=32)).save_pretrained(tmp_path / "vocoder")
    evil_pickle(folder / "model.safetensors", marker)
    with pytest.raises(CheckpointError, match="is not a valid safetensors file .*only safetensors weights are loaded"):
        Vocoder.from_pretrained(folder)
    with pytest.raises(CheckpointError):
        load_tensors(folder / "model.safetensors")
    assert not marker.exists()
    # and the config is JSON data, checked field by field: a class name in it is only an unknown setting
    evil_free = tmp_path / "vocoder2"
    Vocoder(GeneratorConfig(channels=32)).save_pretrained(evil_free)
    (evil_free / "config.json").write_text(json.dumps({"kind": "vocoder", "config": {"channels": 32,
                                                       "__class__": "subprocess.Popen"}}))
    with pytest.raises(StudioError, match="unknown GeneratorConfig settings"):
        Vocoder.from_pretrained(evil_free)


# ---------------------------------------------------------------------------------------------------------- Demucs

def test_demucs_th_packages_carrying_code_are_refused(tmp_path, monkeypatch):
    """The Demucs folder holds pickles (``.th``); Demucs's own loader would run them. Ours refuses, in every layout."""
    marker = tmp_path / "marker"
    folder = tmp_path / "demucs"
    folder.mkdir()
    monkeypatch.setenv("STUDIO_DEMUCS_DIR", str(folder))

    # the default model's file (htdemucs.yaml, bundled with Demucs, lists 955717e8), as the app would load it
    evil_pickle(folder / "955717e8.th", marker)
    with pytest.raises(StudioError, match=r"refused Demucs weights .*955717e8\.th: it would import posix\.system; "
                                          r"a Demucs model file may hold only weights"):
        load_demucs()
    # a real package whose model arguments carry the payload
    model = tiny_htdemucs()
    evil_pickle(folder / "955717e8.th", marker, around=lambda obj: {**package(model), "kwargs": {"x": obj["extra"]}})
    with pytest.raises(StudioError, match="it would import posix.system"):
        load_demucs("htdemucs")
    # a package naming another class to instantiate (Demucs calls klass(*args, **kwargs))
    (folder / "955717e8.th").unlink()
    torch.save({"klass": subprocess.Popen, "args": [["touch", str(marker)]], "kwargs": {}, "state": {}},
               folder / "popen.th")
    with pytest.raises(StudioError, match=r"it would import (subprocess|commands)\.Popen"):
        load_demucs("popen")
    # a bag (<name>.yaml) of checksummed packages
    evil_pickle(folder / "0a1b2c3d.th", marker)
    (folder / "mybag.yaml").write_text("models: ['0a1b2c3d']\n")
    with pytest.raises(StudioError, match=r"0a1b2c3d\.th: it would import posix\.system"):
        load_demucs("mybag")
    # the HuggingFace layout: safetensors, whose metadata names the class Demucs's loader imports and calls
    args = json.dumps([["touch", str(marker)]])
    save_file({"w": torch.zeros(1)}, str(folder / "hub.safetensors"),
              {"klass": "subprocess.Popen", "args": args, "kwargs": "{}"})
    with pytest.raises(StudioError, match=r"hub\.safetensors: its metadata names the class 'subprocess\.Popen'"):
        load_demucs("hub")
    # a bag definition is YAML data: a Python tag is refused by the safe loader
    (folder / "yamlbag.yaml").write_text(f"models: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(StudioError, match="not a valid Demucs bag definition"):
        load_demucs("yamlbag")
    assert not marker.exists()


def test_a_genuine_demucs_package_still_loads(tmp_path):
    """The allowlist is enough for what ``demucs.states.serialize_model`` writes (class, Fraction segment, weights)."""
    from demucs.states import save_with_checksum

    model = tiny_htdemucs()
    save_with_checksum(package(model), tmp_path / "mine.th")  # mine-<sha256 prefix>.th, checked on load
    loaded = load_demucs("mine", repo=tmp_path)
    assert type(loaded).__name__ == "HTDemucs" and float(loaded.segment) == 2.0
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


# -------------------------------------------------------------------------------------------------------------- app

def test_app_reads_only_files_in_the_upload_folder(tmp_path, monkeypatch):
    import gradio as gr

    from studio.app import AppConfig, Studio

    uploads = tmp_path / "uploads"
    (uploads / "abc").mkdir(parents=True)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    outside = tmp_path / "private.wav"
    sf.write(outside, 0.3 * np.sin(np.arange(22050) / 5.0), 22050)
    (uploads / "abc" / "link.wav").symlink_to(outside)
    inside = uploads / "abc" / "clip.wav"
    sf.write(inside, 0.3 * np.sin(np.arange(22050) / 5.0), 22050)
    studio = Studio(AppConfig())
    for path in ("/etc/passwd", outside, uploads / "abc" / "link.wav", uploads / ".." / "private.wav"):
        with pytest.raises(gr.Error, match="must be uploaded or recorded through the app; files on the server are not"):
            studio.load(str(path))
    audio, sr = studio.load(str(inside))
    assert sr == 22050 and audio.shape == (22050,)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    models = tiny_models(tmp_path_factory.mktemp("models"))
    with AppServer(models, tmp_path_factory.mktemp("app") / "app.log") as server:
        yield server


SECRET = Path("/etc/passwd")


def _no_content(text: str) -> None:
    lines = [line for line in SECRET.read_text().splitlines() if len(line) > 8]
    assert lines and not any(line in text for line in lines), "content of a server file came back"


def test_app_refuses_server_side_paths(app):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    # gradio_client uploads what it is given (here the client runs on the server's machine): the upload is read
    # as audio, refused, and nothing of it comes back
    c = app.client()
    with pytest.raises(AppError) as e:
        c.predict(handle_file(str(SECRET)), "violin", False, "other", "(none)", 0.0, FOLD, api_name="/translate")
    assert "is not a readable audio file" in str(e.value)
    _no_content(str(e.value))
    # the raw HTTP API with a server-side path instead of an upload: refused before any handler runs
    for api_name, data in [("translate", [{"path": str(SECRET), "meta": {"_type": "gradio.FileData"}}, "violin", False,
                                          "other", "(none)", 0.0, FOLD]),
                           ("compare", [{"path": str(SECRET), "meta": {"_type": "gradio.FileData"}}]),
                           ("generate", [1, 1.0, 0, 0, 1, {"path": str(ROOT / "README.md"),
                                                           "meta": {"_type": "gradio.FileData"}}, 1])]:
        req = urllib.request.Request(f"{app.url}gradio_api/call/{api_name}", data=json.dumps({"data": data}).encode(),
                                     headers={"Content-Type": "application/json"})
        event_id = json.loads(urllib.request.urlopen(req, timeout=30).read())["event_id"]
        body = urllib.request.urlopen(f"{app.url}gradio_api/call/{api_name}/{event_id}", timeout=120).read().decode()
        assert "event: error" in body and "not uploaded by a user" in body, body
        _no_content(body)
    # nor can the file be downloaded through Gradio's file route
    for url in (f"{app.url}gradio_api/file={SECRET}", f"{app.url}file={SECRET}"):
        try:
            body = urllib.request.urlopen(url, timeout=30).read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            assert e.code in (403, 404)
        else:
            _no_content(body)
    # and the server is fine
    out, _, _, _ = c.predict(handle_file(str(_tone(app.log.parent / "ok.wav"))), "violin", False, "other", "(none)",
                          0.0, FOLD, api_name="/translate")
    assert sf.info(out).frames == 22050


def _tone(path: Path) -> Path:
    sf.write(path, 0.3 * np.sin(np.arange(22050) / 5.0), 22050)
    return path
