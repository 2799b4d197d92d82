"""What else the 4-stem ``hq`` cascade could do with its outputs, scored on ``valid``.

The candidates for closing the gap between ``hq`` (average 4.93 dB) and the
issue's 5.0 dB target that need no training, each a well-motivated change
with one setting (no sweeps), scored like ``bench/quality.py`` (museval v4
SDR, 1 s windows, median over windows, then over tracks):

* ``hq`` -- the shipped cascade (``StemSeparator("hq").separate``);
* ``round trip`` -- the control for every row below: the cascade's stems taken
  through a 2048/512 STFT and back, each stem's magnitude re-used as a mask of
  the hq accompaniment (what every "shares" row does, with the shipped shares);
* ``wiener-em-N`` -- N multichannel Wiener EM iterations (``norbert``, as
  Open-Unmix runs by default) over the four stems (4096/1024): per-bin 2x2
  spatial covariances from the whole excerpt (one ``hq`` segment is 11.9 s, so
  on 7 s excerpts this is what a per-segment version would do);
* ``power-2`` -- power-ratio masks ``|S|^2 / sum |S|^2`` from the four stems
  (the single-channel Wiener gain);
* ``shares from the mix`` -- the drums/bass/other split of the hq accompaniment
  taken from ``offline`` run on the mixture instead of on the accompaniment
  (the issue's "floor" construction); ``shares averaged`` -- the mean of both;
* ``+ live ensemble`` -- the second stage's shares averaged with ``live``'s on
  the same accompaniment (two models' variance averaged out).

Vocals are the cascade's own in every "shares" row; only drums, bass and other
change.  None of these beat the shipped cascade by a clear margin on ``valid``
(see ``models/weights/hq_candidates.json`` and the model card), so none is in
the package.

    python bench/hq_postproc.py --json runs/bench/hq_postproc.json
    python bench/hq_postproc.py --tracks 1 --seconds 3          # smoke run
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import STEMS, git_rev, machine_info, save_json, table  # noqa: E402
from quality import CACHE, COLUMNS, DEFAULT_DATA, SR, load_tracks, score  # noqa: E402

from stemboard.dsp import StftGrid, istft, stft  # noqa: E402
from stemboard.plugin.separator import StemSeparator  # noqa: E402

SPLIT = ["drums", "bass", "other"]
WIDE = StftGrid(4096, 1024)
NARROW = StftGrid(2048, 512)


def shares(est, grid):
    """(3, ch, frames, bins) drums/bass/other magnitude shares of ``est`` (dict of stems)."""
    mags = np.stack([np.abs(stft(est[s], grid)) for s in SPLIT])
    return mags / np.maximum(mags.sum(axis=0, keepdims=True), 1e-9)


def split_accompaniment(vocals, acc, share, grid):
    """(4, ch, n) stems: the cascade's vocals and ``acc`` masked by ``share`` (3, ...)."""
    spec = stft(acc, grid)
    n = acc.shape[1]
    return np.stack([vocals] + [istft(spec * m, n, grid) for m in share])


def wiener(mix, stems, iterations):
    """(4, ch, n): ``iterations`` multichannel Wiener EM steps over the four stems."""
    import norbert

    x = stft(mix, WIDE).transpose(1, 2, 0).astype(np.complex128)          # frames, bins, ch
    v = np.stack([np.abs(stft(s, WIDE)) for s in stems]).transpose(2, 3, 1, 0)
    y = norbert.wiener(v.astype(np.float64), x, iterations=iterations)    # frames, bins, ch, S
    return np.stack([istft(np.ascontiguousarray(y[..., j].transpose(2, 0, 1)).astype(np.complex64),
                           mix.shape[1], WIDE) for j in range(y.shape[-1])])


def power_masks(mix, stems, power=2.0):
    """(4, ch, n): ``|S_j|^power`` renormalised across the four stems, applied to the mix."""
    spec = stft(mix, WIDE)
    p = np.stack([np.abs(stft(s, WIDE)) ** power for s in stems])
    p /= np.maximum(p.sum(axis=0, keepdims=True), 1e-18)
    return np.stack([istft(spec * m, mix.shape[1], WIDE) for m in p])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="MUSDB18-7 root")
    ap.add_argument("--cache", default=str(CACHE), help="decoded-audio cache folder")
    ap.add_argument("--tracks", type=int, help="only the first N valid tracks (smoke runs)")
    ap.add_argument("--seconds", type=float, help="only the first S seconds of each track")
    ap.add_argument("--json", help="write results to this JSON file")
    args = ap.parse_args(argv)

    tracks = load_tracks(args.data, "valid", args.tracks, args.seconds, cache=args.cache)
    hq, first, offline, live = (StemSeparator(m) for m in
                                ("hq", "hq-vocals-ft", "offline", "live"))
    rows = ["hq", "round trip", "wiener-em-1", "wiener-em-2", "power-2",
            "shares from the mix", "shares averaged", "+ live ensemble"]
    per_track = {r: {c: [] for c in COLUMNS} for r in rows}
    t0 = time.time()
    for name, stems in tracks:
        mix = stems.sum(axis=0)
        base = hq.separate(mix, SR)
        four = np.stack([base[s] for s in STEMS])
        vocals = first.separate(mix, SR)["vocals"]
        acc = mix - vocals
        on_acc = shares(base, NARROW)
        from_mix = shares(offline.separate(mix, SR), NARROW)
        from_live = shares(live.separate(acc, SR), NARROW)
        est = {
            "hq": four,
            "round trip": split_accompaniment(vocals, acc, on_acc, NARROW),
            "wiener-em-1": wiener(mix, four, 1),
            "wiener-em-2": wiener(mix, four, 2),
            "power-2": power_masks(mix, four),
            "shares from the mix": split_accompaniment(vocals, acc, from_mix, NARROW),
            "shares averaged": split_accompaniment(vocals, acc, 0.5 * (on_acc + from_mix), NARROW),
            "+ live ensemble": split_accompaniment(vocals, acc, 0.5 * (on_acc + from_live),
                                                   NARROW),
        }
        for r in rows:
            for col, w in score(stems, est[r]).items():
                per_track[r][col].append(float(np.nanmedian(w)))
        print(f"[bench] {name}: " + ", ".join(
            f"{r} {np.mean([per_track[r][s][-1] for s in STEMS]):.2f}" for r in rows),
            file=sys.stderr, flush=True)

    summary = {}
    for r in rows:
        med = {c: float(np.median(per_track[r][c])) for c in COLUMNS}
        med["avg"] = float(np.mean([med[s] for s in STEMS]))
        summary[r] = med
    base = summary["hq"]["avg"]
    print(table(["method"] + STEMS + ["avg", "accompaniment", "vs hq"],
                [[r] + [f"{summary[r][c]:.3f}" for c in STEMS + ["avg", "accompaniment"]]
                 + [f"{summary[r]['avg'] - base:+.3f}"] for r in rows]))
    print(f"{len(tracks)} tracks, {time.time() - t0:.0f} s")
    if args.json:
        save_json(args.json, {"summary": summary, "per_track": per_track,
                              "tracks": [n for n, _ in tracks], "commit": git_rev(),
                              "machine": machine_info()})


if __name__ == "__main__":
    main()
