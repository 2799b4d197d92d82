"""Helpers shared by the bench scripts: test signal, model resolution, timing, tables.

The bench scripts are run as files (``python bench/speed.py``); they import this
module by putting their own folder on ``sys.path``.
"""
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SR = 44100
STEMS = ["vocals", "drums", "bass", "other"]


# -- test signal ---------------------------------------------------------------
def test_signal(seconds, sr=SR, seed=0):
    """A deterministic synthetic stereo "song", (2, n) float32, peak about 0.5.

    A panned chord pad with vibrato (a stand-in for voice), noise-burst drums on
    a 120 bpm grid, a sine bass line and a little broadband noise. Only the
    amount of work matters for speed, not the musical content.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    x = np.zeros((2, n), np.float64)
    # "voice": vibrato tone with harmonics, centre panned
    f0 = 220.0 * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.15
    x += voice
    # "other": chord pad panned left/right
    for f, pan in ((261.6, 0.2), (329.6, 0.8), (392.0, 0.5)):
        tone = 0.05 * np.sin(2 * np.pi * f * t)
        x[0] += (1 - pan) * tone
        x[1] += pan * tone
    # "bass": sine line changing every beat
    beat = sr // 2
    notes = rng.choice([55.0, 61.7, 73.4, 82.4], size=n // beat + 1)
    fb = np.repeat(notes, beat)[:n]
    x += 0.2 * np.sin(2 * np.pi * np.cumsum(fb) / sr)
    # "drums": decaying noise bursts on every beat
    env = np.exp(-np.arange(beat) / (0.03 * sr))
    for start in range(0, n, beat):
        m = min(beat, n - start)
        x[:, start:start + m] += 0.3 * rng.standard_normal((2, m)) * env[:m]
    x += 0.003 * rng.standard_normal((2, n))
    x *= 0.5 / max(np.abs(x).max(), 1e-9)
    return x.astype(np.float32)


# -- models --------------------------------------------------------------------
_TMP = []


def fixture_model():
    """Write the test suite's tiny band-split ONNX fixture into a temp dir; return its path."""
    sys.path.insert(0, str(ROOT / "tests"))
    from onnx_fixtures import band_split_model

    d = tempfile.TemporaryDirectory(prefix="stemboard-bench-")
    _TMP.append(d)
    return str(band_split_model(Path(d.name) / "fixture.onnx"))


def resolve_models(specs):
    """``["offline", "live", "fixture", "path.onnx"]`` -> {label: model arg}; missing
    bundled names are dropped."""
    from stemboard.models import bundled_models

    out = {}
    bundled = bundled_models()
    for spec in specs:
        if spec == "fixture":
            out["fixture"] = fixture_model()
        elif spec in bundled or spec in ("hq", "hq-vocals", "offline", "live"):
            if spec in bundled:
                out[spec] = spec
            else:
                print(f"[bench] bundled model {spec!r} is not there yet; skipped", file=sys.stderr)
        else:
            out[Path(spec).stem] = spec
    if not out:
        raise SystemExit("no model to benchmark (bundled models missing?); pass --model fixture "
                         "or --model PATH")
    return out


def manifest_info(model):
    """Grid and latency facts from a loaded MaskModel (for a cascade: its parts')."""
    if hasattr(model, "first"):
        lat = model.latency_samples
        return {"name": model.name, "cascade": [manifest_info(model.first),
                                                manifest_info(model.second)],
                "sample_rate": model.sample_rate, "latency_samples": lat,
                "latency_ms": 1000.0 * lat / model.sample_rate, "path": str(model.path),
                "sha256": _sha256(model.path)}
    m = model.manifest
    lat = m.latency_samples
    return {"name": m.name, "n_fft": m.n_fft, "hop": m.hop, "model_bins": m.model_bins,
            "context_frames": m.context_frames, "lookahead_frames": m.lookahead_frames,
            "sample_rate": m.sample_rate, "latency_samples": lat,
            "latency_ms": 1000.0 * lat / m.sample_rate, "demo_only": m.demo_only,
            "path": str(model.path), "sha256": _sha256(model.path)}


def _sha256(path):
    from stemboard.models.runtime import sha256
    return sha256(path)[:16]


# -- an earlier commit, side by side --------------------------------------------
#: The commit issue 28 (speed) started from: "today's commit" of its ratios.
BASELINE_REV = "975e4d3"

#: The repository's folders that become the package (setup.py's package_dir).
_PACKAGE_DIRS = ("dsp", "plugin", "models", "presets")
_ABSOLUTE_IMPORT = re.compile(r"^(\s*)(from|import) stemboard\b(\.|\s)", re.MULTILINE)
# The lazy re-exports name their modules in strings ("stemboard.plugin": ...).
_MODULE_STRING = re.compile(r"""(["'])stemboard\.(?=[a-z_])""")


def load_baseline(rev=BASELINE_REV, name="stemboard_base"):
    """Import the package as it was at ``rev``, under the name ``name``.

    The package's own modules import each other relatively, so the files of
    ``rev`` (from ``git archive``) laid out as installed (``stemboard/`` with
    ``dsp/``, ``plugin/``, ``models/`` and ``presets/`` inside) import as a
    second, independent package in this process: both versions can then be
    timed round-robin on the same input, under the same load.

    Returns
    -------
    module
        The package ``name`` at ``rev``; its bundled weights are that commit's.
    """
    import importlib
    import io
    import subprocess
    import tarfile

    if name in sys.modules:
        return sys.modules[name]
    tmp = tempfile.TemporaryDirectory(prefix="stemboard-baseline-")
    _TMP.append(tmp)
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "stemboard",
                           *_PACKAGE_DIRS], capture_output=True, check=True, timeout=120).stdout
    src = Path(tmp.name) / "src"
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(src, filter="data")
    site = Path(tmp.name) / "site"
    site.mkdir()
    pkg = site / name
    (src / "stemboard").rename(pkg)
    for d in _PACKAGE_DIRS:
        (src / d).rename(pkg / d)
    # Since issue 27 the modules import each other absolutely (``from stemboard.dsp
    # import ...``), and the lazy re-exports (issue 25) name their modules in strings:
    # point both at ``name``, or the baseline would run this checkout's modules
    # (``base.StemSeparator`` was this checkout's class until session 35). Relative
    # imports (older commits) are left as they are.
    for path in pkg.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        new = _ABSOLUTE_IMPORT.sub(rf"\1\2 {name}\3", text)
        new = _MODULE_STRING.sub(rf"\1{name}.", new)
        if new != text:
            path.write_text(new, encoding="utf-8")
    sys.path.insert(0, str(site))
    return importlib.import_module(name)


# -- timing --------------------------------------------------------------------
def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median(xs):
    return float(statistics.median(xs))


def machine_info():
    import numpy
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "numpy": numpy.__version__}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        info["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def cpu_seconds():
    """``(busy, stolen)`` CPU seconds summed over the machine's CPUs since boot, from
    ``/proc/stat`` (Linux), or ``None``.  Stolen time is what a virtual machine's
    hypervisor gave to other guests while this one had work to run."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / tick, steal / tick


def git_rev():
    import subprocess
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


# -- output --------------------------------------------------------------------
def table(headers, rows, floatfmt=None):
    """A GitHub markdown table as a string (floats to 3 significant digits, or ``floatfmt``)."""
    def fmt(v):
        if isinstance(v, float):
            if v != v:
                return "—"
            if floatfmt:
                return format(v, floatfmt)
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def save_json(path, obj):
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(obj, indent=2, default=float) + "\n")
        print(f"[bench] wrote {path}", file=sys.stderr)


# -- a plain streaming inverse STFT (the engine fuses its own with the masking) --
# Test and bench reference only: tests/test_dsp.py checks the streaming analyzer
# with it, bench/stft.py times a streaming round trip.
from stemboard.dsp.kernels import overlap_add  # noqa: E402


class StreamingSynthesizer:
    """Overlap-add frames into samples; each frame completes ``hop`` samples.

    The raw output starts ``grid.pad`` samples before sample 0 of the signal
    (the grid's leading silence); callers trim it.
    """

    def __init__(self, grid, num_channels: int):
        self.grid = grid
        self.num_channels = num_channels
        self.reset()

    def reset(self):
        self._ola = np.zeros((self.num_channels, self.grid.n_fft), np.float32)

    def push(self, spec: np.ndarray) -> np.ndarray:
        """Feed (channels, k, bins) complex64; return (channels, k * hop) float32."""
        spec = np.ascontiguousarray(spec, dtype=np.complex64)
        return overlap_add(spec, self._ola, self.grid.n_fft, self.grid.hop,
                           self.grid.synthesis_window)
