"""Micro-benchmark: the masked overlap-add kernel against its inverse-FFT floor.

The engine's synthesis (``stemboard.dsp.kernels.masked_overlap_add``) masks,
inverse-FFTs and overlap-adds every output.  Its floor is the inverse FFTs
alone: the same number of ``n_fft``-point complex-to-real transforms, batched
as the kernel batches them, on the unmasked spectrum.  Everything runs on one
thread (the engine gives each channel its own), round-robin, and the medians
are reported as ratios to that floor, beside the kernel of an earlier commit
(``--baseline``, default the commit issue 28 started from) on the same input.
The kernel runs on the same masks in both layouts: frame-major, (channels,
frames, stems, bins), as the shipped graphs emit them (manifest
``mask_layout: "frames"``), and bin-major, as older graphs do (and the
baseline's kernel reads); both give the same bits.

The input is what the engine feeds the kernel when it renders every stem of
the speed benchmark's synthetic signal: the mid/side spectra and the model's
raw masks, one-hot gains with the last stem left to the residual output, in calls
of as many frames as an offline separation's blocks complete
(``MIN_OFFLINE_BUFFER_SIZE / hop``; ``--frames-per-call``), the overlap-add state
carried from call to call.

    python bench/overlap_add.py                     # offline model, 30 s
    python bench/overlap_add.py --model live --seconds 10 --repeats 9
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numba
import numpy as np
from rocket_fft.lowlevel import c2r

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (BASELINE_REV, SR, load_baseline, median, save_json,  # noqa: E402
                      table, test_signal)


KERNEL = "masked_overlap_add, frame-major masks"
KERNEL_BINS = "masked_overlap_add, bin-major masks"


def engine_inputs(model, x):
    """``(spec, raw masks)`` as the engine hands them to the kernel for ``x`` (channels, n)."""
    from stemboard.dsp.midside import to_mid_side
    from stemboard.plugin.engine import MaskStream

    stream = MaskStream(model, x.shape[0])
    if x.shape[0] == 2 and model.manifest.stereo_mode == "mid_side":
        x = to_mid_side(x)
    a, b = stream.push(x), stream.finish()
    spec = np.ascontiguousarray(np.concatenate([a[0], b[0]], axis=1))
    masks = np.ascontiguousarray(np.concatenate([a[1], b[1]], axis=3))   # bin-major
    return spec, masks


@numba.njit(nogil=True)
def ifft_floor(spec, n_out, n_fft, tile):
    """The kernel's inverse FFTs alone: ``n_out`` batched transforms of every
    ``tile`` frames of each channel, into a reused buffer."""
    n_ch, n_frames, n_bins = spec.shape
    src = np.empty((n_out, tile, n_bins), np.complex64)
    frames = np.empty((n_out, tile, n_fft), np.float32)
    axes = np.array([2])
    check = 0.0
    for c in range(n_ch):
        for t0 in range(0, n_frames, tile):
            n_t = min(tile, n_frames - t0)
            for o in range(n_out):
                src[o, :n_t] = spec[c, t0:t0 + n_t]
            c2r(src[:, :n_t], frames[:, :n_t], axes, False, 1.0 / n_fft, 1)
            check += frames[0, 0, 0]
    return check


def calls(spec, masks, per_call):
    """The input cut into the engine's calls: [(spec, masks)], each contiguous."""
    return [(np.ascontiguousarray(spec[:, i:i + per_call]),
             np.ascontiguousarray(masks[..., i:i + per_call]))
            for i in range(0, spec.shape[1], per_call)]


def kernel_call(kernels, parts, gains, manifest, *, frame_major=False):
    """A closure running ``kernels.masked_overlap_add`` over ``parts`` from zero state,
    as the engine does (state carried); returns the calls' outputs.  ``frame_major``:
    the masks are given frame-major, (channels, frames, stems, bins), as a graph whose
    manifest says ``"mask_layout": "frames"`` emits them (transposed here, untimed)."""
    n_fft, hop = manifest.n_fft, manifest.hop
    from stemboard.dsp import StftGrid
    window = StftGrid(n_fft, hop).synthesis_window
    extra = (True,) if frame_major else ()
    if frame_major:
        parts = [(spec, np.ascontiguousarray(masks.transpose(0, 3, 1, 2)))
                 for spec, masks in parts]

    def run():
        # The calls' outputs are joined outside the timing (:func:`joined`): the engine
        # never joins them this way, and joining 30 s of three outputs took 5-10 ms.
        ola = np.zeros((gains.shape[0], parts[0][0].shape[0], n_fft), np.float32)
        return [kernels.masked_overlap_add(
            spec, masks, gains, manifest.model_bins, manifest.high_stem_index, False, ola,
            n_fft, hop, window, *extra) for spec, masks in parts]
    return run


def joined(out):
    """A kernel run's per-call outputs as one array (outputs, channels, samples)."""
    return np.concatenate(out, axis=2)


def floor_call(parts, n_out, n_fft, tile):
    """A closure running :func:`ifft_floor` over ``parts``."""
    def run():
        return sum(ifft_floor(spec, n_out, n_fft, tile) for spec, _ in parts)
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="offline", help="bundled name or .onnx path (default "
                    "offline)")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--frames-per-call", type=int, default=None,
                    help="frames per kernel call (default: an offline block's, "
                         "MIN_OFFLINE_BUFFER_SIZE / hop)")
    ap.add_argument("--baseline", default=BASELINE_REV,
                    help=f"git revision whose kernel runs beside (default {BASELINE_REV})")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args(argv)

    from stemboard.dsp import kernels
    from stemboard.models import load_model
    from stemboard.plugin.base import MIN_OFFLINE_BUFFER_SIZE

    model = load_model(args.model, num_threads=1)
    if hasattr(model, "first"):
        raise SystemExit("pass a mask model, not a cascade (its parts are mask models)")
    m = model.manifest
    spec, masks = engine_inputs(model, test_signal(args.seconds))
    per_call = args.frames_per_call or MIN_OFFLINE_BUFFER_SIZE // m.hop
    parts = calls(spec, masks, per_call)
    n_stems = masks.shape[1]
    gains = np.eye(n_stems, dtype=np.float32)[:n_stems - 1].copy()   # residual output: one fewer
    tiny = np.finfo(np.float32).tiny
    res = {"model": str(model.path), "seconds": args.seconds, "frames": spec.shape[1],
           "channels": spec.shape[0], "outputs": gains.shape[0], "n_fft": m.n_fft,
           "tile": kernels.TILE, "frames_per_call": per_call, "repeats": args.repeats,
           "subnormal_mask_fraction": float(((masks != 0) & (np.abs(masks) < tiny)).mean()),
           "loadavg_at_start": os.getloadavg(), "times_ms": {}}

    # The same masks in both layouts: frame-major as the shipped graphs emit them
    # (manifest mask_layout "frames"), bin-major as older graphs do.
    tasks = {"inverse FFTs alone (floor)": floor_call(parts, gains.shape[0], m.n_fft,
                                                      kernels.TILE),
             KERNEL: kernel_call(kernels, parts, gains, m, frame_major=True),
             KERNEL_BINS: kernel_call(kernels, parts, gains, m)}
    if not args.no_baseline:
        base = load_baseline(args.baseline)
        tasks[f"masked_overlap_add at {args.baseline}"] = kernel_call(
            base.dsp.kernels, parts, gains, m)
    outs = {name: fn() for name, fn in tasks.items()}            # compile, warm up
    outs = {name: joined(o) for name, o in outs.items() if isinstance(o, list)}
    for name in tasks:
        res["times_ms"][name] = []
    for _ in range(args.repeats):
        for name, fn in tasks.items():
            t0 = time.perf_counter()
            fn()
            res["times_ms"][name].append(1000 * (time.perf_counter() - t0))
    res["loadavg_at_end"] = os.getloadavg()
    floor_ts = res["times_ms"]["inverse FFTs alone (floor)"]
    floor, fastest = median(floor_ts), min(floor_ts)
    # The fastest run of each is the one least disturbed by the machine's other users;
    # both ratios are printed, the median's is the one to quote.
    rows = [[name, median(ts), median(ts) / floor, min(ts), min(ts) / fastest]
            for name, ts in res["times_ms"].items()]
    res["max_abs_diff_between_layouts"] = float(np.abs(outs[KERNEL] - outs[KERNEL_BINS]).max())
    if not args.no_baseline:
        ref = outs[f"masked_overlap_add at {args.baseline}"]
        res["max_abs_diff_to_baseline"] = float(np.abs(outs[KERNEL] - ref).max())
    print(f"\n## Masked overlap-add against its inverse-FFT floor ({args.seconds:g} s, "
          f"{spec.shape[0]} channels, {gains.shape[0]} outputs, {spec.shape[1]} frames in calls "
          f"of {per_call}, n_fft {m.n_fft}, one thread, median of {args.repeats}; load average "
          f"{res['loadavg_at_start'][0]:.2f} -> {res['loadavg_at_end'][0]:.2f})\n")
    print(table(["what", "median (ms)", "/ floor", "fastest (ms)", "/ floor's fastest"],
                rows))
    print(f"\nsubnormal mask values: {100 * res['subnormal_mask_fraction']:.2f} %")
    if "max_abs_diff_to_baseline" in res:
        print(f"largest output difference to {args.baseline}: "
              f"{res['max_abs_diff_to_baseline']:.2e}")
    print(f"largest output difference between the mask layouts: "
          f"{res['max_abs_diff_between_layouts']:.2e}")
    save_json(args.json, res)
    return res


if __name__ == "__main__":
    main()
