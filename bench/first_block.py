"""The first streaming blocks of a fresh process, with and without ``prepare()``.

A host's first ``process(..., reset=False)`` call builds the separator's
renderer (a stateful model runs its receptive field of silence) and is the
first run of each ONNX Runtime session and Numba kernel.  ``prepare(sample_rate,
num_channels, buffer_size=...)`` does that set-up before the audio starts.  Each
case runs in a fresh ``python`` subprocess (shared, warm Numba cache), cases
alternate, and the first ``--blocks`` block times are printed as fractions of
the block's duration (the real-time budget), beside the time ``prepare`` took.

    python bench/first_block.py                      # live and offline, 3 repeats
    python bench/first_block.py --model fixture --repeats 1 --json runs/bench/first.json
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import SR, median, resolve_models, save_json, table  # noqa: E402

CASE = """
import json, sys, time
sys.path.insert(0, {bench!r})
from benchlib import SR, test_signal
from stemboard.plugin import StemSeparator
spec, prepare, block, n = {spec!r}, {prepare!r}, {block!r}, {n!r}
sep = StemSeparator(spec)
x = test_signal((n + 1) * block / SR + 0.1)
t_prepare = None
if prepare:
    t = time.perf_counter()
    sep.prepare(SR, 2, buffer_size=block)
    t_prepare = time.perf_counter() - t
times = []
for i in range(0, n * block, block):
    t = time.perf_counter()
    sep.process(x[:, i:i + block], SR, buffer_size=block, reset=False)
    times.append(time.perf_counter() - t)
print(json.dumps({{"prepare_s": t_prepare, "block_s": times}}))
"""


def run_case(spec, prepare, block, n):
    code = CASE.format(bench=str(Path(__file__).resolve().parent), spec=str(spec),
                       prepare=prepare, block=block, n=n)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", help="bundled name, fixture or .onnx path "
                    "(repeatable; default live and offline)")
    ap.add_argument("--block", type=int, default=512)
    ap.add_argument("--blocks", type=int, default=4, help="first blocks timed (default 4)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    budget = args.block / SR
    res = {"block": args.block, "loadavg_at_start": os.getloadavg(), "runs": {}}
    models = resolve_models(args.model or ["live", "offline"])
    for r in range(args.repeats):
        for label, spec in models.items():
            for prepare in ((False, True) if r % 2 == 0 else (True, False)):
                key = f"{label}, {'prepare()' if prepare else 'no prepare()'}"
                res["runs"].setdefault(key, []).append(run_case(spec, prepare, args.block,
                                                                args.blocks))
    res["loadavg_at_end"] = os.getloadavg()
    rows = []
    for key, runs in res["runs"].items():
        firsts = [run["block_s"][0] / budget for run in runs]
        later = [max(run["block_s"][1:]) / budget for run in runs]
        prepared = [run["prepare_s"] for run in runs if run["prepare_s"] is not None]
        rows.append([key, median(prepared) if prepared else "–", median(firsts),
                     max(firsts), median(later)])
    print(f"\n## First {args.blocks} blocks of {args.block} samples in a fresh process "
          f"({args.repeats} processes per row; load average "
          f"{res['loadavg_at_start'][0]:.2f} -> {res['loadavg_at_end'][0]:.2f})\n")
    print(table(["case", "prepare (s)", "block 1 / budget, median", "block 1 / budget, max",
                 f"blocks 2-{args.blocks}, largest / budget, median"], rows))
    save_json(args.json, res)
    return res


if __name__ == "__main__":
    main()
