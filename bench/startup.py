"""Start-up time (issue 25): ``import stemboard``, ``stemboard --help`` and a first separation.

Each case runs in a fresh ``python`` subprocess, ``--repeats`` times, and the
min and median wall time are reported, twice:

- **cold**: every run gets a fresh, empty ``NUMBA_CACHE_DIR``, so the Numba
  kernels a run calls are compiled in it (a first run after install, or after
  the kernels' source changed);
- **warm**: every run shares one ``NUMBA_CACHE_DIR`` primed by an untimed run
  (every later start on that machine).

Python's own bytecode cache is warm in both. ``python -c pass`` gives the
interpreter's floor. The first separation is one model load plus a 1-s
separation, so its warm time is mostly the ONNX load; its cold-warm difference
is what compiling the kernels costs.

Targets: warm ``stemboard --help`` under 0.5 s, warm ``import stemboard`` under
0.8 s. The machine load is printed before and after, because a loaded machine
makes every start slower.

    python bench/startup.py                                   # 5 repeats, default model
    python bench/startup.py --repeats 3 --model fixture --json runs/bench/startup.json
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402

TARGETS = {"import": 0.8, "help": 0.5}

SEPARATE = """
import numpy as np
import stemboard
x = np.random.default_rng(0).standard_normal((2, 44100)).astype(np.float32) * 0.1
sep = stemboard.StemSeparator({model!r})
stems = sep.separate(x, 44100)
assert set(stems) == set(sep.stems)
"""


def cases(model):
    """``{name: argv}`` of the timed commands."""
    py = sys.executable
    return {"python": [py, "-c", "pass"],
            "import": [py, "-c", "import stemboard"],
            "help": [py, "-m", "stemboard", "--help"],
            "separate": [py, "-c", SEPARATE.format(model=model)]}


def time_once(argv, cache_dir):
    """Wall seconds of one subprocess run with ``NUMBA_CACHE_DIR=cache_dir``.

    It runs in the (empty) cache folder: ``python -c`` and ``-m`` put the working
    directory first on ``sys.path``, and run from a checkout they would import its
    ``stemboard/`` folder instead of the installed package.
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cache_dir, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed ({done.returncode}):\n{done.stderr}")
    return seconds


def imported_from():
    """The ``stemboard`` package the timed commands import (run from a neutral folder)."""
    code = "import stemboard; print(stemboard.__file__)"
    with tempfile.TemporaryDirectory() as d:
        return subprocess.run([sys.executable, "-c", code], cwd=d, capture_output=True,
                              text=True).stdout.strip()


def cached_kernels(cache_dir):
    """How many Numba index files (one per cached function) ``cache_dir`` holds."""
    return sum(1 for _ in Path(cache_dir).rglob("*.nbi"))


def measure(argv, *, repeats, warm_dir):
    """Cold (fresh cache each run) and warm (shared, primed cache) timings of ``argv``."""
    cold, kernels = [], 0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="stemboard-numba-") as d:
            cold.append(time_once(argv, d))
            kernels = cached_kernels(d)
    time_once(argv, warm_dir)  # primes the shared cache (and the OS file cache)
    warm = [time_once(argv, warm_dir) for _ in range(repeats)]
    return {"cold": cold, "warm": warm, "kernels_cached": kernels}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model", default=None,
                    help="model for the first separation (default: the bundled default; "
                         "'fixture' for the tests' tiny model)")
    ap.add_argument("--cases", default="python,import,help,separate",
                    help="comma-separated subset of python, import, help, separate")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    model = benchlib.fixture_model() if args.model == "fixture" else args.model
    all_cases = cases(model)
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in all_cases]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(all_cases)}")
    info = benchlib.machine_info()
    info["stemboard"] = imported_from()
    print(f"[bench] stemboard: {info['stemboard']}", file=sys.stderr)
    print(f"[bench] load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
          f"({os.cpu_count()} cores)", file=sys.stderr)
    results = {}
    with tempfile.TemporaryDirectory(prefix="stemboard-numba-warm-") as warm_dir:
        for name in names:
            results[name] = measure(all_cases[name], repeats=args.repeats, warm_dir=warm_dir)
            print(f"[bench] {name}: done", file=sys.stderr)
    load_after = os.getloadavg()
    rows = []
    for name, r in results.items():
        cmin, cmed = min(r["cold"]), benchlib.median(r["cold"])
        wmin, wmed = min(r["warm"]), benchlib.median(r["warm"])
        target = TARGETS.get(name)
        verdict = "" if target is None else (f"< {target} s: "
                                             + ("yes" if wmed < target else "no"))
        rows.append((name, cmin, cmed, wmin, wmed, cmed / wmed, r["kernels_cached"], verdict))
    print(benchlib.table(["case", "cold min s", "cold median s", "warm min s",
                          "warm median s", "cold/warm", "kernels compiled (cold)",
                          "warm target"], rows, floatfmt=".3f"))
    print(f"load average after: {' '.join(f'{v:.2f}' for v in load_after)}; "
          f"{args.repeats} repeats; git {benchlib.git_rev()}; stemboard from "
          f"{info['stemboard']}")
    benchlib.save_json(args.json, {"machine": info, "git": benchlib.git_rev(),
                                   "repeats": args.repeats, "model": model,
                                   "loadavg_after": load_after, "targets_s": TARGETS,
                                   "results": results})
    return results


if __name__ == "__main__":
    main()
