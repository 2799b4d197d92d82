"""Batch engines (issue 26): local process pool with 1 and 2 workers, and Ray with 2 actors.

All three run the same catalog in one invocation through ``stemboard.batch.run``,
each into a fresh output folder, round-robin over ``--repeats`` so machine load hits
them alike. Each run counts everything a user waits for: starting the workers,
loading one model per worker, separating, writing and journaling.

Reported per engine: wall time, audio hours per hour, the ratio to one local
worker, the Ray overhead against the local pool at the same worker count (target
<= 15 %; with Ray started for the batch, and joining a runtime already up), the
mean worker seconds per item, the load average around each run, and the driver's
CPU seconds per item while items run (what the one process that hands out items
and writes the journal spends on each; startup is reported on its own).
From the last two it prints a **projection** of throughput past one machine: with
W workers each taking ``c`` s per item and a driver spending ``d`` s per item,
items/s = min(W / c, 1 / d). That is a model, not a measurement.

The default model is ``offline``: the default ``hq`` model is about 4.5x slower per
item and would make the run long without changing what is compared (engine
overhead per item is the same).

    python bench/batch.py --json runs/bench/batch.json            # 24 x 30 s, offline
    python bench/batch.py --files 2 --seconds 1 --model fixture --no-ray   # smoke run
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402

# "ray" starts a local Ray runtime for the batch (`--engine ray` without an address);
# "ray-up" joins one already running, as a batch on a cluster does.
CONFIGS = (("local", 1), ("local", 2), ("ray", 2), ("ray-up", 2))
PROJECTED_WORKERS = (2, 16, 64, 256, 1024, 4096)


def make_catalog(folder, *, files, seconds):
    """``files`` synthetic stereo songs of ``seconds`` each (16-bit WAV)."""
    from pedalboard.io import AudioFile

    Path(folder).mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        path = Path(folder) / f"song{i:03d}.wav"
        with AudioFile(str(path), "w", benchlib.SR, 2, bit_depth=16) as f:
            f.write(benchlib.test_signal(seconds, seed=i))
        paths.append(path)
    return paths


def one_run(paths, out, *, engine, workers, model):
    """Time one batch; return its measurements."""
    from stemboard.batch import run

    runtime = None
    if engine == "ray-up":
        import ray

        from stemboard.jobs import _local_ray_priority

        with _local_ray_priority(None):  # the runtime `--engine ray` would start
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        runtime, engine = ray, "ray"
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        summary = run(paths, out, model=model, engine=engine, workers=workers)
    finally:
        if runtime is not None:
            runtime.shutdown()
    wall = time.perf_counter() - t0
    if summary["failed"] or summary["done"] != len(paths):
        raise SystemExit(f"{engine} x{workers}: {summary['failed']} items failed: "
                         f"{summary['failures'][:1]}")
    items = summary["items"]
    return {"wall_s": wall, "audio_s": summary["audio_s"],
            "audio_h_per_h": summary["audio_s"] / wall,
            "item_s": sum(r["seconds"] for r in items) / len(items),
            "startup_s": summary["startup_s"],
            "driver_cpu_per_item_s": summary["driver_cpu_s"] / len(items),
            "load_before": load_before, "load_after": os.getloadavg()[0]}


def projection(item_s, driver_s, seconds_per_item):
    """Audio hours per hour for W workers: min(W / c, 1 / d) items/s, times the audio."""
    rows = []
    for w in PROJECTED_WORKERS:
        items_per_s = min(w / item_s, 1 / driver_s)
        rows.append([w, items_per_s, items_per_s * seconds_per_item,
                     "driver" if 1 / driver_s < w / item_s else "workers"])
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--model", default="offline", help="bundled name, 'fixture' or a path")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-ray", action="store_true", help="local engine only")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    model = next(iter(benchlib.resolve_models([args.model]).values()))
    configs = [c for c in CONFIGS if not (args.no_ray and c[0].startswith("ray"))]
    if not args.no_ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            print("[bench] ray is not installed; the Ray row is skipped", file=sys.stderr)
            configs = [c for c in configs if not c[0].startswith("ray")]
    res = {"machine": benchlib.machine_info(), "git": benchlib.git_rev(), "model": args.model,
           "files": args.files, "seconds": args.seconds, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="stemboard-batch-bench-") as tmp:
        paths = make_catalog(Path(tmp) / "in", files=args.files, seconds=args.seconds)
        for rep in range(args.repeats):
            for engine, workers in configs:
                label = f"{engine} x{workers}"
                out = Path(tmp) / f"out-{engine}-{workers}-{rep}"
                r = one_run(paths, out, engine=engine, workers=workers, model=model)
                res["runs"].setdefault(label, []).append(r)
                print(f"[bench] {label}: {r['wall_s']:.1f} s, load {r['load_before']:.2f} -> "
                      f"{r['load_after']:.2f}", file=sys.stderr)
    report(res)
    benchlib.save_json(args.json, res)
    return res


def report(res):
    med = {label: {k: benchlib.median([r[k] for r in runs]) for k in runs[0]}
           for label, runs in res["runs"].items()}
    res["median"] = med
    base = med["local x1"]["wall_s"] if "local x1" in med else None
    rows = []
    for label, m in med.items():
        rows.append([label, m["wall_s"], m["startup_s"], m["audio_h_per_h"],
                     base / m["wall_s"] if base else float("nan"), m["item_s"],
                     m["driver_cpu_per_item_s"] * 1000, f"{m['load_before']:.2f}",
                     f"{m['load_after']:.2f}"])
    print(f"\n{res['files']} files x {res['seconds']:g} s stereo, model {res['model']}, "
          f"{res['machine']['cpu_count']} cores\n")
    print(benchlib.table(["engine", "wall (s)", "of which startup (s)", "audio h/h",
                          "speed-up vs local x1", "worker s/item", "driver CPU ms/item",
                          "load before", "load after"], rows))
    for label in ("ray x2", "ray-up x2"):
        if label in med and "local x2" in med:
            overhead = med[label]["wall_s"] / med["local x2"]["wall_s"] - 1
            res.setdefault("ray_overhead_vs_local_x2", {})[label] = overhead
            print(f"\n{label} overhead vs the local pool at 2 workers: {overhead * 100:+.1f} % "
                  f"(target <= 15 %): {'met' if overhead <= 0.15 else 'NOT met'}")
    for label in ("local x2", "ray-up x2"):
        if label in med:
            m = med[label]
            rows = projection(m["item_s"], m["driver_cpu_per_item_s"], res["seconds"])
            res.setdefault("projection", {})[label] = rows
            print(f"\nPROJECTION, not measured ({label} costs: {m['item_s']:.2f} s per item "
                  f"per worker, driver {m['driver_cpu_per_item_s'] * 1000:.1f} ms per item)\n")
            print(benchlib.table(["workers", "items/s", "audio h/h", "bound by"], rows))


if __name__ == "__main__":
    main()
