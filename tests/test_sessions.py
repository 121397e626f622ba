"""Users kept apart (issue 20): each session reads only its own uploads and outputs, its files are deleted when it
ends (browser tab closed) or idles out (API clients), and no server path reaches a user.

Driven over Gradio's HTTP API with explicit session hashes (two users on one server) and in headless Chromium.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from app_server import AppServer, tiny_models
from conftest import ARTIFACTS
from studio.registry import DEFAULTS

IDLE_MINUTES = 0.1  # API sessions idle out after 6 s here


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny models without the piano generator: the Generate tab's error names a folder on the server."""
    root = tiny_models(tmp_path_factory.mktemp("models"))
    shutil.rmtree(root / DEFAULTS["generator"])
    return root


@pytest.fixture(scope="module")
def app(models, tmp_path_factory):
    with AppServer(models, tmp_path_factory.mktemp("app") / "app.log", "--session-minutes", str(IDLE_MINUTES)) as s:
        yield s


@pytest.fixture(scope="module")
def app_long(models, tmp_path_factory):
    """The default idle timeout (60 min): files that go must go because the tab closed."""
    with AppServer(models, tmp_path_factory.mktemp("app_long") / "app.log") as s:
        yield s


def _clip(path: Path, f: float = 220.0) -> Path:
    t = np.arange(22050 * 2) / 22050
    sf.write(path, (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), 22050)
    return path


def upload(app, path: Path) -> str:
    """Upload as the browser does; the server-side path Gradio gives the upload."""
    r = httpx.post(f"{app.url}gradio_api/upload", files={"files": (path.name, path.read_bytes())}, timeout=60)
    r.raise_for_status()
    return r.json()[0]


def call(app, api: str, data: list, session: str) -> tuple[str, object]:
    """One API call as ``session``: ("complete", outputs) or ("error", message)."""
    r = httpx.post(f"{app.url}gradio_api/call/{api}", json={"data": data, "session_hash": session}, timeout=60)
    event_id = r.json()["event_id"]
    body = httpx.get(f"{app.url}gradio_api/call/{api}/{event_id}", timeout=180).text
    event = re.findall(r"^event: (\w+)", body, re.M)[-1]
    payload = json.loads(re.findall(r"^data: (.*)$", body, re.M)[-1])
    return event, payload


def translate(app, path: str, session: str, blend_with: str = "(none)", blend: float = 0.0):
    return call(app, "translate", [{"path": path, "meta": {"_type": "gradio.FileData"}}, "violin", False, "other",
                                   blend_with, blend, "Fold into its range"], session)


def fetch(app, url: str) -> int:
    try:
        with urllib.request.urlopen(url if url.startswith("http") else app.url.rstrip("/") + url, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_a_second_user_cannot_reuse_uploads_or_outputs_and_files_go_with_the_session(app, tmp_path):
    mine = upload(app, _clip(tmp_path / "cello.wav"))
    event, out = translate(app, mine, "alice")
    assert event == "complete", out
    wav = out[0]
    assert Path(wav["path"]).name == "cello-to-violin.wav"
    assert re.search(r"/studio-session-[0-9a-f]{32}/", wav["path"])  # an unguessable folder per session
    assert fetch(app, wav["url"]) == 200

    # another user, holding alice's upload or output path, is refused in one line
    for path in (mine, wav["path"]):
        event, message = translate(app, path, "mallory")
        assert event == "error" and "must be uploaded or recorded in your own session" in str(message), message
    # alice may reuse her own output; mallory may upload the same bytes herself (a fresh upload is hers)
    assert translate(app, wav["path"], "alice")[0] == "complete"
    again = upload(app, _clip(tmp_path / "cello.wav"))
    assert again == mine and translate(app, again, "mallory")[0] == "complete"

    # idle sessions end: their outputs and uploads are deleted and no longer served
    deadline = time.time() + IDLE_MINUTES * 60 + 30
    while time.time() < deadline and (Path(wav["path"]).exists() or Path(mine).exists()):
        time.sleep(1)
    assert not Path(wav["path"]).exists() and not Path(mine).exists()
    assert not any(Path(wav["path"]).parents[1].parent.glob("studio-session-*/*/cello-to-violin.wav"))
    assert fetch(app, wav["url"]) in (403, 404)


def test_contradictory_blend_and_server_paths_get_a_plain_message(app, tmp_path):
    mine = upload(app, _clip(tmp_path / "flute.wav"))
    event, message = translate(app, mine, "bob", "(none)", 0.4)
    assert event == "error" and "Blend is 40% but 'Blend with' is (none)" in str(message), message
    # the missing generator: the message names the models folder and its setting, not the server's path
    event, message = call(app, "generate", [1, 1.0, 0, 0, 1, None, 1], "bob")
    assert event == "error" and "the models folder (setting STUDIO_MODELS_DIR)" in str(message), message
    assert str(app.models) not in str(message) and "/" not in str(message).replace("s/step", ""), message
    # nor does the page (Models tab, the Demucs hint) carry the models or Demucs folder
    config = httpx.get(f"{app.url}config", timeout=30).text
    assert str(app.models) not in config and "the Demucs folder" in config


def test_closing_the_browser_tab_deletes_the_sessions_files(app_long, tmp_path):
    from test_app import app_page

    clip = _clip(tmp_path / "oboe.wav", 330.0)
    app = app_long
    uploads = app.uploads
    with app_page(app.url, 1000) as page:
        page.locator("input[type=file]").first.set_input_files(str(clip))
        page.get_by_role("button", name="Translate", exact=True).click()
        link = page.wait_for_selector("a[href*='oboe-to-violin.wav']", state="attached", timeout=120_000)
        href = link.get_attribute("href")
        output = next(uploads.glob("studio-session-*/*/oboe-to-violin.wav"))
        upload_copy = next(p for p in uploads.glob("*/oboe.wav"))
        assert fetch(app, href) == 200
        page.screenshot(path=str(ARTIFACTS / "session-translate.png"), full_page=True)
    # the browser is gone: Gradio's unload event ends the session at once (well before the idle timeout)
    deadline = time.time() + 30
    while time.time() < deadline and (output.exists() or upload_copy.exists()):
        time.sleep(0.5)
    assert not output.exists() and not upload_copy.exists()
    assert fetch(app, href) in (403, 404)


def test_messages_name_folders_and_settings_not_server_paths(tmp_path, monkeypatch):
    from studio.app import public

    monkeypatch.setenv("STUDIO_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("STUDIO_DEMUCS_DIR", str(tmp_path / "demucs"))
    assert public(f"no model 'big' in {tmp_path}/models (available: none installed).") == \
        "no model 'big' in the models folder (setting STUDIO_MODELS_DIR) (available: none installed)."
    assert public(f"{tmp_path}/models/big/config.json is not valid JSON.") == \
        "'config.json' in the models folder (setting STUDIO_MODELS_DIR) is not valid JSON."
    assert public(f"no Demucs model 'htdemucs' in {tmp_path}/demucs: expected htdemucs.th") == \
        "no Demucs model 'htdemucs' in the Demucs folder (setting STUDIO_DEMUCS_DIR): expected htdemucs.th"
    assert public("could not read /srv/private/take3.wav or /etc/passwd; 48 kHz/24-bit is fine") == \
        "could not read 'take3.wav' or 'passwd'; 48 kHz/24-bit is fine"
