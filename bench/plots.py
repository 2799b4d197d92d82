"""Figures for docs/benchmarks.md, from the JSON files of the other bench scripts.

    python bench/speed.py --json runs/bench/speed.json
    python bench/quality.py --json runs/bench/quality.json
    python bench/plots.py          # -> docs/img/{masks,sdr,speed,latency_sdr}.png

The mask figure runs the offline model on one MUSDB18-7 valid excerpt (the
decoded cache of bench/quality.py) and shows the ideal ratio masks beside it.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ROOT, SR, STEMS, resolve_models  # noqa: E402

OUT = ROOT / "docs" / "img"
RUNS = ROOT / "runs" / "bench"
# Published, not measured here (../shared/docs/research.md, section 4).
PUBLISHED = {
    "HS-TasNet (published)": {"latency_ms": 23.0, "avg": 4.65},
}
COLORS = {"stemboard": "#1f77b4", "oracle": "#7f7f7f", "classical": "#ff7f0e",
          "mixture": "#d62728", "peer": "#2ca02c"}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _plain():
    from matplotlib.ticker import FuncFormatter
    return FuncFormatter(lambda v, _: f"{v:g}")


def _color(name):
    for k, c in COLORS.items():
        if name.lower().startswith(k):
            return c
    return "#9467bd"


def _save(fig, path, dpi=110):
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    try:  # a 256-colour palette keeps the PNGs small for the repository
        from PIL import Image
        image = Image.open(path).convert("RGB").quantize(
            colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        image.save(path, optimize=True)
    except ImportError:
        pass
    print(f"[bench] wrote {path} ({path.stat().st_size // 1024} KiB)", file=sys.stderr)


# -- masks -------------------------------------------------------------------------
def plot_masks(model_spec, data, track, out, seconds=6.0, fmax=8000.0, cache=None):
    from quality import CACHE, load_tracks
    from stemboard.dsp import StftGrid, stft
    from stemboard.models import MaskModel

    plt = _plt()
    name, stems = load_tracks(data, limit=track + 1, cache=cache or CACHE)[track]
    stems = stems[:, :, : int(seconds * SR)]
    mix = stems.sum(axis=0)
    model = MaskModel(model_spec)
    m = model.manifest
    grid = StftGrid(m.n_fft, m.hop)
    X = stft(mix, grid)[0]                                    # left channel (frames, bins)
    mag = np.abs(X[:, : m.model_bins]).T[None]                # (1, bins, frames)
    mag = np.pad(mag, ((0, 0), (0, 0), (m.context_frames, m.lookahead_frames)))
    pred = model.masks(np.ascontiguousarray(mag, np.float32))[0]          # (S, bins, frames)
    S = np.abs(np.stack([stft(s, grid)[0] for s in stems]))[:, :, : m.model_bins]
    S = S.transpose(0, 2, 1)
    tot = S.sum(axis=0, keepdims=True)
    irm = np.where(tot > 0, S / np.maximum(tot, 1e-12), 0.25)
    freqs = np.arange(m.model_bins) * SR / m.n_fft
    keep = freqs <= fmax
    t_end = X.shape[0] * m.hop / SR
    ext = [0, t_end, 0, freqs[keep][-1] / 1000]

    fig = plt.figure(figsize=(11, 6.4))
    gs = fig.add_gridspec(3, 4, height_ratios=[1.1, 1, 1], hspace=0.45, wspace=0.08)
    ax = fig.add_subplot(gs[0, :])
    db = 20 * np.log10(np.abs(X[:, : m.model_bins]).T[keep] + 1e-6)
    im = ax.imshow(db, origin="lower", aspect="auto", extent=ext, cmap="magma",
                   vmin=db.max() - 80, vmax=db.max())
    ax.set_title(f"Mixture (left channel): {name}, MUSDB18-7 valid", loc="left")
    ax.set_ylabel("kHz")
    fig.colorbar(im, ax=ax, pad=0.01, label="dB")
    for row, (masks, label) in enumerate(((pred, f"predicted ({m.name or 'model'})"),
                                          (irm, "ground truth (ideal ratio mask)")), start=1):
        for j, s in enumerate(STEMS):
            a = fig.add_subplot(gs[row, j])
            a.imshow(masks[j][keep], origin="lower", aspect="auto", extent=ext, cmap="viridis",
                     vmin=0, vmax=1)
            a.set_title(f"{s}: {label}", fontsize=8, loc="left")
            if j:
                a.set_yticklabels([])
            else:
                a.set_ylabel("kHz")
            if row == 2:
                a.set_xlabel("s")
    _save(fig, out / "masks.png", dpi=90)
    plt.close(fig)


# -- SDR bars ----------------------------------------------------------------------
def plot_sdr(quality, out):
    plt = _plt()
    summ = quality["summary"]
    methods = list(summ)
    cols = STEMS + ["avg"]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    w = 0.8 / len(methods)
    cmap = plt.get_cmap("tab10")
    for i, meth in enumerate(methods):
        vals = [summ[meth][c] for c in cols]
        x = np.arange(len(cols)) + (i - (len(methods) - 1) / 2) * w
        hatch = "//" if meth.startswith("oracle") else None
        ax.bar(x, vals, w, label=meth, color=cmap(i % 10), hatch=hatch, edgecolor="white",
               linewidth=0.3)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(np.arange(len(cols)), cols)
    ax.set_ylabel("SDR (dB), median of medians")
    ax.set_title(f"MUSDB18-7 valid, {len(quality['tracks'])} excerpts, museval BSSEval v4 "
                 "(1 s windows); measured here", loc="left")
    ax.legend(ncol=4, fontsize=7.5, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    ax.grid(axis="y", alpha=0.3)
    _save(fig, out / "sdr.png")
    plt.close(fig)


# -- speed bars --------------------------------------------------------------------
def plot_speed(speed, out):
    plt = _plt()
    names, xrt = [], []
    for label, o in speed["offline"].items():
        names.append(f"stemboard {label}")
        xrt.append(o["x_realtime"])
    for name, p in speed["peers"].items():
        if "x_realtime" in p:
            names.append(name.replace(" (", "\n(") + "\nrandom weights")
            xrt.append(p["x_realtime"])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.1, 1]})
    y = np.arange(len(names))[::-1]
    a1.barh(y, xrt, color=[_color(n if n.startswith("stemboard") else "peer") for n in names])
    for yi, v in zip(y, xrt):
        a1.text(v, yi, f" {v:.3g}x" if v < 100 else f" {v:.0f}x", va="center", fontsize=8)
    a1.set_yticks(y, names, fontsize=8)
    a1.set_xscale("log")
    a1.xaxis.set_major_formatter(_plain())
    a1.axvline(1, color="black", linewidth=0.6, linestyle=":")
    a1.set_xlabel("times real time (higher is faster, log scale)")
    a1.set_title(f"4-stem separation of {speed['audio_seconds']:.0f} s stereo, "
                 f"{speed['threads']} threads", loc="left")
    st = speed["streaming"]
    models = sorted({s["model"] for s in st.values()}, key=list(speed["offline"]).index)
    blocks = sorted({s["block"] for s in st.values()})
    w = 0.8 / (2 * len(models))
    cmap = plt.get_cmap("tab20")
    k = 0
    for mi, mdl in enumerate(models):
        for stat in ("mean_frac", "p99_frac"):
            vals = [next((s[stat] for s in st.values() if s["model"] == mdl and s["block"] == b),
                         np.nan) for b in blocks]
            x = np.arange(len(blocks)) + (k - (2 * len(models) - 1) / 2) * w
            a2.bar(x, vals, w, color=cmap(2 * mi + (stat == "mean_frac")),
                   label=f"{mdl}: {'mean' if stat == 'mean_frac' else 'p99'}")
            k += 1
    a2.axhline(1, color="red", linewidth=0.8, linestyle="--")
    a2.text(len(blocks) - 0.5, 1, "real-time budget", color="red", fontsize=7.5, ha="right",
            va="bottom")
    a2.set_xticks(np.arange(len(blocks)),
                  [f"{b} samples\n({1000 * b / SR:.1f} ms)" for b in blocks])
    a2.set_ylabel("time per block / block duration")
    a2.set_title("Streaming, process(reset=False)", loc="left")
    a2.legend(fontsize=7.5, frameon=False)
    fig.tight_layout()
    _save(fig, out / "speed.png")
    plt.close(fig)


# -- latency vs SDR ----------------------------------------------------------------
def plot_latency_sdr(quality, speed, out):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    summ = quality["summary"]
    lat = {k: v["latency_ms"] for k, v in quality["models"].items()}
    if speed:
        for k, v in speed.get("latency", {}).items():
            lat[k] = v["reported_ms"]
    for label, ms in lat.items():
        key = f"stemboard {label}"
        if key in summ:
            ax.plot(ms, summ[key]["avg"], "o", color=COLORS["stemboard"], markersize=8)
            ax.annotate(f"{key}\n{ms:.0f} ms, {summ[key]['avg']:.2f} dB", (ms, summ[key]["avg"]),
                        textcoords="offset points", xytext=(8, -4), fontsize=8)
    for name, p in PUBLISHED.items():
        ax.plot(p["latency_ms"], p["avg"], "D", mfc="none", color=COLORS["peer"], markersize=7)
        ax.annotate(f"{name}\n{p['latency_ms']:.0f} ms, {p['avg']:.2f} dB (full MUSDB18)",
                    (p["latency_ms"], p["avg"]), textcoords="offset points", xytext=(8, -4),
                    fontsize=8, color=COLORS["peer"])
    for key, style in (("mixture (floor)", ":"),):
        if key in summ:
            ax.axhline(summ[key]["avg"], color=COLORS["mixture"], linestyle=style, linewidth=0.8)
            ax.text(ax.get_xlim()[0] if False else 10.5, summ[key]["avg"], f" {key}",
                    color=COLORS["mixture"], fontsize=7.5, va="bottom")
    for key in summ:
        if key.startswith("oracle IRM"):
            ax.axhline(summ[key]["avg"], color=COLORS["oracle"], linestyle="--", linewidth=0.8)
            ax.text(10.5, summ[key]["avg"], f" {key} (ceiling for masks)", color=COLORS["oracle"],
                    fontsize=7.5, va="bottom")
    ax.set_xscale("log")
    ax.set_xlim(10, 1000)
    ax.xaxis.set_major_formatter(_plain())
    ax.set_xlabel("algorithmic latency (ms, log scale)")
    ax.set_ylabel("average SDR over 4 stems (dB)")
    ax.set_title("Latency vs quality (MUSDB18-7 valid; hollow = published)", loc="left")
    ax.grid(alpha=0.3)
    _save(fig, out / "latency_sdr.png")
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speed", default=str(RUNS / "speed.json"))
    ap.add_argument("--quality", default=str(RUNS / "quality.json"))
    ap.add_argument("--model", default="offline", help="model for the mask figure")
    ap.add_argument("--data", default=None, help="MUSDB18-7 root (for the mask figure)")
    ap.add_argument("--cache", default=None, help="decoded-audio cache (as bench/quality.py)")
    ap.add_argument("--track", type=int, default=0, help="valid track index for the mask figure")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--only", nargs="+", choices=["masks", "sdr", "speed", "latency"])
    args = ap.parse_args(argv)
    out = Path(args.out)
    only = set(args.only or ["masks", "sdr", "speed", "latency"])

    def load(p):
        p = Path(p)
        return json.loads(p.read_text()) if p.exists() else None

    speed, quality = load(args.speed), load(args.quality)
    if "masks" in only:
        from quality import DEFAULT_DATA
        spec = next(iter(resolve_models([args.model]).values()))
        plot_masks(spec, args.data or DEFAULT_DATA, args.track, out, cache=args.cache)
    if "sdr" in only and quality:
        plot_sdr(quality, out)
    if "speed" in only and speed:
        plot_speed(speed, out)
    if "latency" in only and quality:
        plot_latency_sdr(quality, speed, out)
    for name, d in (("speed", speed), ("quality", quality)):
        if d is None:
            print(f"[bench] no {name} results; run bench/{name}.py --json first", file=sys.stderr)


if __name__ == "__main__":
    main()
