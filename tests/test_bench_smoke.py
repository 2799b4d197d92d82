"""Smoke tests for bench/: each script runs end to end on a tiny input.

They only check that the scripts still run and produce well-formed results
(fixture model, peers skipped); the benchmarks themselves are not tests.
"""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
DATA = BENCH.parent.parent / "shared" / "data" / "musdb18-7"


def _load(name):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def speed_json(model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "speed.json"
    _load("speed").main(["--seconds", "0.5", "--model", model_path, "--no-peers",
                         "--repeats", "1", "--blocks", "512", "--json", str(out)])
    return out


@pytest.fixture(scope="module")
def quality_json(model_path, tmp_path_factory):
    pytest.importorskip("musdb")
    pytest.importorskip("librosa")
    pytest.importorskip("scipy")
    if not DATA.is_dir():
        pytest.skip(f"MUSDB18-7 not found at {DATA}")
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "quality.json"
    _load("quality").main(["--data", str(DATA), "--cache", str(tmp / "cache"),
                           "--model", model_path, "--tracks", "1", "--seconds", "2",
                           "--check-museval", "0", "--json", str(out)])
    return out, tmp / "cache"


def test_speed_smoke(speed_json):
    res = json.loads(speed_json.read_text())
    (label,) = res["offline"]
    assert res["offline"][label]["x_realtime"] > 0
    s = res["streaming"][f"{label}@512"]
    assert s["block"] == 512 and s["p99_frac"] >= s["mean_frac"] > 0
    lat = res["latency"][label]
    assert lat["measured_min_delay_samples"] == lat["reported_samples"]
    assert lat["impulse_index_stream_out"] == lat["impulse_index_in"]
    assert lat["impulse_index_offline_out"] == lat["impulse_index_in"]
    assert res["peers"] == {}
    assert "stemboard.dsp (numba + rocket-fft)" in res["stft"]
    # the same model at the baseline commit ran in the same round-robin
    assert res["baseline"]["offline"][label]["median_s"] > 0
    assert res["baseline"]["streaming"][f"{label}@512"]["p99_frac"] > 0
    # the machine floor: fixed work per block, timed the same way, kept apart
    (floor,) = res["floor"]["streaming"].values()
    assert floor["block"] == 512 and floor["max_frac"] >= floor["p99_frac"] > 0
    assert set(res["streaming"]) == {f"{label}@512"}
    cpu = res.get("cpu_seconds")                              # Linux only
    assert cpu is None or 0 <= cpu["stolen"] and 0 < cpu["busy"] <= 2 * cpu["wall"] * res[
        "machine"]["cpu_count"]


def test_speed_realtime_streaming_is_paced_and_restores_priority(model_path):
    """``--stream-priority realtime`` feeds blocks at the host's pace on a SCHED_FIFO
    thread, and leaves the thread's scheduling as it found it."""
    import os
    import time

    from stemboard.plugin import StemSeparator

    speed = _load("speed")
    before = os.sched_getscheduler(0)
    try:
        with speed.host_priority(True):
            assert os.sched_getscheduler(0) == os.SCHED_FIFO
    except SystemExit as e:                       # no CAP_SYS_NICE here: a clear refusal
        assert "not permitted to use SCHED_FIFO" in str(e)
        pytest.skip("SCHED_FIFO not permitted")
    assert os.sched_getscheduler(0) == before
    sep = StemSeparator(model_path)
    x = np.random.default_rng(0).standard_normal((2, 20 * 512)).astype(np.float32) * 0.1
    t0 = time.perf_counter()
    times = speed.stream_block_times(sep, x, 512, realtime=True)
    wall = time.perf_counter() - t0
    assert times.shape == (20,) and (times > 0).all()
    assert wall >= 19 * 512 / speed.SR                 # one block per block duration
    assert os.sched_getscheduler(0) == before


def test_first_block_smoke(model_path):
    res = _load("first_block").main(["--model", model_path, "--repeats", "1",
                                     "--blocks", "2"])
    runs = res["runs"]
    assert len(runs) == 2
    for key, (run,) in runs.items():
        assert len(run["block_s"]) == 2 and min(run["block_s"]) > 0
        assert (run["prepare_s"] is None) == key.endswith("no prepare()")


def test_step_sessions_smoke(tmp_path):
    pytest.importorskip("onnx")
    from onnx_fixtures import band_split_model

    path = band_split_model(tmp_path / "step.onnx", stateful=True, context=4, lookahead=2)
    res = _load("step_sessions").main(["--model", str(path), "--seconds", "0.5",
                                       "--run", "5"])
    (figures,) = res["models"].values()
    assert figures["identical"] is True
    assert set(figures["stats"]) == {"fixed-shape sessions", "dynamic session"}
    for median, mean, p99, top in figures["stats"].values():
        assert 0 < median <= p99 <= top


def test_overlap_add_smoke(model_path):
    res = _load("overlap_add").main(["--model", model_path, "--seconds", "1", "--repeats", "1"])
    assert set(res["times_ms"]) == {"inverse FFTs alone (floor)",
                                    "masked_overlap_add, frame-major masks",
                                    "masked_overlap_add, bin-major masks",
                                    "masked_overlap_add at 975e4d3"}
    assert res["max_abs_diff_to_baseline"] < 1e-6
    assert res["max_abs_diff_between_layouts"] == 0.0       # the same sums in the same order


def test_equivalence_smoke(model_path, tmp_path):
    res = _load("equivalence").main(["--model", model_path, "--tracks", "0", "--seconds", "0.5",
                                     "--cache", str(tmp_path)])
    assert {r["mode"] for r in res["rows"]} == {"offline", "512-sample blocks"}
    assert max(r["max_abs"] for r in res["rows"]) < 1e-6


def test_equivalence_self_smoke(tmp_path):
    res = _load("equivalence").main(["--self", "--model", "offline", "--tracks", "0",
                                     "--seconds", "0.5", "--cache", str(tmp_path)])
    assert res["baseline"] == "self"
    assert {r["mode"] for r in res["rows"]} == {"512-sample blocks"}
    assert max(r["max_abs"] for r in res["rows"]) < 1e-5


def test_memory_smoke(model_path, tmp_path):
    if not Path("/proc/self/status").exists():
        pytest.skip("peak RSS is read from /proc (Linux)")
    out = tmp_path / "memory.json"
    res = _load("memory").main(["--model", model_path, "--minutes", "0.01", "0.03",
                                "--json", str(out)])
    assert json.loads(out.read_text())["model"] == res["model"]
    assert len(res["runs"]) == 2
    for r in res["runs"]:
        assert r["output_lengths_ok"] and len(r["outputs"]) == 4
        assert r["peak_rss_mib"] > res["floor_mib"] * 0.5


def test_quality_smoke(quality_json):
    res = json.loads(quality_json[0].read_text())
    assert len(res["tracks"]) == 1
    summ = res["summary"]
    assert {"mixture (floor)", "classical (centre / HPSS / low-pass)"} <= set(summ)
    irm = next(k for k in summ if k.startswith("oracle IRM"))
    # the oracle must beat the mixture-as-estimate floor on average
    assert summ[irm]["avg"] > summ["mixture (floor)"]["avg"]


def test_plots_smoke(speed_json, model_path, tmp_path):
    pytest.importorskip("matplotlib")
    _load("plots").main(["--speed", str(speed_json), "--quality", str(tmp_path / "none.json"),
                         "--out", str(tmp_path), "--only", "speed"])
    assert (tmp_path / "speed.png").stat().st_size > 1000


def test_plots_quality_smoke(quality_json, speed_json, model_path, tmp_path):
    pytest.importorskip("matplotlib")
    qjson, cache = quality_json
    _load("plots").main(["--speed", str(speed_json), "--quality", str(qjson), "--model", model_path,
                         "--data", str(DATA), "--cache", str(cache), "--out", str(tmp_path)])
    for name in ("masks", "sdr", "latency_sdr"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_postproc_smoke(quality_json, model_path, tmp_path):
    pytest.importorskip("norbert")
    out = tmp_path / "postproc.json"
    res = _load("postproc").main(["--data", str(DATA), "--cache", str(quality_json[1]),
                                  "--model", model_path, "--tracks", "1", "--seconds", "2",
                                  "--ensemble", str(Path(model_path).with_suffix(".json")),
                                  "--json", str(out)])
    assert json.loads(out.read_text())["summary"] == res["summary"]
    assert set(res["summary"]) == {"masks", "mid-side", "wiener-em-1", "mid-tta", "power-0.8",
                                   "power-1.25", "power-1.5", "power-2", "ensemble-2"}
    # averaging a model's masks with its own changes nothing
    for s in ("vocals", "drums", "bass", "other"):
        assert abs(res["summary"]["ensemble-2"][s] - res["summary"]["masks"][s]) < 1e-3
    # the power changes the masks, hence the scores
    assert res["summary"]["power-2"] != res["summary"]["masks"]
    for row in res["summary"].values():
        assert np.isfinite([row[s] for s in ("vocals", "drums", "bass", "other", "avg")]).all()


def test_batch_bench_runs_and_reports(model_path, tmp_path):
    out = tmp_path / "batch.json"
    res = _load("batch").main(["--files", "2", "--seconds", "0.5", "--model", model_path,
                               "--no-ray", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert set(saved["runs"]) == {"local x1", "local x2"}
    for label, m in res["median"].items():
        assert m["audio_s"] == pytest.approx(1.0), label
        assert m["wall_s"] > 0 and m["driver_cpu_per_item_s"] >= 0
    rows = res["projection"]["local x2"]
    assert [r[0] for r in rows] == [2, 16, 64, 256, 1024, 4096]
    assert all(b[1] >= a[1] for a, b in zip(rows, rows[1:]))  # never slower with more workers


def test_startup_bench_runs_and_reports(tmp_path):
    out = tmp_path / "startup.json"
    res = _load("startup").main(["--repeats", "1", "--cases", "python,import",
                                 "--json", str(out)])
    saved = json.loads(out.read_text())
    assert set(saved["results"]) == set(res) == {"python", "import"}
    for name, r in res.items():
        assert len(r["cold"]) == len(r["warm"]) == 1 and min(r["cold"] + r["warm"]) > 0, name
    with pytest.raises(SystemExit):
        _load("startup").main(["--cases", "nope"])


def test_baseline_package_runs_its_own_modules():
    """A baseline with absolute ``stemboard.*`` imports loads its own modules, not ours."""
    import subprocess

    benchlib = _load("benchlib")
    head = subprocess.run(["git", "-C", str(BENCH.parent), "rev-parse", "HEAD"],
                          capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    base = benchlib.load_baseline(head.stdout.strip(), name="stemboard_head_copy")
    from importlib import import_module

    engine = import_module("stemboard_head_copy.plugin.engine")
    root = Path(base.__file__).parent
    assert Path(engine.__file__).is_relative_to(root)
    assert Path(engine.make_renderer.__globals__["per_channel"].__code__.co_filename
                ).is_relative_to(root)
    # The lazily exported names (module paths written as strings) are its own too.
    for name in ("StemSeparator", "load_model", "render"):
        assert Path(import_module(getattr(base, name).__module__).__file__
                    ).is_relative_to(root), name
