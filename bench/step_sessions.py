"""Streaming block times with and without the fixed-shape one-frame sessions.

A stateful model's one-frame runs (a streaming block of at most ``hop``
samples) go to an ONNX Runtime session built for that batch size with the
batch and time fixed (``MaskModel._step_session``), so ONNX Runtime folds the
graph's shape arithmetic away.  This streams the same signal through two
prepared separators of each model, one with those sessions and one without
(its model's dynamic single-threaded session instead), in alternating runs of
``--run`` blocks so both meet the same machine, and prints the block times as
fractions of the real-time budget beside the ratio of the two, and whether the
outputs are identical.

    python bench/step_sessions.py                        # offline and live, 30 s
    python bench/step_sessions.py --model offline --seconds 60 --json runs/bench/step.json
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import SR, resolve_models, save_json, table, test_signal  # noqa: E402


def stats(times, budget):
    """Median, mean, p99 and max of ``times`` as fractions of ``budget``."""
    f = np.asarray(times) / budget
    return [float(np.median(f)), float(f.mean()), float(np.percentile(f, 99)),
            float(f.max())]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", help="bundled name or .onnx path of a "
                    "stateful model (repeatable; default offline and live)")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--buffer-size", type=int, default=512)
    ap.add_argument("--run", type=int, default=250,
                    help="blocks per run; the two variants alternate runs (default 250)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    from stemboard.plugin import StemSeparator

    bs = args.buffer_size
    budget = bs / SR
    x = test_signal(args.seconds)
    res = {"buffer_size": bs, "seconds": args.seconds, "loadavg_at_start": os.getloadavg(),
           "models": {}}
    rows = []
    for label, spec in resolve_models(args.model or ["offline", "live"]).items():
        seps = {"fixed-shape sessions": StemSeparator(spec),
                "dynamic session": StemSeparator(spec)}
        if not seps["dynamic session"].model.stateful:
            raise SystemExit(f"{label}: not a stateful model (nothing to compare)")
        # Private, for the comparison only: without the names of its free dimensions
        # the model runs one-frame steps on its dynamic single-threaded session.
        seps["dynamic session"].model._free_dims = None
        for sep in seps.values():
            sep.prepare(SR, x.shape[0], buffer_size=bs)
        times = {k: [] for k in seps}
        outs = {k: [] for k in seps}
        n = x.shape[1] // bs
        for i0 in range(0, n, args.run):
            for key, sep in seps.items():
                for i in range(i0, min(n, i0 + args.run)):
                    t = time.perf_counter()
                    y = sep.process(x[:, i * bs:(i + 1) * bs], SR, buffer_size=bs, reset=False)
                    times[key].append(time.perf_counter() - t)
                    outs[key].append(y)
        identical = all(np.array_equal(a, b) for a, b in zip(*outs.values()))
        figures = {k: stats(v, budget) for k, v in times.items()}
        res["models"][label] = {"stats": figures, "identical": identical}
        for key, f in figures.items():
            rows.append([label, key, *f])
        new, old = figures["fixed-shape sessions"], figures["dynamic session"]
        rows.append([label, "ratio (dynamic / fixed)", *(o / m for o, m in zip(old, new))])
        rows.append([label, "outputs identical", str(identical), "", "", ""])
    res["loadavg_at_end"] = os.getloadavg()
    print(f"\n## Streaming {bs}-sample blocks, {args.seconds:g} s, time per block / budget "
          f"({budget * 1e3:.1f} ms); runs of {args.run} blocks alternate; load average "
          f"{res['loadavg_at_start'][0]:.2f} -> {res['loadavg_at_end'][0]:.2f}\n")
    print(table(["model", "one-frame runs on", "median", "mean", "p99", "max"], rows))
    save_json(args.json, res)
    return res


if __name__ == "__main__":
    main()
