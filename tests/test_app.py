"""The web app as users meet it: a real server in a subprocess, driven by gradio_client and by headless Chromium."""

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import ARTIFACTS, ROOT
from studio.tasks import TASKS

FOLD = "Fold into its range"  # the Translate tab's register choice (studio.app.REGISTERS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_models_dir(tmp_path_factory):
    """Tiny untrained models under the registry's default names (the real ones are tested elsewhere)."""
    from app_server import tiny_models

    return tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def server(tiny_models_dir, tmp_path_factory):
    port = _free_port()
    log = open(tmp_path_factory.mktemp("app") / "app.log", "w")
    env = {**os.environ, "STUDIO_MODELS_DIR": str(tiny_models_dir), "STUDIO_DEMUCS_DIR": str(tiny_models_dir / "none"),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "-m", "studio.app", "--port", str(port), "--max-seconds", "60"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            assert proc.poll() is None, open(log.name).read()
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the app did not start in 120 s")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def clip(rendered, tmp_path_factory):
    """8 s of a real rendered piano piece, as a 44.1 kHz stereo upload."""
    from studio.data import read_manifest

    e = next(e for e in read_manifest(rendered, "train") if e.domain == "piano")
    x, sr = sf.read(str(rendered / e.path), dtype="float32")
    path = tmp_path_factory.mktemp("upload") / "piano.wav"
    import torchaudio.functional as AF
    x44 = AF.resample(torch.from_numpy(x), sr, 44100).numpy()
    sf.write(path, np.stack([x44, x44], 1), 44100)
    return path


def test_api_translate_generate_compare(server, clip, tmp_path):
    from gradio_client import Client, handle_file

    c = Client(server, verbose=False)
    out, fig, info, files = c.predict(handle_file(str(clip)), "violin", False, "other", "(none)", 0.0, FOLD,
                                      api_name="/translate")
    y, sr = sf.read(out)
    assert sr == 22050 and abs(len(y) / sr - sf.info(str(clip)).duration) < 0.01
    assert fig.endswith(".png") and "violin" in info
    # the downloads: the translation and its spectrogram, named after the upload
    assert [os.path.basename(f) for f in files] == ["piano-to-violin.wav", "piano-to-violin.png"]
    files, info = c.predict(2, 1.0, 0, 0, 2, None, 3, api_name="/generate")
    assert [os.path.basename(f) for f in files] == ["piano-seed0.wav", "piano-seed0.png",
                                                    "piano-seed1.wav", "piano-seed1.png"]
    for f in files[::2]:
        assert abs(sf.info(f).duration - 2.0) < 0.01
    melgan, gl, fig, table = c.predict(handle_file(str(clip)), api_name="/compare")
    assert sf.info(melgan).frames == sf.info(gl).frames > 0
    assert "log-mel L1" in table and "real time" in table


def test_bad_uploads_get_a_message_and_the_server_keeps_serving(server, clip, tmp_path):
    from gradio_client import Client, handle_file

    c = Client(server, verbose=False)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio" * 100)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(22050 * 2, dtype=np.float32), 22050)
    for path, message in [(junk, "not a readable audio file"), (silent, "silent")]:
        with pytest.raises(Exception, match=message):
            c.predict(handle_file(str(path)), "violin", False, "other", "(none)", 0.0, FOLD, api_name="/translate")
    out, _, _, _ = c.predict(handle_file(str(clip)), "piano", False, "other", "(none)", 0.0, "Keep the original octaves",
                             api_name="/translate")
    assert sf.info(out).frames > 0


@contextlib.contextmanager
def app_page(url: str, height: int):
    """The app loaded in the system Chromium (headless, nothing that would reach the network)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-quic", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": height})
            page.goto(url)
            page.wait_for_selector("input[type=file]", state="attached", timeout=60_000)
            yield page
        finally:
            browser.close()


def test_browser_upload_translate_and_screenshot(server, clip):
    with app_page(server, 1000) as page:
        page.locator("input[type=file]").first.set_input_files(str(clip))
        page.get_by_role("button", name="Translate", exact=True).click()
        page.get_by_text(re.compile(r"Translated [\d.]+ s to")).wait_for(timeout=120_000)
        # the output player offers the translated file, and the spectrogram image is shown
        link = page.wait_for_selector("a[href*='piano-to-violin.wav']", state="attached", timeout=30_000)
        page.wait_for_selector("img[src*='piano-to-violin.png']", timeout=30_000)
        page.wait_for_timeout(1500)  # let the waveform draw before the screenshot
        href = link.get_attribute("href")
        page.screenshot(path=str(ARTIFACTS / "translate.png"), full_page=True)
        # fetched while the page is open: closing it ends the session and deletes its files
        with urllib.request.urlopen(href if href.startswith("http") else server.rstrip("/") + href) as r:
            data = r.read()
    assert (ARTIFACTS / "translate.png").stat().st_size > 20_000
    assert data[:4] == b"RIFF" and len(data) > 8 * 22050 * 2


def test_api_interpolate_and_training_estimates(server, clip, rendered, tmp_path):
    from gradio_client import Client, handle_file

    from studio.data import read_manifest

    other = next(e for e in read_manifest(rendered, "train") if e.domain == "cello")
    c = Client(server, verbose=False)
    joined, fig, files, info = c.predict(handle_file(str(clip)), handle_file(str(rendered / other.path)), "Steps", 3,
                                         2, api_name="/interpolate")
    assert len(files) == 3 and all(abs(sf.info(f).duration - 2.0) < 0.01 for f in files)
    assert abs(sf.info(joined).duration - (3 * 2.0 + 2 * 0.25)) < 0.01 and fig.endswith(".png") and "3 steps" in info
    joined, fig, files, info = c.predict(handle_file(str(clip)), handle_file(str(rendered / other.path)),
                                         "Morph over time", 3, 2, "violin", api_name="/interpolate_translator")
    assert len(files) == 1 and abs(sf.info(joined).duration - 2.0) < 0.01 and "violin" in info
    table = c.predict(api_name="/estimates")
    for model in ("vocoder", "translator", "vqvae", "prior"):
        assert re.search(rf"\| {model} \|.*\| [\d.]+ \(batch \d+", table), table


def test_browser_exploration_controls_and_screenshots(server, clip, rendered):
    from studio.data import read_manifest

    other = rendered / next(e for e in read_manifest(rendered, "train") if e.domain == "cello").path
    with app_page(server, 1400) as page:
        # Translate tab: the instrument blend and the interpolation controls
        page.get_by_text("Blend and stems").click()
        page.get_by_text("Interpolate two clips (the translator's encoder)").click()
        page.get_by_role("button", name="Interpolate through the translator", exact=True).wait_for()
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "explore-translate.png"), full_page=True)
        # Generate tab: interpolate two uploads, morph over time
        page.get_by_role("tab", name="Generate").click()
        page.get_by_text("Interpolate two clips (VQ-VAE latents)").click()
        button = page.get_by_role("button", name="Interpolate", exact=True)
        button.wait_for()
        page.locator("#gi-a input[type=file]").set_input_files(str(clip))
        page.locator("#gi-b input[type=file]").set_input_files(str(other))
        page.get_by_text("Morph over time").last.click()
        page.wait_for_timeout(1000)
        button.click()
        page.get_by_text(re.compile(r"a morph from A to B")).wait_for(timeout=120_000)
        page.wait_for_selector("#gi-fig img", timeout=30_000)  # in the accordion, next to its controls
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "explore-generate.png"), full_page=True)
    assert (ARTIFACTS / "explore-generate.png").stat().st_size > 20_000


def _img_shown_whole(page, selector: str) -> list[dict]:
    """For each image: its natural and displayed aspect ratios and object-fit (cropped when 'cover' and they differ)."""
    return page.eval_on_selector_all(selector, """imgs => imgs.map(i => {
        const r = i.getBoundingClientRect();
        return {natural: i.naturalWidth / i.naturalHeight, shown: r.width / r.height, fit: getComputedStyle(i).objectFit,
                width: r.width};
    })""")


def test_browser_musician_defaults_players_and_models_tab(server, tmp_path):
    # a clip whose name says violin: the target moves away from the default (violin); the tiny test translator
    # knows piano and violin only (with the shipped one it is cello)
    t = np.arange(22050 * 3) / 22050
    take = tmp_path / "violin_take.wav"
    sf.write(take, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050)
    with app_page(server, 1000) as page:
        target = page.get_by_label("Play it on")
        assert target.input_value() == "violin"
        page.locator("input[type=file]").first.set_input_files(str(take))
        page.wait_for_function("document.querySelector('#translate-eta') && "
                               "/translating it takes/.test(document.querySelector('#translate-eta').innerText)",
                               timeout=120_000)  # the time it will take, before starting
        assert target.input_value() == "piano"
        page.get_by_role("button", name="Translate", exact=True).click()
        downloads = page.locator("#translate-downloads")
        downloads.locator("a[download='violin_take-to-piano.wav']").wait_for(timeout=120_000)
        downloads.locator("a[download='violin_take-to-piano.png']").wait_for()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "musician-translate.png"), full_page=True)

        # Generate: each sample its own player and its whole spectrogram
        page.get_by_role("tab", name="Generate").click()
        page.get_by_role("button", name="Generate piano").click()
        page.wait_for_selector("#sample-1 img", timeout=120_000)
        page.wait_for_timeout(1500)
        assert page.evaluate("new Set([...document.querySelectorAll('.sample')].map(e => e.id)).size") == 2
        for i in range(2):  # (Gradio repeats a group's id on its inner element)
            group = page.locator(f"#sample-{i}").first
            assert group.get_by_text(f"sample {i}", exact=True).count() == 1  # the player's label
            assert group.locator(f"a[href$='piano-seed{i}.wav']").count() == 1  # this sample's own audio
        images = _img_shown_whole(page, ".sample img")
        assert len(images) == 2
        for im in images:
            assert im["fit"] != "cover" or abs(im["natural"] - im["shown"]) < 0.02 * im["natural"], im
            assert im["natural"] > 2  # the wide figure, axes included
        page.screenshot(path=str(ARTIFACTS / "musician-generate.png"), full_page=True)

        # Models tab: what each model is for first, the cards folded away
        page.get_by_role("tab", name="Models").click()
        page.get_by_text("What to expect:").first.wait_for()
        page.wait_for_timeout(500)
        height = page.evaluate("document.documentElement.scrollHeight")
        page.screenshot(path=str(ARTIFACTS / "musician-models.png"), full_page=True)
        assert height < 2000, height
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "musician-models-phone.png"), full_page=True)
        # no word of the summary is broken across lines
        broken = page.eval_on_selector_all("#models-summary *", """els => els.filter(c => {
            const s = getComputedStyle(c); return s.wordBreak === 'break-all' || s.overflowWrap === 'anywhere';
        }).length""")
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert broken == 0 and wide <= 390, (broken, wide)


def test_api_outputs_are_labelled(server):
    from gradio_client import Client

    api = Client(server, verbose=False).view_api(print_info=False, return_format="dict")
    names = [r["label"] for e in api["named_endpoints"].values() for r in e["returns"]]
    assert names and not any(re.fullmatch(r"value_\d+", n or "") for n in names), names


def test_browser_training_estimate_leaves_translation_free_and_cancels(server, clip):
    with app_page(server, 1000) as page:
        page.get_by_role("tab", name="Models").click()
        page.get_by_text("Training time on this machine").click()
        page.get_by_role("button", name="Estimate training time on this machine").click()
        page.get_by_text(re.compile(rf"Measuring vocoder \(1 of {len(TASKS)}\)")).wait_for(timeout=60_000)
        # a translation goes through while the planner measures (its own queue, one slot)
        page.get_by_role("tab", name="Translate").click()
        page.locator("input[type=file]").first.set_input_files(str(clip))
        page.get_by_role("button", name="Translate", exact=True).click()
        page.get_by_text(re.compile(r"Translated [\d.]+ s to")).wait_for(timeout=120_000)
        page.get_by_role("tab", name="Models").click()
        assert page.get_by_text(re.compile(rf"Measuring \w+ \(\d of {len(TASKS)}\)")).count() == 1  # still measuring
        page.get_by_role("button", name="Cancel").click()
        page.get_by_text("Cancelled.").wait_for(timeout=10_000)
        page.wait_for_timeout(3000)
        page.screenshot(path=str(ARTIFACTS / "models-estimate-cancelled.png"), full_page=True)
        assert page.get_by_text(re.compile(r"Measured now in")).count() == 0
