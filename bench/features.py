"""Micro-benchmark: the models' input features, now against an earlier commit's kernel.

The engine turns each block's spectrum into the graph's input, ``(log1p(scale *
|X|) - mean) / std`` per model bin, transposed to (channels, model_bins, frames)
(``stemboard.dsp.features.log_features``).  Until session 35 one Numba kernel did
all of it, a scalar ``log1p`` per value; now the kernel takes the magnitudes and
numpy, whose ``log1p`` is vectorised, normalises them.  Both versions run
round-robin on the same spectra: calls as large as an offline separation's blocks
(``MIN_OFFLINE_BUFFER_SIZE / hop`` frames, the channels in the engine's threads),
and one-frame calls, as a 512-sample streaming block makes.  The features differ
in the last bit where the two ``log1p`` round differently; the largest difference
and the share of values that differ are printed.

    python bench/features.py                        # offline model's normalisation
    python bench/features.py --model live --repeats 30
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import BASELINE_REV, load_baseline, median, save_json, table  # noqa: E402


def spectra(n_frames, n_bins, seed=0):
    """(2, n_frames, n_bins) complex64 with music-like magnitudes (many decades)."""
    rng = np.random.default_rng(seed)
    mag = np.exp(rng.uniform(-12, 3, (2, n_frames, n_bins)))
    phase = rng.uniform(0, 2 * np.pi, mag.shape)
    return (mag * np.exp(1j * phase)).astype(np.complex64)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="offline", help="bundled name or .onnx path whose "
                    "normalisation is used (default offline)")
    ap.add_argument("--repeats", type=int, default=15,
                    help="timed runs of each version (block-sized calls)")
    ap.add_argument("--steps", type=int, default=2000, help="timed one-frame calls of each")
    ap.add_argument("--baseline", default=BASELINE_REV,
                    help=f"git revision whose kernel runs beside (default {BASELINE_REV})")
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args(argv)

    from stemboard.dsp.features import log_features
    from stemboard.dsp.threads import per_channel
    from stemboard.models import load_model
    from stemboard.plugin.base import MIN_OFFLINE_BUFFER_SIZE

    m = load_model(args.model).manifest
    params = (m.model_bins, *m.feature_params())
    if not params[1]:
        raise SystemExit(f"{args.model}: its input normalisation is not log1p")
    old = load_baseline(args.baseline).dsp.kernels.log_features
    versions = {"now": log_features, f"at {args.baseline}": old}
    block = spectra(MIN_OFFLINE_BUFFER_SIZE // m.hop, m.n_fft // 2 + 1)
    step = np.ascontiguousarray(block[:, :1])
    res = {"model": args.model, "frames_per_block": block.shape[1],
           "loadavg_at_start": os.getloadavg(), "block_ms": {}, "step_us": {}}

    outs = {name: f(block, *params) for name, f in versions.items()}   # compile, warm up
    a, b = outs.values()
    res["max_abs_diff"] = float(np.abs(a - b).max())
    res["fraction_differing"] = float(np.mean(a != b))
    for name in versions:
        res["block_ms"][name], res["step_us"][name] = [], []
    for _ in range(args.repeats):
        for name, f in versions.items():
            t0 = time.perf_counter()
            per_channel(f, block.shape[1], (block,), params)
            res["block_ms"][name].append(1e3 * (time.perf_counter() - t0))
    for name, f in versions.items():
        ts = res["step_us"][name]
        for _ in range(args.steps):
            t0 = time.perf_counter()
            f(step, *params)
            ts.append(1e6 * (time.perf_counter() - t0))
    res["loadavg_at_end"] = os.getloadavg()

    now, base = (median(res["block_ms"][n]) for n in versions)
    snow, sbase = (median(res["step_us"][n]) for n in versions)
    print(f"\n## Input features ({args.model}'s normalisation, {m.model_bins} bins, 2 channels; "
          f"medians; load average {res['loadavg_at_start'][0]:.2f} -> "
          f"{res['loadavg_at_end'][0]:.2f})\n")
    print(table(["call", "now", f"at {args.baseline}", "speed-up"],
                [[f"one offline block, {block.shape[1]} frames (ms)", now, base, base / now],
                 ["one frame, a streaming block (us)", snow, sbase, sbase / snow]]))
    print(f"\nlargest difference {res['max_abs_diff']:.2e}; "
          f"{100 * res['fraction_differing']:.1f} % of the values differ (last-bit rounding)")
    save_json(args.json, res)
    return res


if __name__ == "__main__":
    main()
