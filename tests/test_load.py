"""Load: 16 concurrent translate/generate requests against one app server (queue concurrency 2).

All are answered correctly within a total timeout; the max latency and the server's peak RSS (VmHWM) are printed
and written to test-artifacts/load.json, and peak memory must stay bounded.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
import pytest
import soundfile as sf

from app_server import AppServer, peak_rss_mb, tiny_models
from conftest import ARTIFACTS

REQUESTS = 16
CONCURRENCY = 2
TOTAL_TIMEOUT_S = 300
MAX_RSS_MB = 3072


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    models = tiny_models(tmp_path_factory.mktemp("models"))
    with AppServer(models, tmp_path_factory.mktemp("app") / "app.log", "--concurrency", str(CONCURRENCY)) as server:
        yield server


def test_sixteen_concurrent_requests(app, tmp_path):
    from gradio_client import handle_file

    sr, seconds = 44100, 4.0
    t = np.arange(int(sr * seconds)) / sr
    clips = []
    for i in range(4):  # four different stereo uploads
        x = 0.3 * np.sin(2 * np.pi * (220 + 55 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) / 1.5
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, np.stack([x, 0.8 * x], 1).astype(np.float32), sr)
        clips.append(path)
    client = app.client()
    rss_before = peak_rss_mb(app.pid)

    def request(i: int):
        start = time.perf_counter()
        if i % 2 == 0:
            target = ("violin", "piano")[i // 2 % 2]
            out, fig, info, files = client.predict(handle_file(str(clips[i // 2 % 4])), target, False, "other", "(none)",
                                            0.0, "Fold into its range", api_name="/translate")
            result = ("translate", out, info, target)
        else:
            files, info = client.predict(2.0, 1.0, 0, i, 1, None, 3, api_name="/generate")
            result = ("generate", files, info, i)
        return result, time.perf_counter() - start

    t0 = time.perf_counter()
    pool = ThreadPoolExecutor(REQUESTS)
    futures = [pool.submit(request, i) for i in range(REQUESTS)]
    done, pending = wait(futures, timeout=TOTAL_TIMEOUT_S)
    wall = time.perf_counter() - t0
    for f in pending:
        f.cancel()
    pool.shutdown(wait=False, cancel_futures=True)
    assert not pending, f"{len(pending)} of {REQUESTS} requests unanswered after {TOTAL_TIMEOUT_S} s"

    latencies = []
    for f in futures:
        (kind, out, info, arg), latency = f.result()
        latencies.append(latency)
        if kind == "translate":
            assert sf.info(out).samplerate == 22050 and sf.info(out).frames == int(seconds * 22050)
            assert f"to **{arg}**" in info
        else:
            assert [f[-4:] for f in out] == [".wav", ".png"] and abs(sf.info(out[0]).duration - 2.0) < 0.01
            assert "1 sample(s)" in info
    peak = peak_rss_mb(app.pid)
    figures = {"requests": REQUESTS, "concurrency_limit": CONCURRENCY, "wall_s": round(wall, 2),
               "max_latency_s": round(max(latencies), 2), "median_latency_s": round(float(np.median(latencies)), 2),
               "peak_rss_mb_before": round(rss_before), "peak_rss_mb": round(peak)}
    print("load:", json.dumps(figures))
    (ARTIFACTS / "load.json").write_text(json.dumps(figures, indent=2) + "\n")
    assert app.alive()
    assert peak < MAX_RSS_MB, figures
