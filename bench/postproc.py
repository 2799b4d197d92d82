"""Post-processing tried on the shipped masks, scored on the MUSDB18-7 ``valid`` excerpts.

Each method starts from the same model masks (``MaskModel.masks``, soft,
normalised, ``hold_top_bin`` above the model's bins) and changes only what is
done with them:

* ``masks`` -- applied to each channel's STFT, mixture phase (left/right);
* ``mid-side`` -- the mid and side signals separated instead of left and right,
  stems mapped back (what the shipped manifests' ``stereo_mode`` asks for);
* ``wiener-em-1`` -- one multichannel Wiener EM iteration (``norbert``, as
  Open-Unmix runs by default): the masked channels give each stem's power
  spectrogram and a per-bin 2x2 spatial covariance, then every stem is the
  Wiener estimate from both channels;
* ``mid-tta`` -- test-time averaging: each channel's masks averaged with the
  masks the model predicts from the mid signal (L+R)/2 (1.5x the model cost);
* ``power-P`` -- sharper (P > 1) or softer (P < 1) masks, ``m**P`` renormalised
  across stems (free at run time: it is a softmax temperature).  The oracle
  binary mask beats the ratio mask here, so sharpening was worth a try;
* ``ensemble-N`` (with ``--ensemble``) -- the masks averaged with those of
  N - 1 other models (N times the model cost): how much run-to-run variance
  costs.

Scored like ``bench/quality.py`` (museval v4 SDR, 1 s windows, median over
windows, then over tracks).  These are experiments, not features: none of them
beat plain masks here, so none is in the package, except mid/side coding, which
does and is.

    python bench/postproc.py --json runs/bench/postproc.json
    python bench/postproc.py --model fixture --tracks 1 --seconds 2    # smoke run
"""
import argparse
import importlib.util
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import STEMS, git_rev, machine_info, resolve_models, save_json, table  # noqa: E402
from quality import CACHE, DEFAULT_DATA, load_tracks  # noqa: E402

# The training package's evaluation helpers need only numpy and stemboard.dsp (no torch):
# the same mask extraction (hold_top_bin above the model's bins) and masking the
# pipeline scores with.
from stemboard.train.evaluate import apply_masks as apply  # noqa: E402
from stemboard.train.evaluate import (bss_sdr, mask_system, model_masks,  # noqa: E402
                                     system_estimates)


def wiener_em(spec, masks, n, grid, iterations=1):
    import norbert
    from stemboard.dsp import istft

    x = spec.transpose(1, 2, 0).astype(np.complex128)             # frames, bins, ch
    y = masks.transpose(3, 2, 0, 1) * x[..., None]                 # frames, bins, ch, S
    y = norbert.expectation_maximization(y, x, iterations=iterations)[0]
    return np.stack([istft(np.ascontiguousarray(y[..., s].transpose(2, 0, 1)).astype(np.complex64),
                           n, grid) for s in range(y.shape[-1])])


POWERS = (0.8, 1.25, 1.5, 2.0)


def sharpen(masks, power):
    """masks (ch, S, bins, frames) -> ``masks**power`` renormalised across stems."""
    p = masks.astype(np.float64) ** power
    return (p / np.maximum(p.sum(axis=1, keepdims=True), 1e-30)).astype(np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="MUSDB18-7 root")
    ap.add_argument("--cache", default=str(CACHE), help="decoded-audio cache folder")
    ap.add_argument("--model", default="offline", help="offline, live, fixture or an .onnx path")
    ap.add_argument("--tracks", type=int, help="only the first N valid tracks (smoke tests)")
    ap.add_argument("--seconds", type=float, help="only the first S seconds of each track")
    ap.add_argument("--ensemble", nargs="+", default=[], metavar="MODEL",
                    help="also score the masks averaged with these models' (.json manifests)")
    ap.add_argument("--json", help="write results to this JSON file")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")

    from stemboard.dsp import StftGrid, stft
    from stemboard.models import MaskModel

    label, spec_arg = next(iter(resolve_models([args.model]).items()))
    model = MaskModel(spec_arg)
    grid = StftGrid(model.manifest.n_fft, model.manifest.hop)
    has_norbert = importlib.util.find_spec("norbert") is not None
    if not has_norbert:
        print("[bench] norbert not installed; wiener-em-1 skipped", file=sys.stderr)

    tracks = load_tracks(args.data, limit=args.tracks, seconds=args.seconds, cache=args.cache)
    methods = ("masks", "mid-side", "wiener-em-1", "mid-tta", *(f"power-{p:g}" for p in POWERS))
    others = [MaskModel(p) for p in args.ensemble]
    if others:
        methods += (f"ensemble-{len(others) + 1}",)
    per_track = {m: [] for m in methods if has_norbert or m != "wiener-em-1"}
    t0 = time.time()
    for ti, (name, stems) in enumerate(tracks):
        mix = stems.sum(axis=0)
        n = mix.shape[1]
        X = stft(mix, grid)
        masks = model_masks(model, X)
        mid = model_masks(model, stft(mix.mean(axis=0, keepdims=True), grid))
        ests = {"masks": lambda: apply(X, masks, n, grid),
                "mid-side": lambda: system_estimates(
                    mask_system(model, stereo_mode="mid_side"), X, None, n, grid),
                "wiener-em-1": lambda: wiener_em(X, masks, n, grid),
                "mid-tta": lambda: apply(X, 0.5 * (masks + mid), n, grid),
                **{f"power-{p:g}": (lambda p=p: apply(X, sharpen(masks, p), n, grid))
                   for p in POWERS},
                f"ensemble-{len(others) + 1}": lambda: apply(
                    X, np.mean([masks] + [model_masks(o, X) for o in others], axis=0), n, grid)}
        for m in per_track:
            per_track[m].append(bss_sdr(stems, ests[m]()).tolist())
        print(f"[bench] {ti + 1}/{len(tracks)} {name} ({time.time() - t0:.0f} s)",
              file=sys.stderr, flush=True)

    summary = {}
    for m, rows in per_track.items():
        med = np.nanmedian(np.asarray(rows), axis=0)
        summary[m] = {s: float(v) for s, v in zip(STEMS, med)}
        summary[m]["avg"] = float(np.mean(med))
    print(f"\n## Post-processing of the {label} masks, MUSDB18-7 valid ({len(tracks)} "
          "excerpts): SDR (dB)\n")
    print(table(["method"] + STEMS + ["avg"],
                [[m] + [s[k] for k in STEMS] + [s["avg"]] for m, s in summary.items()],
                floatfmt=".2f"))
    res = {"model": label, "tracks": [t for t, _ in tracks], "stems": STEMS,
           "summary": summary, "per_track": per_track, "seconds": args.seconds,
           "machine": machine_info(), "git": git_rev()}
    if args.json:
        save_json(args.json, res)
    return res


if __name__ == "__main__":
    main()
