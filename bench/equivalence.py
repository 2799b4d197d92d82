"""Same output as an earlier commit: the speed work must not change what comes out.

Separates real music (the MUSDB18-7 valid excerpts, read from the cache that
``bench/quality.py`` fills) and synthetic signals (the speed benchmark's song,
a fade into float32's subnormal range, near-silence) with this checkout and
with the package as it was at ``--baseline`` (imported side by side, see
``benchlib.load_baseline``), offline and streamed in 512-sample blocks, and
prints the largest difference of any stem sample per model and signal.

    python bench/equivalence.py                          # offline, live, hq; all excerpts
    python bench/equivalence.py --model offline --tracks 3 --no-stream
    python bench/equivalence.py --self --model offline --model live   # streamed vs offline

``--self`` compares each model's streamed stems with its own offline ones instead
(no baseline): "streaming equals offline" on real music.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (BASELINE_REV, ROOT, SR, load_baseline, save_json, table,  # noqa: E402
                      test_signal)

CACHE = ROOT / "runs" / "bench_cache" / "musdb18-7_valid"


def synthetic_signals(seconds=8.0):
    """``{name: (2, n) float32}``: the speed benchmark's song, a fade from it to
    about 1e-40 (subnormal samples at the end), and noise at 1e-30."""
    song = test_signal(seconds)
    n = song.shape[1]
    fade = (song * np.logspace(0, -40, n)[None]).astype(np.float32)
    quiet = (1e-30 * np.random.default_rng(0).standard_normal((2, n))).astype(np.float32)
    return {"synthetic song": song, "fade to 1e-40": fade, "noise at 1e-30": quiet}


def valid_excerpts(cache, limit):
    """``{name: mixture}`` from ``bench/quality.py``'s cache (mixture = sum of the stems)."""
    cache = Path(cache)
    index = cache / "index.txt"
    if not index.exists():
        print(f"[bench] no cached excerpts under {cache} (run bench/quality.py once); "
              "real music skipped", file=sys.stderr)
        return {}
    names = index.read_text().splitlines()[:limit]
    return {name: np.load(cache / f"{i:02d}.npy").sum(axis=0) for i, name in enumerate(names)}


def separate(pkg, model, x, stream):
    """All stems of ``x`` as one (stems, channels, n) array, with package ``pkg``."""
    sep = pkg.StemSeparator(model)
    if not stream:
        stems = sep.separate(x, SR)
    else:
        parts = [sep.separate(x[:, i:i + 512], SR, buffer_size=512, reset=False)
                 for i in range(0, x.shape[1], 512)]
        tail = sep.flush_stems()
        stems = {s: np.concatenate([p[s] for p in parts] + [tail[s]], axis=1) for s in tail}
    return np.stack([stems[s] for s in sep.stems])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", help="bundled name (repeatable; default "
                    "offline, live, hq); NAME=OLD compares this checkout's NAME with the "
                    "baseline's OLD (offline-fp32=offline: the fp32 graph under its old name)")
    ap.add_argument("--baseline", default=BASELINE_REV)
    ap.add_argument("--cache", default=str(CACHE), help="bench/quality.py's excerpt cache")
    ap.add_argument("--tracks", type=int, default=None, help="at most this many excerpts")
    ap.add_argument("--seconds", type=float, default=8.0, help="synthetic signals' length")
    ap.add_argument("--no-stream", action="store_true", help="offline only")
    ap.add_argument("--self", action="store_true", help="streamed against this checkout's "
                    "own offline output, no baseline")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    import stemboard

    base = None if args.self else load_baseline(args.baseline)
    signals = {**valid_excerpts(args.cache, args.tracks), **synthetic_signals(args.seconds)}
    res = {"baseline": "self" if args.self else args.baseline, "rows": []}
    for name in args.model or ["offline", "live", "hq"]:
        new_name, _, old_name = name.partition("=")
        new_model = stemboard.load_model(new_name)
        old_model = None if args.self else base.load_model(old_name or new_name)
        modes = (["512-sample blocks"] if args.self else ["offline"] + (
            [] if args.no_stream or new_model.latency_samples > SR else ["512-sample blocks"]))
        for mode in modes:
            worst, where = 0.0, ""
            for sig, x in signals.items():
                a = separate(stemboard, new_model, x, mode != "offline")
                b = (separate(stemboard, new_model, x, False) if args.self
                     else separate(base, old_model, x, mode != "offline"))
                d = float(np.abs(a - b).max())
                if d >= worst:
                    worst, where = d, sig
                res["rows"].append({"model": name, "mode": mode, "signal": sig, "max_abs": d})
            print(f"[bench] {name} {mode}: largest difference {worst:.2e} ({where})",
                  file=sys.stderr, flush=True)
    rows = {}
    for r in res["rows"]:
        rows.setdefault((r["model"], r["mode"]), {})[r["signal"]] = r["max_abs"]
    synth = list(synthetic_signals(0.1))
    out = []
    for (model, mode), per in rows.items():
        real = [v for k, v in per.items() if k not in synth]
        out.append([model, mode, f"{max(real):.1e}" if real else "—", len(real)]
                   + [f"{per[s]:.1e}" for s in synth])
    against = "this checkout's offline output" if args.self else args.baseline
    print(f"\n## Largest stem-sample difference to {against}\n")
    print(table(["model", "mode", "valid excerpts", "excerpts"] + synth, out))
    save_json(args.json, res)
    return res


if __name__ == "__main__":
    main()
