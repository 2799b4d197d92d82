"""Speed and latency benchmark: stemboard next to Open-Unmix, HT Demucs and STFT baselines.

Every method runs on the same synthetic stereo 44.1 kHz signal, in the same
process, round-robin (repeat 1 of every method, then repeat 2 in reverse order, ...), so load
from other users of the machine hits all of them alike. Medians over repeats
are reported, and every figure is also given as a ratio measured in the same
run: to the same model at an earlier commit (``--baseline``, by default the
commit issue 28 started from, imported side by side as ``stemboard_base``),
and to the peers.

Peers are their real architectures with *random* weights (no weights can be
downloaded here); their speed does not depend on the weights.

    python bench/speed.py                         # 60 s, bundled hq, hq-vocals, offline, live
    python bench/speed.py --seconds 5 --model fixture --no-peers   # smoke run
    python bench/speed.py --json runs/bench/speed.json
    python bench/speed.py --no-stft --repeats 3 --baseline 975e4d3
"""
import argparse
import os
import sys
import time
import types
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (BASELINE_REV, SR, STEMS, cpu_seconds, git_rev,  # noqa: E402
                      load_baseline, machine_info, manifest_info, median, resolve_models,
                      save_json, table, test_signal, timed)

BLOCKS = (256, 512, 1024)


# -- stemboard -----------------------------------------------------------------
def stream_block_times(sep, x, block, *, realtime=False):
    """Feed ``x`` through ``sep.process(reset=False)`` in fixed blocks; per-block seconds.

    By default the blocks run back to back at the process's normal priority.  With
    ``realtime`` they run as a host's audio callback does: one block per
    ``block / SR`` seconds of wall time, on a thread at real-time priority
    (``SCHED_FIFO``, as DAWs and JACK run their audio threads).  Pacing keeps the
    thread's CPU share far below the kernel's real-time throttling limit.
    """
    sep.reset()
    n = x.shape[1] - x.shape[1] % block
    times = np.empty(n // block)
    period = block / SR
    with host_priority(realtime):
        due = time.perf_counter()          # when the host hands over the next block
        for k, i in enumerate(range(0, n, block)):
            while realtime and (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
            due += period
            blk = x[:, i:i + block]
            t0 = time.perf_counter()
            sep.process(blk, SR, buffer_size=block, reset=False)
            times[k] = time.perf_counter() - t0
    sep.reset()
    return times


class FixedWork:
    """A stand-in separator whose every block is the same ``seconds`` of arithmetic
    (no memory traffic, no allocation, no system calls), timed exactly as the
    separators' blocks are: its tail is the machine's own (the hypervisor's and the
    scheduler's), the floor under any code's p99 and max in the same run."""

    def __init__(self, seconds):
        import numba

        @numba.njit(nogil=True)
        def spin(n):
            acc = 0.0
            for i in range(n):
                acc = acc * 0.999999 + i
            return acc

        self._spin = spin
        n = 100_000
        spin(n)
        fastest = min(timed(lambda: spin(n))[0] for _ in range(20))
        self.iterations = max(1, int(n * seconds / fastest))

    def reset(self):
        pass

    def process(self, block, sample_rate, buffer_size=None, reset=False):
        self._spin(self.iterations)
        return block


@contextmanager
def host_priority(realtime):
    """Run the body on the calling thread at ``SCHED_FIFO`` priority 10 when
    ``realtime`` (Linux; ``SystemExit`` naming the problem where that is not
    permitted), restoring the thread's policy after."""
    if not realtime:
        yield
        return
    if not hasattr(os, "SCHED_FIFO"):
        raise SystemExit("--stream-priority realtime needs Linux (os.SCHED_FIFO)")
    old = (os.sched_getscheduler(0), os.sched_getparam(0))
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except PermissionError:
        raise SystemExit("--stream-priority realtime: not permitted to use SCHED_FIFO "
                         "(needs CAP_SYS_NICE or an rtprio limit, as audio hosts have)") from None
    try:
        yield
    finally:
        os.sched_setscheduler(0, *old)


def verify_latency(sep, block=1):
    """Impulse test of the streaming latency.

    An impulse is streamed (``reset=False``) in ``block``-sample blocks. Every
    output sample ``j`` is emitted once some number of input samples have been
    fed; its delay is that count minus ``j + 1``. With every stem at 0 dB the
    remix is lossless, so the impulse must come out at its own index.
    Returns the minimum delay (the algorithmic latency), the maximum (latency
    plus the hop granularity), and whether the impulse came out aligned.
    """
    lat = sep.latency_samples
    if lat > SR:
        # Seconds of latency (the segmented hq models): 1-sample blocks would take
        # hours, and every latency here is a multiple of 512.
        block = 512
    p = 3 * 4096 + 17
    n = p + lat + 4 * 4096
    x = np.zeros((2, n), np.float32)
    x[:, p] = 1.0
    sep.reset()
    if hasattr(sep, "expect_layout"):   # a fresh (2, 1) block would read as 2 mono samples
        sep.expect_layout(2)
    outs, emitted_at = [], []
    fed = 0
    for i in range(0, n, block):
        y = sep.process(x[:, i:i + block], SR, buffer_size=block, reset=False)
        fed += x[:, i:i + block].shape[1]
        outs.append(y)
        emitted_at += [fed] * y.shape[1]
    sep.reset()
    out = np.concatenate(outs, axis=1)
    j = np.arange(out.shape[1])
    delay = np.asarray(emitted_at) - (j + 1)
    # offline (reset=True): whole signal at once, output must be aligned and full length
    off = sep.process(x, SR, reset=True)
    return {
        "reported_samples": int(sep.latency_samples),
        "reported_ms": 1000.0 * sep.latency_samples / SR,
        "measured_min_delay_samples": int(delay.min()),
        "measured_max_delay_samples": int(delay.max()),
        "impulse_index_in": int(p),
        "impulse_index_stream_out": int(np.argmax(np.abs(out[0]))) if out.size else -1,
        "stream_impulse_error": (float(np.abs(out - x[:, :out.shape[1]]).max()) if out.size
                                 else float("nan")),
        "impulse_index_offline_out": int(np.argmax(np.abs(off[0]))),
        "offline_length_ok": bool(off.shape == x.shape),
    }


def _spin():
    while True:
        pass


def background_load(n):
    """Start ``n`` processes that only spin (the issue's synthetic background load of
    busy processes); terminate them with :func:`stop_load`."""
    import multiprocessing as mp

    procs = [mp.get_context("fork").Process(target=_spin, daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    return procs


def stop_load(procs):
    for p in procs:
        p.terminate()
        p.join()


# -- peers ---------------------------------------------------------------------
def _torch(threads):
    import torch
    torch.set_num_threads(threads)
    return torch


def make_umx(threads):
    """Open-Unmix umxhq architecture (4 targets, n_fft 4096, hop 1024, 16 kHz bandwidth),
    random weights."""
    torch = _torch(threads)
    try:
        import torchaudio  # noqa: F401
    except ImportError:
        # openunmix imports torchaudio at module level but only uses it for file
        # I/O and resampling; no torchaudio wheel exists for this torch.
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    from openunmix.model import OpenUnmix, Separator

    torch.manual_seed(0)
    targets = {s: OpenUnmix(nb_bins=2049, nb_channels=2, hidden_size=512, max_bin=1487)
               for s in STEMS}
    sep = Separator(targets, niter=1, residual=False, n_fft=4096, n_hop=1024, nb_channels=2,
                    sample_rate=float(SR), wiener_win_len=300).eval()
    params = sum(p.numel() for p in targets["vocals"].parameters())

    def run(x):
        with torch.inference_mode():
            return sep(torch.from_numpy(x)[None]).numpy()
    return run, {"params_per_target_M": params / 1e6,
                 "config": "umxhq-like: 4 x OpenUnmix(hidden 512, max_bin 1487), n_fft 4096, "
                           "hop 1024, 1 Wiener iteration"}


def make_demucs(threads):
    """HT Demucs architecture (htdemucs defaults, segment 7.8 s), random weights, demucs CLI
    defaults."""
    torch = _torch(threads)
    from demucs.apply import apply_model
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(0)
    model = HTDemucs(sources=["drums", "bass", "other", "vocals"], segment=7.8).eval()
    params = sum(p.numel() for p in model.parameters())

    def run(x):
        with torch.inference_mode():
            return apply_model(model, torch.from_numpy(x)[None], shifts=1, split=True,
                               overlap=0.25, progress=False, device="cpu").numpy()
    return run, {"params_M": params / 1e6, "config": "HTDemucs() defaults, segment 7.8 s; "
                 "apply_model(shifts=1, split=True, overlap=0.25)"}


# -- STFT baselines ------------------------------------------------------------
def stft_baselines(n_fft, hop, threads):
    from stemboard.dsp import StftGrid, istft, stft

    grid = StftGrid(n_fft, hop)
    cands = {}
    cands["stemboard.dsp (numba + rocket-fft)"] = (
        lambda x: stft(x, grid), lambda X, n: istft(X, n, grid))
    try:
        import librosa
        cands["librosa"] = (
            lambda x: librosa.stft(x, n_fft=n_fft, hop_length=hop, window="hann"),
            lambda X, n: librosa.istft(X, hop_length=hop, window="hann", length=n))
    except ImportError:
        pass
    try:
        torch = _torch(threads)
        win = torch.hann_window(n_fft)
        cands["torch.stft"] = (
            lambda x: torch.stft(torch.from_numpy(x), n_fft, hop, window=win, return_complex=True),
            lambda X, n: torch.istft(X, n_fft, hop, window=win, length=n).numpy())
    except ImportError:
        pass
    return cands


# -- main ----------------------------------------------------------------------
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="test signal length (default 60)")
    ap.add_argument("--model", action="append", help="a bundled name, fixture, or an .onnx path "
                    "(repeatable; default: the bundled offline and live models)")
    ap.add_argument("--blocks", type=int, nargs="+", default=list(BLOCKS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-repeats", type=int, default=None,
                    help="repeats for the peers (default: --repeats)")
    ap.add_argument("--stream-repeats", type=int, default=1,
                    help="streaming runs per block size (default 1: each run is already "
                         "thousands of timed blocks)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="threads for onnxruntime and torch (default: all cores)")
    ap.add_argument("--no-peers", action="store_true", help="skip Open-Unmix and HT Demucs")
    ap.add_argument("--no-stft", action="store_true", help="skip the STFT baselines")
    ap.add_argument("--baseline", default=BASELINE_REV,
                    help="git revision whose package runs beside this one, same models "
                         f"(default {BASELINE_REV}, the start of issue 28)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the baseline commit")
    ap.add_argument("--stream-priority", choices=("normal", "realtime"), default="normal",
                    help="streaming runs: back to back at normal priority (default), or "
                         "paced in real time on a SCHED_FIFO thread, as a host's audio "
                         "thread calls a plugin")
    ap.add_argument("--floor-ms", type=float, default=1.0,
                    help="per-block work of the machine-floor streaming row: a fixed "
                         "computation of this many milliseconds (default 1.0, about a "
                         "512-sample block of offline or live; 0: no such row)")
    ap.add_argument("--background-load", type=int, default=0, metavar="N",
                    help="run N busy processes during the timings (synthetic load)")
    ap.add_argument("--json", help="write all results to this JSON file")
    return ap.parse_args(argv)


def new_results(args, x):
    """The results dict, before any timing: the run's settings and machine."""
    return {"audio_seconds": x.shape[1] / SR, "channels": 2, "sample_rate": SR,
            "repeats": args.repeats, "peer_repeats": args.peer_repeats or args.repeats,
            "stream_repeats": args.stream_repeats, "threads": args.threads,
            "stream_priority": args.stream_priority,
            "machine": machine_info(), "git": git_rev(), "models": {}, "offline": {},
            "streaming": {}, "latency": {}, "peers": {}, "stft": {},
            "baseline": {"rev": None if args.no_baseline else args.baseline, "offline": {},
                         "streaming": {}}}


def model_tasks(args, res, x, warm, base):
    """Load and warm up each model (and the baseline commit's run of it); return
    ``(separators by label, tasks)``, a task being ``(kind, name, fn, repeats)``."""
    from stemboard.models import load_model
    from stemboard.plugin.separator import StemSeparator

    tasks, seps = [], {}
    realtime = args.stream_priority == "realtime"
    for label, spec in resolve_models(args.model or ["hq", "hq-vocals", "offline",
                                                      "live"]).items():
        t_load, model = timed(lambda: load_model(spec, num_threads=args.threads))
        info = manifest_info(model)
        info["load_seconds"] = t_load
        res["models"][label] = info
        sep = StemSeparator(model)
        seps[label] = sep
        sep.separate(warm, SR)
        tasks.append(("offline", label, lambda s=sep: s.separate(x, SR), args.repeats))
        # Real-time block budgets only mean something for the low-latency models.
        blocks = args.blocks if model.latency_samples < SR else ()
        for b in blocks:
            stream_block_times(sep, warm, b)
            tasks.append(("stream", f"{label}@{b}",
                          lambda s=sep, b=b: stream_block_times(s, x, b, realtime=realtime),
                          args.stream_repeats))
        if base is not None:
            tasks += baseline_tasks(args, base, label, spec, x, warm, blocks)
    return seps, tasks


def floor_tasks(args, res, x, warm):
    """The machine-floor streaming rows: :class:`FixedWork` through the same timing,
    pacing and priority as the separators' streaming runs, in the same round-robin."""
    streamed = any(m.get("latency_samples", SR) < SR for m in res["models"].values())
    if args.floor_ms <= 0 or not streamed:
        return []
    work = FixedWork(args.floor_ms / 1000)
    label = f"fixed {args.floor_ms:g} ms of arithmetic (machine floor)"
    res["floor"] = {"label": label, "seconds_per_block": args.floor_ms / 1000,
                    "iterations": work.iterations}
    realtime = args.stream_priority == "realtime"
    tasks = []
    for b in args.blocks:
        stream_block_times(work, warm, b)
        tasks.append(("floor stream", f"{label}@{b}",
                      lambda b=b: stream_block_times(work, x, b, realtime=realtime),
                      args.stream_repeats))
    return tasks


def baseline_tasks(args, base, label, spec, x, warm, blocks):
    """The same model as the baseline commit loads and runs it, timed in the same
    round-robin: the ratio to it is what this commit changed."""
    try:
        old = base.StemSeparator(base.load_model(spec, num_threads=args.threads))
    except base.ModelError as e:  # a model newer than the baseline: no ratio
        print(f"[bench] baseline has no {label}: {e}", file=sys.stderr)
        return []
    old.separate(warm, SR)
    realtime = args.stream_priority == "realtime"
    tasks = [("base offline", label, lambda s=old: s.separate(x, SR), args.repeats)]
    for b in blocks:
        stream_block_times(old, warm, b)
        tasks.append(("base stream", f"{label}@{b}",
                      lambda s=old, b=b: stream_block_times(s, x, b, realtime=realtime),
                      args.stream_repeats))
    return tasks


def peer_tasks(args, res, x, warm):
    """Open-Unmix and HT Demucs (random weights), where their packages are installed."""
    tasks = []
    for name, make in (("Open-Unmix (umxhq arch.)", make_umx),
                       ("HT Demucs (htdemucs arch.)", make_demucs)):
        try:
            run, meta = make(args.threads)
            run(warm)
        except Exception as e:  # missing optional package: report, keep going
            print(f"[bench] peer {name} skipped: {type(e).__name__}: {e}", file=sys.stderr)
            res["peers"][name] = {"skipped": f"{type(e).__name__}: {e}"}
            continue
        res["peers"][name] = dict(meta, times=[])
        tasks.append(("peer", name, lambda r=run: r(x), res["peer_repeats"]))
    return tasks


def stft_tasks(args, res, warm):
    """STFT/ISTFT baselines on the first model's grid."""
    first = next((v for v in res["models"].values() if "n_fft" in v),
                 {"n_fft": 2048, "hop": 512})
    tasks = []
    for name, (fwd, inv) in stft_baselines(first["n_fft"], first["hop"], args.threads).items():
        X = fwd(warm)
        inv(X, warm.shape[1])
        res["stft"][name] = {"n_fft": first["n_fft"], "hop": first["hop"],
                             "stft_times": [], "istft_times": []}
        tasks.append(("stft", name, (fwd, inv), args.repeats))
    return tasks


def run_round_robin(tasks, res, x):
    """Run every task's repeats round-robin; return ``{kind: {name: [result]}}``
    (times for offline runs, per-block time arrays for streaming runs).  Peer
    and STFT times go straight into ``res``."""
    got = {"offline": {}, "base offline": {}, "stream": {}, "base stream": {},
           "floor stream": {}}
    for r in range(max(t[3] for t in tasks)):
        # Every other round in reverse order, so no method always runs first: with a
        # fixed order hq, first in every round, printed 18-19x in three runs of session
        # 32 while the same hq interleaved on its own ran at 24.6x.
        for kind, name, fn, reps in (tasks if r % 2 == 0 else tasks[::-1]):
            if r >= reps:
                continue
            print(f"[bench] repeat {r + 1}: {kind} {name}", file=sys.stderr, flush=True)
            if kind in ("offline", "base offline"):
                got[kind].setdefault(name, []).append(timed(fn)[0])
            elif kind in ("stream", "base stream", "floor stream"):
                got[kind].setdefault(name, []).append(fn())
            elif kind == "peer":
                res["peers"][name]["times"].append(timed(fn)[0])
            else:
                fwd, inv = fn
                t, X = timed(lambda: fwd(x))
                res["stft"][name]["stft_times"].append(t)
                res["stft"][name]["istft_times"].append(timed(lambda: inv(X, x.shape[1]))[0])
    return got


def summarise(res, got, seps):
    """Medians, real-time factors, streaming budgets and latencies into ``res``."""
    dur = res["audio_seconds"]
    for label in seps:
        ts = got["offline"].get(label, [])
        res["offline"][label] = {"times": ts, "median_s": median(ts),
                                 "x_realtime": dur / median(ts)}
    for label, ts in got["base offline"].items():
        res["baseline"]["offline"][label] = {"times": ts, "median_s": median(ts),
                                             "x_realtime": dur / median(ts)}
    for name, runs in got["stream"].items():
        res["streaming"][name] = stream_summary(name, runs)
    for name, runs in got["base stream"].items():
        res["baseline"]["streaming"][name] = stream_summary(name, runs)
    for name, runs in got["floor stream"].items():
        res["floor"].setdefault("streaming", {})[name] = stream_summary(name, runs)
    for label, sep in seps.items():
        res["latency"][label] = verify_latency(sep)
    for name, p in res["peers"].items():
        if p.get("times"):
            p["median_s"] = median(p["times"])
            p["x_realtime"] = dur / p["median_s"]
    for name, s in res["stft"].items():
        s["stft_median_ms"] = 1000 * median(s["stft_times"])
        s["istft_median_ms"] = 1000 * median(s["istft_times"])


def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    x = test_signal(args.seconds)
    warm = x[:, : min(x.shape[1], 2 * SR)]
    res = new_results(args, x)
    base = None if args.no_baseline else load_baseline(args.baseline)

    # Build everything first, warm it up (JIT, lazy init), then measure round-robin.
    seps, tasks = model_tasks(args, res, x, warm, base)
    tasks += floor_tasks(args, res, x, warm)
    if not args.no_peers:
        tasks += peer_tasks(args, res, x, warm)
    if not args.no_stft:
        tasks += stft_tasks(args, res, warm)

    load = background_load(args.background_load)
    res["background_load_processes"] = args.background_load
    before, t0 = cpu_seconds(), time.perf_counter()
    got = run_round_robin(tasks, res, x)
    res["loadavg_at_end"] = os.getloadavg()   # of the timings, before the load stops
    after = cpu_seconds()
    if before and after:
        res["cpu_seconds"] = {"wall": time.perf_counter() - t0, "busy": after[0] - before[0],
                              "stolen": after[1] - before[1]}
    stop_load(load)

    summarise(res, got, seps)
    print_report(res)
    save_json(args.json, res)
    return res


def stream_summary(name, runs):
    """Budget fractions (mean, p99, max; medians over runs) of ``label@block`` runs."""
    label, b = name.rsplit("@", 1)
    b = int(b)
    budget = b / SR
    per = [{"mean": float(t.mean() / budget), "p99": float(np.percentile(t, 99) / budget),
            "max": float(t.max() / budget)} for t in runs]
    return {"model": label, "block": b, "budget_ms": 1000 * budget, "blocks_per_run": len(runs[0]),
            "mean_frac": median([p["mean"] for p in per]),
            "p99_frac": median([p["p99"] for p in per]),
            "max_frac": median([p["max"] for p in per]),
            "mean_ms": 1000 * budget * median([p["mean"] for p in per]),
            "p99_ms": 1000 * budget * median([p["p99"] for p in per]),
            "runs": per}


def print_report(res):
    dur = res["audio_seconds"]
    print(f"\n## Separation speed ({dur:.0f} s stereo 44.1 kHz, 4 stems, "
          f"{res['threads']} threads, median of {res['repeats']} "
          f"(peers {res['peer_repeats']}))\n")
    start, end = res["machine"].get("loadavg_at_start"), res.get("loadavg_at_end")
    if start and end:
        extra = res.get("background_load_processes")
        print(f"load average (1 min) {start[0]:.2f} at the start, {end[0]:.2f} at the end"
              + (f"; {extra} busy background processes during the timings" if extra else "")
              + "\n")
    cpu = res.get("cpu_seconds")
    if cpu:
        print(f"during the timings ({cpu['wall']:.0f} s): {cpu['busy']:.0f} CPU seconds busy, "
              f"{cpu['stolen']:.1f} stolen by the hypervisor (all CPUs)\n")
    base = res.get("baseline") or {}
    rev = base.get("rev")
    peers = {name: p["median_s"] for name, p in res["peers"].items() if "median_s" in p}
    ref_label = "offline" if "offline" in res["offline"] else next(iter(res["offline"]), None)
    ref = res["offline"][ref_label]["median_s"] if ref_label else float("nan")
    headers = ["method", "wall time (s)", "x real time", f"time / stemboard {ref_label}"]
    if rev:
        headers.append(f"speed-up over {rev} (same model)")
    headers += [f"{name.split(' (')[0]} time / this" for name in peers]
    rows = []
    for label, o in res["offline"].items():
        row = [f"stemboard {label}", o["median_s"], o["x_realtime"], o["median_s"] / ref]
        if rev:
            old = base["offline"].get(label)
            row.append(old["median_s"] / o["median_s"] if old else float("nan"))
        row += [t / o["median_s"] for t in peers.values()]
        rows.append(row)
    if rev:
        for label, o in base["offline"].items():
            row = [f"stemboard {label} at {rev}", o["median_s"], o["x_realtime"],
                   o["median_s"] / ref, 1.0]
            row += [t / o["median_s"] for t in peers.values()]
            rows.append(row)
    for name, t in peers.items():
        rows.append([name + ", random weights", t, dur / t, t / ref]
                    + ([float("nan")] if rev else []) + [u / t for u in peers.values()])
    print(table(headers, rows))

    how = ("paced in real time on a SCHED_FIFO thread, as a host's audio thread"
           if res.get("stream_priority") == "realtime" else "back to back, normal priority")
    print("\n## Streaming (process(reset=False), time per block / block duration; "
          f"{res.get('stream_repeats', 1)} run(s) per row; blocks {how})\n")
    headers = ["model", "block", "budget (ms)", "mean", "p99", "max", "blocks"]
    if rev:
        headers += [f"mean at {rev}", f"p99 at {rev}", f"max at {rev}", f"p99 {rev} / p99 now"]
    rows = []
    for name, s in res["streaming"].items():
        row = [s["model"], s["block"], s["budget_ms"], s["mean_frac"], s["p99_frac"],
               s["max_frac"], s["blocks_per_run"]]
        if rev:
            old = base["streaming"].get(name)
            row += ([old["mean_frac"], old["p99_frac"], old["max_frac"],
                     old["p99_frac"] / s["p99_frac"]] if old else [float("nan")] * 4)
        rows.append(row)
    floor = res.get("floor", {}).get("streaming", {})
    for name, s in floor.items():
        rows.append([s["model"], s["block"], s["budget_ms"], s["mean_frac"], s["p99_frac"],
                     s["max_frac"], s["blocks_per_run"]] + ([""] * 4 if rev else []))
    print(table(headers, rows))
    if floor:
        print("\nThe machine floor is the same fixed computation in every block, timed the "
              "same way in the same round-robin: its p99 and max are this machine's own "
              "tail, under any code's.")

    print("\n## Latency (impulse test, streaming in 1-sample blocks)\n")
    rows = []
    for label, lat in res["latency"].items():
        ok = (lat["measured_min_delay_samples"] == lat["reported_samples"]
              and lat["impulse_index_stream_out"] == lat["impulse_index_in"]
              and lat["impulse_index_offline_out"] == lat["impulse_index_in"])
        rows.append([label, lat["reported_samples"], lat["reported_ms"],
                     lat["measured_min_delay_samples"], lat["measured_max_delay_samples"],
                     f"{lat['stream_impulse_error']:.1e}", "yes" if ok else "NO"])
    print(table(["model", "reported (samples)", "reported (ms)", "measured min delay",
                 "measured max delay", "impulse error", "verified"], rows))

    if res["stft"]:
        print("\n## STFT + ISTFT baselines (same signal)\n")
        base = next(iter(res["stft"].values()))
        rows = [[name, f"{s['n_fft']}/{s['hop']}", s["stft_median_ms"], s["istft_median_ms"],
                 (s["stft_median_ms"] + s["istft_median_ms"])
                 / (base["stft_median_ms"] + base["istft_median_ms"])]
                for name, s in res["stft"].items()]
        print(table(["method", "n_fft/hop", "STFT (ms)", "ISTFT (ms)", "total / stemboard.dsp"],
                    rows))
    print()


if __name__ == "__main__":
    main()
