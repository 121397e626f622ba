"""``studio bench``: the rows are there with finite, positive numbers (no speed thresholds)."""

import json
import math

from conftest import run_cli
from studio.bench import EXTRA_ROWS, Bench, BenchOptions, register


def _positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_quick_bench_from_the_cli_writes_every_row(tmp_path):
    out = tmp_path / "bench.json"
    r = run_cli("bench", "--quick", "--json", out)
    assert "x RT" in r.stdout and "paper G fp32, weight norm (reference)" in r.stdout
    result = json.loads(out.read_text())
    m = result["machine"]
    assert m["cpu"] and m["usable_cores"] >= 1 and m["torch"]
    assert "CPU features: " in r.stdout and f"native bf16: {m['native_bf16']} ({m['native_bf16_reason']})" in r.stdout
    rows = result["rows"]
    names = {(q["group"], q["name"]) for q in rows}
    assert ("infer", "paper G fp32, weight norm (reference)") in names
    assert ("infer", "folded fp32") in names and ("infer", "folded bf16") in names
    assert ("train", "paper G+D step fp32 (reference)") in names
    assert ("train", "G+D step bf16 autocast, studio step") in names
    assert ("train", "G+D step fp32, studio step") in names
    assert any(g == "stream" and n.startswith("stream ") for g, n in names)
    assert any(g == "stream" and n.startswith("vocode_long") for g, n in names)
    assert {q["batch"] for q in rows if q["group"] == "infer"} == {1, 2}
    auto = [q for q in rows if q["name"].startswith("default call (auto) -> ")]  # what users run, per batch
    assert {q["batch"] for q in auto} == {1, 2} and {q["name"].split()[-1] for q in auto} <= {"bf16", "onnx", "fp32"}
    assert any(f"'auto' (what vocode/translate/generate/the app run) picked {auto[0]['name'].split()[-1]}" in n
               for n in result["notes"])
    for q in rows:
        for k in ("time_s", "khz", "x_realtime", "peak_rss_mb", "ratio", "threads", "batch", "audio_s"):
            assert _positive(q[k]), (q["name"], k, q[k])
        assert q["dtype"]
    for q in rows:
        if q["group"] == "stream" and q["name"].startswith("stream "):
            assert _positive(q["latency_ms"]) and q["latency_ms"] > q["algorithmic_latency_ms"] > 0


def lazy_toy_rows(bench):
    """Listed in EXTRA_ROWS by name, as a pipeline module would be."""
    timing = bench.measure(lambda: sum(range(20_000)))
    bench.row("toy", "toy pipeline, half speed", timing, audio_s=0.5, batch=1, dtype="float32",
              reference="toy pipeline")


def test_extra_rows_plug_in():
    @register
    def toy_rows(bench):
        timing = bench.measure(lambda: sum(range(10_000)))
        bench.row("toy", "toy pipeline", timing, audio_s=0.5, batch=1, dtype="float32")

    EXTRA_ROWS.append("test_bench:lazy_toy_rows")
    try:
        opts = BenchOptions.quick_options(batches=(1,), train=False, stream=False)
        result = Bench(opts, log=lambda s: None).run()
    finally:
        EXTRA_ROWS.remove(toy_rows)
        EXTRA_ROWS.remove("test_bench:lazy_toy_rows")
    toy = [q for q in result["rows"] if q["group"] == "toy"]
    assert [q["name"] for q in toy] == ["toy pipeline", "toy pipeline, half speed"]
    assert all(_positive(q["x_realtime"]) and _positive(q["ratio"]) for q in toy)
    assert toy[0]["ratio"] == 1.0 and toy[1]["reference"] == "toy pipeline"
    assert any(q["name"] == "folded fp32" and _positive(q["ratio"]) for q in result["rows"])
