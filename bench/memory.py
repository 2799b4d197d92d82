"""Peak memory of disk-to-disk separation: a 1-minute file next to a 10-minute one.

Each run is a fresh ``python -m stemboard separate IN -o OUT`` subprocess; its
peak resident set size (``VmHWM`` of its own address space, read from
``/proc/self/status`` as it exits; Linux only) is the measure. A ``python -m
stemboard models`` run (imports and model load, no audio) gives the floor. The
inputs are synthetic stereo 44.1 kHz 16-bit WAVs written block by block into a
temporary folder and deleted afterwards.

    python bench/memory.py --json runs/bench/memory.json
    python bench/memory.py --model fixture --minutes 0.05 0.5     # smoke run
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (ROOT, SR, git_rev, machine_info, resolve_models, save_json,  # noqa: E402
                    table, test_signal)


def write_wav(path, minutes, chunk_seconds=60):
    """Write ``minutes`` of the test signal as 16-bit stereo WAV, one chunk at a time."""
    from pedalboard.io import AudioFile

    total = int(round(minutes * 60 * SR))
    chunk = test_signal(min(chunk_seconds, total / SR))
    with AudioFile(str(path), "w", SR, 2, bit_depth=16) as f:
        done = 0
        while done < total:
            n = min(chunk.shape[1], total - done)
            f.write(chunk[:, :n])
            done += n
    return total


# The child reports the high-water mark of its own address space (VmHWM) at
# exit. ru_maxrss from wait4/RUSAGE_CHILDREN is not used: on Linux it also
# counts the pages of this (larger) parent process copied by fork before exec.
CHILD = """
import runpy, sys
sys.argv = ["stemboard"] + sys.argv[1:]
code = 0
try:
    runpy.run_module("stemboard", run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
finally:
    with open("/proc/self/status") as f:
        hwm = [l.split()[1] for l in f if l.startswith("VmHWM")][0]
    sys.stderr.write("\\nBENCH_VMHWM_KB=" + hwm + "\\n")
sys.exit(code)
"""


def run_peak_rss(cli_args):
    """Run ``stemboard CLI_ARGS``; return (peak RSS in MiB, wall seconds, return code,
    stderr tail)."""
    t0 = time.perf_counter()
    # Not from the checkout's root: its stemboard/ folder (without the mapped dsp/,
    # models/, ... folders) would shadow the package under test.
    proc = subprocess.run([sys.executable, "-c", CHILD, *cli_args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, cwd=tempfile.gettempdir(), text=True)
    wall = time.perf_counter() - t0
    lines = proc.stderr.splitlines()
    hwm = [l.split("=", 1)[1] for l in lines if l.startswith("BENCH_VMHWM_KB=")]
    rss = int(hwm[-1]) / 1024.0 if hwm else float("nan")
    return rss, wall, proc.returncode, [l for l in lines if not l.startswith("BENCH_")][-5:]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    ap.add_argument("--model", default="offline", help="offline, live, fixture or an .onnx path")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", help="write results to this JSON file")
    args = ap.parse_args(argv)

    label, spec = next(iter(resolve_models([args.model]).items()))
    base = []
    extra = ["--model", spec] + (["--threads", str(args.threads)] if args.threads else [])
    res = {"model": label, "machine": machine_info(), "git": git_rev(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="stemboard-mem-") as tmp:
        tmp = Path(tmp)
        rss, wall, rc, err = run_peak_rss(base + ["models"])
        if rc != 0:
            raise SystemExit(f"`stemboard models` failed: {err}")
        res["floor_mib"] = rss
        for minutes in args.minutes:
            src = tmp / f"in_{minutes:g}min.wav"
            frames = write_wav(src, minutes)
            out = tmp / f"out_{minutes:g}min"
            cmd = base + ["separate", str(src), "-o", str(out), "-q"] + extra
            rss, wall, rc, err = run_peak_rss(cmd)
            if rc != 0:
                raise SystemExit(f"separate failed ({rc}): {err}")
            outs = sorted(out.rglob("*.wav"))  # OUT/{track}/{stem}.wav
            from pedalboard.io import AudioFile
            lengths_ok = all(AudioFile(str(p)).frames == frames for p in outs)
            res["runs"].append({
                "minutes": minutes, "input_mib": src.stat().st_size / 2**20,
                "outputs": [p.name for p in outs], "output_lengths_ok": lengths_ok,
                "peak_rss_mib": rss, "wall_s": wall, "x_realtime": minutes * 60 / wall,
                # what holding the file as float32 in memory would take, for scale
                "float32_input_mib": frames * 2 * 4 / 2**20,
                "float32_stems_mib": 4 * frames * 2 * 4 / 2**20,
            })
            src.unlink()
            for p in outs:
                p.unlink()

    print(f"\n## Peak memory, disk to disk (`stemboard separate`, model {label})\n")
    rows = [["imports + model, no audio (`stemboard models`)", "—", res["floor_mib"],
             "—", "—", "—"]]
    for r in res["runs"]:
        rows.append([f"{r['minutes']:g} min stereo 44.1 kHz", f"{r['input_mib']:.0f}",
                     r["peak_rss_mib"], r["float32_input_mib"] + r["float32_stems_mib"],
                     r["wall_s"], "yes" if r["output_lengths_ok"] else "NO"])
    print(table(["input", "WAV size (MiB)", "peak RSS (MiB)",
                 "whole file + 4 stems as float32 (MiB)", "wall (s)", "4 stems, full length"],
                rows))
    if len(res["runs"]) >= 2:
        a, b = res["runs"][0], res["runs"][-1]
        res["growth_mib"] = b["peak_rss_mib"] - a["peak_rss_mib"]
        print(f"\npeak RSS {b['minutes']:g} min / {a['minutes']:g} min: "
              f"{b['peak_rss_mib'] / a['peak_rss_mib']:.3f} "
              f"({res['growth_mib']:+.1f} MiB for {b['minutes'] / a['minutes']:.0f}x the audio)")
    print()
    save_json(args.json, res)
    return res


if __name__ == "__main__":
    main()
