"""Post-processing tried on the shipped masks, scored on the MUSDB18-7 ``valid`` excerpts.

Each method starts from the same model masks (``MaskModel.masks``, soft,
normalised, ``hold_top_bin`` above the model's bins) and changes only what is
done with them:

* ``masks`` -- applied to each channel's STFT, mixture phase (what ships);
* ``wiener-em-1`` -- one multichannel Wiener EM iteration (``norbert``, as
  Open-Unmix runs by default): the masked channels give each stem's power
  spectrogram and a per-bin 2x2 spatial covariance, then every stem is the
  Wiener estimate from both channels;
* ``mid-tta`` -- test-time averaging: each channel's masks averaged with the
  masks the model predicts from the mid signal (L+R)/2 (1.5x the model cost).

Scored like ``bench/quality.py`` (museval v4 SDR, 1 s windows, median over
windows, then over tracks).  These are experiments, not features: none of them
beat plain masks here, so none is in the package.

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
from quality import CACHE, DEFAULT_DATA, load_tracks, sdr_per_stem  # noqa: E402

# The training package's evaluation helpers need only numpy and stemboard.dsp (no torch):
# the same mask extraction (hold_top_bin above the model's bins) and masking the
# pipeline scores with.
from stemboard.models.train.evaluate import apply_masks as apply  # noqa: E402
from stemboard.models.train.evaluate import model_masks  # noqa: E402


def wiener_em(spec, masks, n, grid, iterations=1):
    import norbert
    from stemboard.dsp import istft

    x = spec.transpose(1, 2, 0).astype(np.complex128)             # frames, bins, ch
    y = masks.transpose(3, 2, 0, 1) * x[..., None]                 # frames, bins, ch, S
    y = norbert.expectation_maximization(y, x, iterations=iterations)[0]
    return np.stack([istft(np.ascontiguousarray(y[..., s].transpose(2, 0, 1)).astype(np.complex64),
                           n, grid) for s in range(y.shape[-1])])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="MUSDB18-7 root")
    ap.add_argument("--cache", default=str(CACHE), help="decoded-audio cache folder")
    ap.add_argument("--model", default="offline", help="offline, live, fixture or an .onnx path")
    ap.add_argument("--tracks", type=int, help="only the first N valid tracks (smoke tests)")
    ap.add_argument("--seconds", type=float, help="only the first S seconds of each track")
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
    per_track = {m: [] for m in ("masks", "wiener-em-1", "mid-tta") if has_norbert or m[0] != "w"}
    t0 = time.time()
    for ti, (name, stems) in enumerate(tracks):
        mix = stems.sum(axis=0)
        n = mix.shape[1]
        X = stft(mix, grid)
        masks = model_masks(model, X)
        mid = model_masks(model, stft(mix.mean(axis=0, keepdims=True), grid))
        ests = {"masks": lambda: apply(X, masks, n, grid),
                "wiener-em-1": lambda: wiener_em(X, masks, n, grid),
                "mid-tta": lambda: apply(X, 0.5 * (masks + mid), n, grid)}
        for m in per_track:
            per_track[m].append(sdr_per_stem(stems, ests[m]()).tolist())
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
