"""One table of bad (and merely unusual) inputs, met by the Python API, the CLI and the web app.

Each case gets either a correct result or a one-line error saying what is wrong and what is accepted: a
``StudioError`` in Python, ``error: ...`` and exit status 2 from the CLI, a one-line message from the app (whose
server keeps serving). Never a traceback.
"""

from __future__ import annotations

import json
import re
import struct
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
import torch

from app_server import AppServer, tiny_models
from conftest import SHARED, run_cli
from studio.audio import load_audio
from studio.errors import ConfigMismatch, StudioError

FOLD = "Fold into its range"  # the Translate tab's register choice (studio.app.REGISTERS)

SR = 22050
ROBUSTNESS = SHARED / "robustness"
OK = "ok"


@dataclass(frozen=True)
class Case:
    """``make(folder) -> path``; per surface the expectation: ``OK`` or a regex the one-line error must match;
    ``None`` where the case does not apply (an upload cannot be a missing file; only the API takes a mel)."""

    id: str
    make: Callable[[Path], Path] | None
    api: str
    cli: str | None
    app: str | None
    needs: Path | None = None  # a shared file the case uses (skipped when absent)


def music(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    """A few seconds of a chord with vibrato, shaped ``[T]`` or ``[T, channels]`` (each channel a little different)."""
    t = np.arange(int(seconds * sr)) / sr
    cols = []
    for c in range(channels):
        f = 220.0 * (1 + 0.05 * c)
        x = sum(0.15 / k * np.sin(2 * np.pi * f * k * t + 0.3 * np.sin(2 * np.pi * 5 * t)) for k in (1, 2, 3, 5))
        cols.append(x * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t) ** 2))
    x = np.stack(cols, 1).astype(np.float32)
    return x[:, 0] if channels == 1 else x


def _write(name, data, sr, subtype=None):
    def make(d: Path) -> Path:
        sf.write(d / name, data() if callable(data) else data, sr, subtype=subtype)
        return d / name
    return make


def _bytes(name, data: bytes):
    def make(d: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name
    return make


def _truncated(d: Path) -> Path:
    """A valid 16-bit WAV cut in the middle of its data: the header claims twice what the file holds."""
    sf.write(d / "whole.wav", music(2.0, SR), SR, subtype="PCM_16")
    data = (d / "whole.wav").read_bytes()
    (d / "truncated.wav").write_bytes(data[: 44 + (len(data) - 44) // 2 + 1])  # and half a sample
    return d / "truncated.wav"


def _wav_codec(tag: int):
    def make(d: Path) -> Path:
        sf.write(d / "codec.wav", music(1.0, SR), SR, subtype="PCM_16")
        data = bytearray((d / "codec.wav").read_bytes())
        assert data[12:16] == b"fmt "
        data[20:22] = struct.pack("<H", tag)  # the fmt chunk's format tag
        (d / "codec.wav").write_bytes(bytes(data))
        return d / "codec.wav"
    return make


def _non_finite(value):
    x = music(1.0, SR)
    x[1000:1010] = value
    return x


def _one_hour(d: Path) -> Path:
    """60 min of 8 kHz 16-bit mono (57.6 MB), written in blocks."""
    path = d / "one_hour.wav"
    block = (music(10.0, 8000) * 0.5)
    with sf.SoundFile(path, "w", 8000, 1, "PCM_16") as f:
        for _ in range(360):
            f.write(block)
    return path


def _missing(d: Path) -> Path:
    return d / "no_such_clip.wav"


def _directory(d: Path) -> Path:
    (d / "a_folder.wav").mkdir(exist_ok=True)
    return d / "a_folder.wav"


ACCEPTED = "accepted: WAV, FLAC, OGG, MP3"
CASES = [
    Case("empty-file", _bytes("empty.wav", b""), r"'empty\.wav' is empty \(0 bytes\); " + ACCEPTED,
         r"is empty \(0 bytes\); " + ACCEPTED, r"is empty \(0 bytes\); " + ACCEPTED),
    Case("wav-0-samples", _write("zero.wav", np.zeros(0, np.float32), SR),
         r"has no samples; at least 1024 samples at 22050 Hz", r"has no samples; at least 1024 samples",
         r"has no samples; at least 1024 samples"),
    Case("wav-1-sample", _write("one.wav", np.full(1, 0.5, np.float32), SR),
         r"is too short \(1 sample at 22050 Hz\); at least 1024 samples", r"too short \(1 sample",
         r"too short \(1 sample"),
    Case("not-audio-named-wav", _bytes("noise.wav", np.random.default_rng(0).bytes(6000)),
         r"'noise\.wav' is not a readable audio file \(Format not recognised\); " + ACCEPTED,
         r"is not a readable audio file .*; " + ACCEPTED, r"is not a readable audio file .*; " + ACCEPTED),
    Case("truncated-wav", _truncated, OK, OK, OK),
    Case("truncated-pcm32-a", lambda d: ROBUSTNESS / "truncated_pcm32_a.wav", OK, OK, OK,
         needs=ROBUSTNESS / "truncated_pcm32_a.wav"),
    Case("truncated-pcm32-b", lambda d: ROBUSTNESS / "truncated_pcm32_b.wav", OK, OK, OK,
         needs=ROBUSTNESS / "truncated_pcm32_b.wav"),
    Case("wav-unsupported-codec", _wav_codec(0x0161),
         r"is a WAV file with an unsupported codec \(format tag 0x0161, WMA\); accepted WAV codecs: PCM",
         r"unsupported codec \(format tag 0x0161, WMA\); accepted WAV codecs",
         r"unsupported codec \(format tag 0x0161"),
    Case("m4a-garbage", _bytes("song.m4a", b"\0\0\0\x20ftypM4A \0\0\0\0M4A mp42isom" + bytes(range(256)) * 8),
         r"'song\.m4a' is an MP4/M4A .* not supported; convert it first \(accepted: WAV, FLAC", r"MP4/M4A .* not supported",
         r"MP4/M4A .* not supported"),
    Case("float-nan", _write("nan.wav", lambda: _non_finite(np.nan), SR, "FLOAT"),
         r"contains NaN or infinite samples; accepted: finite samples", r"NaN or infinite samples; accepted",
         r"NaN or infinite samples; accepted"),
    Case("float-inf", _write("inf.wav", lambda: _non_finite(-np.inf), SR, "FLOAT"),
         r"contains NaN or infinite samples; accepted: finite samples", r"NaN or infinite samples; accepted",
         r"NaN or infinite samples; accepted"),
    Case("all-silence", _write("silence.wav", np.zeros(SR * 2, np.float32), SR), OK, OK,
         r"The clip is silent \(below -60 dBFS\); upload one with sound in it"),
    Case("clipped-int16", _write("clipped.wav", lambda: np.clip(music(2.0, SR) * 30, -1, 1), SR, "PCM_16"), OK, OK, OK),
    Case("float-over-full-scale", _write("loud.wav", lambda: music(2.0, SR) * 30, SR, "FLOAT"), OK, OK, OK),
    Case("8-channels", _write("eight.wav", lambda: music(2.0, 48000, 8), 48000, "PCM_24"), OK, OK, OK),
    Case("8-khz", _write("low.wav", lambda: music(2.0, 8000), 8000, "PCM_16"), OK, OK, OK),
    Case("96-khz", _write("high.wav", lambda: music(2.0, 96000), 96000, "PCM_24"), OK, OK, OK),
    Case("int32", _write("int32.wav", lambda: music(2.0, 44100), 44100, "PCM_32"), OK, OK, OK),
    Case("float32", _write("float32.wav", lambda: music(2.0, 44100), 44100, "FLOAT"), OK, OK, OK),
    Case("384-khz", _write("ultra.wav", lambda: music(0.5, 384000), 384000, "PCM_16"),
         r"'ultra\.wav' has a sample rate of 384000 Hz; accepted: up to 192000 Hz", r"sample rate of 384000 Hz; accepted",
         r"sample rate of 384000 Hz; accepted: up to 192000 Hz"),
    Case("16-channels", _write("sixteen.wav", lambda: music(0.5, 22050, 16), SR, "PCM_16"),
         r"'sixteen\.wav' has 16 channels; accepted: up to 8", r"has 16 channels; accepted: up to 8",
         r"has 16 channels; accepted: up to 8"),
    Case("one-hour", _one_hour, r"'one_hour\.wav' is 60\.0 min long; the limit is 30\.0 min",
         r"is 60\.0 min long; the limit is 30\.0 min", r"is 60\.0 min long; the limit is 5\.0 min"),
    # an upload is always a file the server received: the app gets the server-side path, which Gradio refuses
    Case("missing-path", _missing, r"no such file: .*no_such_clip\.wav; give the path of an audio file",
         r"no such file: .*no_such_clip\.wav", r"not uploaded by a user"),
    Case("directory", _directory, r"a_folder\.wav is a directory, not an audio file; give the path of one file",
         r"is a directory, not an audio file", r"not uploaded by a user"),
    Case("mel-wrong-shape", None, r"expected a log-mel of shape \[batch, 80, frames\]", None, None),
]
SERVER_SIDE = {"missing-path", "directory"}  # sent to the app as a raw path, not uploaded


def _params(surface: str):
    out = []
    for c in CASES:
        if getattr(c, surface) is None:
            continue
        marks = [pytest.mark.skipif(not c.needs.is_file(), reason=f"{c.needs} is absent")] if c.needs else []
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Every case's input, built once (the hour-long file is deleted after the module)."""
    d = tmp_path_factory.mktemp("bad_inputs")
    paths = {c.id: c.make(d) for c in CASES if c.make is not None and (c.needs is None or c.needs.is_file())}
    yield paths
    paths["one-hour"].unlink()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def api(models):
    from studio.registry import DEFAULTS
    from studio.translation import Translator
    from studio.vocoder import Vocoder

    vocoder = Vocoder.from_pretrained(models / DEFAULTS["vocoder"])
    return vocoder, Translator.from_pretrained(models / DEFAULTS["translator"], vocoder=vocoder)


def expected_length(path: Path) -> int:
    """Samples at 22.05 kHz the file should give: what libsndfile can read of it, resampled."""
    with sf.SoundFile(str(path)) as f:
        n, sr = f.frames, f.samplerate
    return n if sr == SR else int(np.ceil(n * SR / sr))


def one_line(message: str) -> None:
    assert "\n" not in message.strip() and "Traceback" not in message, message


# ------------------------------------------------------------------------------------------------------- Python API

@pytest.mark.parametrize("case", _params("api"))
def test_api(case, inputs, api):
    vocoder, translator = api
    if case.id == "mel-wrong-shape":
        for mel in (torch.randn(1, 64, 10), torch.randn(80), torch.randn(1, 80, 0), torch.randn(2, 1, 80, 5)):
            with pytest.raises(ConfigMismatch, match=case.api) as e:
                vocoder(mel)
            one_line(str(e.value))
        with pytest.raises(ConfigMismatch, match=r"log-mel tensor of shape \[1, 80, frames\], got \[1, 64, 10\]"):
            translator.translate_mel(torch.randn(1, 64, 10), translator.domain_weights("violin"))
        with pytest.raises(ConfigMismatch, match="NaN or infinite"):
            vocoder(torch.full((1, 80, 4), float("nan")))
        return
    path = inputs[case.id]
    calls = {"load_audio": lambda: load_audio(path, SR), "Vocoder.resynthesize": lambda: vocoder.resynthesize(path),
             "Translator.__call__": lambda: translator(path, target="violin")}
    if case.api != OK:
        for name, call in calls.items():
            with pytest.raises(StudioError, match=case.api) as e:
                call()
            one_line(str(e.value))
        return
    x, sr = calls["load_audio"]()
    n = expected_length(path)
    assert sr == SR and abs(len(x) - n) <= 1 and x.dtype == np.float32
    assert np.isfinite(x).all() and np.abs(x).max() <= 1.0
    if case.id == "truncated-wav":  # the samples the file does hold, exactly
        whole, _ = sf.read(str(path.parent / "whole.wav"), dtype="float32")
        assert len(x) == (path.stat().st_size - 44) // 2 < len(whole)
        np.testing.assert_array_equal(x, whole[: len(x)])
    if case.id.startswith("clipped") or case.id.startswith("float-over"):
        assert np.abs(x).max() == pytest.approx(1.0, abs=1e-4)  # scaled to full scale, not wrapped around
    y, sr = calls["Vocoder.resynthesize"]()
    assert sr == SR and len(y) == len(x) // 256 * 256 and np.isfinite(y).all()
    y, sr = calls["Translator.__call__"]()
    assert sr == SR and len(y) == len(x) and np.isfinite(y).all()


# ------------------------------------------------------------------------------------------------------------- CLI

@pytest.fixture(scope="module")
def cli_runs(inputs, models, tmp_path_factory):
    """``studio vocode`` on every case, two subprocesses at a time (each is mostly Python start-up and imports)."""
    from concurrent.futures import ThreadPoolExecutor

    from studio.registry import DEFAULTS

    out_dir = tmp_path_factory.mktemp("cli_out")

    def run(case):
        out = out_dir / f"{case.id}.wav"
        r = run_cli("vocode", inputs[case.id], "-o", out, "--model", models / DEFAULTS["vocoder"], check=False,
                    timeout=300, env={"OMP_NUM_THREADS": "1"})
        return r, out

    cases = [c for c in CASES if c.cli is not None and c.id in inputs]
    with ThreadPoolExecutor(2) as pool:
        return dict(zip([c.id for c in cases], pool.map(run, cases)))


@pytest.mark.parametrize("case", _params("cli"))
def test_cli(case, inputs, cli_runs):
    r, out = cli_runs[case.id]
    assert "Traceback" not in r.stderr + r.stdout
    if case.cli == OK:
        assert r.returncode == 0 and r.stdout.startswith("wrote "), r.stderr
        assert sf.info(str(out)).frames == expected_length(inputs[case.id]) // 256 * 256
    else:
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
        assert re.search(case.cli, r.stderr), r.stderr
        assert not out.exists()


# ------------------------------------------------------------------------------------------------------------- app

@pytest.fixture(scope="module")
def app(models, tmp_path_factory):
    log = tmp_path_factory.mktemp("app") / "app.log"
    with AppServer(models, log, "--max-seconds", "300", "--max-file-mb", "100") as server:
        yield server


def call_raw(url: str, api_name: str, data: list) -> tuple[str, str]:
    """The HTTP API as any client can call it, with a server-side path in place of an upload: (event, data)."""
    req = urllib.request.Request(f"{url}gradio_api/call/{api_name}", data=json.dumps({"data": data}).encode(),
                                 headers={"Content-Type": "application/json"})
    event_id = json.loads(urllib.request.urlopen(req, timeout=30).read())["event_id"]
    body = urllib.request.urlopen(f"{url}gradio_api/call/{api_name}/{event_id}", timeout=120).read().decode()
    events = [line.split(":", 1)[1].strip() for line in body.splitlines() if line.startswith("event:")]
    datas = [line.split(":", 1)[1].strip() for line in body.splitlines() if line.startswith("data:")]
    return events[-1], datas[-1]


@pytest.mark.parametrize("case", _params("app"))
def test_app(case, inputs, app):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    path = inputs[case.id]
    if case.id in SERVER_SIDE:
        event, data = call_raw(app.url, "translate", [{"path": str(path), "meta": {"_type": "gradio.FileData"}},
                                                      "violin", False, "other", "(none)", 0.0, FOLD])
        assert event == "error"
        message = json.loads(data)["error"]
        one_line(message)
        assert re.search(case.app, message), message
    else:
        c = app.client()
        args = ("violin", False, "other", "(none)", 0.0, FOLD)
        if case.app == OK:
            out, fig, info, files = c.predict(handle_file(str(path)), *args, api_name="/translate")
            assert sf.info(out).frames == expected_length(path) and "Translated" in info
        else:
            with pytest.raises(AppError, match=case.app) as e:
                c.predict(handle_file(str(path)), *args, api_name="/translate")
            one_line(str(e.value))
    assert app.alive(), app.log_text()[-3000:]


def test_app_keeps_serving_after_the_matrix(app, inputs):
    from gradio_client import handle_file

    c = app.client()
    out, _, info, _ = c.predict(handle_file(str(inputs["float32"])), "piano", False, "other", "(none)", 0.0, FOLD,
                             api_name="/translate")
    assert sf.info(out).frames == expected_length(inputs["float32"]) and "to **piano**" in info
    assert app.alive()
    # the server's log has no traceback of ours: user errors are one-line messages, not crashes (Gradio logs its
    # own refusal of server-side paths with a traceback)
    log = app.log_text()
    for block in log.split("Traceback (most recent call last):")[1:]:
        last = next(line for line in block.splitlines()[1:]
                    if line and not line.startswith((" ", "During", "The above")))
        assert last.startswith("gradio.exceptions.InvalidPathError"), block[-2000:]
