"""STFT + ISTFT round-trip speed: stemboard offline and streaming vs librosa and torch.

Usage: python bench/stft.py [--seconds 60] [--repeats 5] [--block 512]

All methods run side by side in one process on the same 60 s stereo signal at
44.1 kHz (n_fft 2048, hop 512); the table gives the median of the repeats and
each method's time relative to stemboard offline. Ratios, not absolute times,
are what to compare on a shared machine.
"""
import argparse
import statistics
import time

import sys
from pathlib import Path

import numpy as np

from stemboard.dsp import StftGrid, StreamingAnalyzer, istft, stft

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import StreamingSynthesizer  # noqa: E402

SR = 44100


def ours_offline(x, grid):
    return istft(stft(x, grid), x.shape[1], grid)


def ours_streaming(x, grid, block):
    ana = StreamingAnalyzer(grid, x.shape[0])
    syn = StreamingSynthesizer(grid, x.shape[0])
    return [syn.push(ana.push(x[:, i:i + block])) for i in range(0, x.shape[1], block)]


def librosa_roundtrip(x, grid):
    import librosa

    spec = librosa.stft(x, n_fft=grid.n_fft, hop_length=grid.hop, window="hann")
    return librosa.istft(spec, hop_length=grid.hop, window="hann", length=x.shape[1])


def torch_roundtrip(x, grid):
    import torch

    t = torch.from_numpy(x)
    w = torch.hann_window(grid.n_fft)
    spec = torch.stft(t, grid.n_fft, grid.hop, window=w, return_complex=True)
    return torch.istft(spec, grid.n_fft, grid.hop, window=w, length=x.shape[1]).numpy()


def timed(fn, repeats):
    fn()  # warm-up (JIT compilation, FFT plans, thread pools)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--block", type=int, default=512)
    args = ap.parse_args(argv)

    grid = StftGrid(2048, 512)
    x = (0.1 * np.random.default_rng(0).standard_normal((2, int(args.seconds * SR))))
    x = x.astype(np.float32)
    err = float(np.max(np.abs(ours_offline(x, grid) - x)))

    methods = {
        "stemboard offline": lambda: ours_offline(x, grid),
        f"stemboard streaming ({args.block}-sample blocks)":
            lambda: ours_streaming(x, grid, args.block),
    }
    try:
        import librosa  # noqa: F401
        methods["librosa"] = lambda: librosa_roundtrip(x, grid)
    except ImportError:
        print("librosa not installed: skipped")
    try:
        import torch
        torch.set_num_threads(max(1, torch.get_num_threads()))
        methods["torch"] = lambda: torch_roundtrip(x, grid)
    except ImportError:
        print("torch not installed: skipped")

    results = {name: timed(fn, args.repeats) for name, fn in methods.items()}
    base = results["stemboard offline"]
    print(f"\nSTFT+ISTFT round trip, {args.seconds:g} s stereo @ {SR} Hz, n_fft 2048, hop 512, "
          f"median of {args.repeats}")
    print(f"stemboard offline reconstruction error: {err:.2e} of full scale\n")
    print(f"{'method':45s} {'time (ms)':>10s} {'x real time':>12s} {'vs offline':>11s}")
    for name, t in results.items():
        print(f"{name:45s} {t * 1000:10.1f} {args.seconds / t:12.0f} {t / base:10.2f}x")
    if "librosa" in results:
        ratio = results["librosa"] / base
        verdict = "meets" if ratio >= 1.0 else "misses"
        print(f"\nlibrosa / stemboard offline = {ratio:.2f} ({verdict} the target: "
              f"offline at least as fast as librosa)")
    return results


if __name__ == "__main__":
    main()
