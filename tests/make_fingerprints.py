"""Write ``tests/data/shipped_fingerprints.json``: what the bundled models output on
a fixed signal, compactly, so ``tests/test_fingerprints.py`` can pin it.

Run it only when a model's output is meant to change (a new or retrained model),
and say so in the commit::

    PYTHONPATH=... python tests/make_fingerprints.py

Per bundled model and case: each output's sum, energy (sum of squares) and
``N_PICKS`` sample values at fixed indices.  The cases cover the paths a user
can reach: all stems offline (the last stem is the input minus the others),
two stems streamed in 512-sample blocks, a remix with gains and dry/wet, binary
masks, and another sample rate (resampled to the model's and back).
"""
import json
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "data" / "shipped_fingerprints.json"
SR = 44100
SECONDS = 3.0
N_PICKS = 32


def fixed_signal(seconds=SECONDS, sr=SR):
    """(2, n) float32: harmonic tones, a bass line, noise bursts; left and right differ."""
    rng = np.random.default_rng(1234)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    x = np.zeros((2, n))
    for f0, a in ((55.0, 0.2), (110.0, 0.1), (440.0, 0.08), (1320.0, 0.05), (5000.0, 0.03)):
        x += a * np.sin(2 * np.pi * f0 * t + rng.uniform(0, 6, (2, 1)))
    env = np.exp(-((t * 4) % 1.0) * 20)
    x += 0.1 * env * rng.standard_normal((2, n))
    x[1] *= 0.8
    return x.astype(np.float32)


def _stream(sep, x, sr, stems):
    parts = [sep.separate(x[:, i:i + 512], sr, stems=stems, buffer_size=512, reset=False)
             for i in range(0, x.shape[1], 512)]
    tail = sep.flush_stems()
    return {s: np.concatenate([p[s] for p in parts] + [tail[s]], axis=1) for s in stems}


def cases(StemSeparator, model):
    """``{case: {output name: (channels, n) float32}}`` for one model."""
    x = fixed_signal()
    sep = StemSeparator(model, num_threads=1)
    stems = list(sep.stems)
    out = {"separate": sep.separate(x, SR)}
    out["stream_two"] = _stream(sep, x, SR, stems[:2])
    sep.set_gain(stems[0], -6.0)
    sep.set_gain(stems[-1], float("-inf"))
    sep.mix = 0.75
    out["remix"] = {"mix": sep.process(x, SR)}
    binary = StemSeparator(model, num_threads=1, mask_mode="binary")
    out["binary"] = binary.separate(x, SR)
    x48 = fixed_signal(sr=48000)
    out["resampled_48k"] = StemSeparator(model, num_threads=1).separate(x48, 48000)
    return out


def fingerprint(y):
    """``y``'s shape, sum, sum of magnitudes, energy, peak and ``N_PICKS`` samples
    (of the flattened array, evenly spaced from the first to the last)."""
    y = np.asarray(y, np.float64)
    flat = y.reshape(-1)
    idx = np.linspace(0, flat.size - 1, N_PICKS).round().astype(int)
    return {"shape": list(y.shape), "sum": float(flat.sum()),
            "abs_sum": float(np.abs(flat).sum()), "energy": float((flat * flat).sum()),
            "peak": float(np.abs(flat).max()), "values": flat[idx].tolist()}


def dumps(data):
    """JSON with one line per output's fingerprint (short diffs, small file)."""
    out = ['{"signal": %s, "models": {' % json.dumps(data["signal"])]
    models = list(data["models"].items())
    for i, (model, cases) in enumerate(models):
        out.append(f" {json.dumps(model)}: {{")
        for j, (case, outs) in enumerate(cases.items()):
            out.append(f"  {json.dumps(case)}: {{")
            items = list(outs.items())
            for k, (name, fp) in enumerate(items):
                out.append(f"   {json.dumps(name)}: {json.dumps(fp)}"
                           + ("," if k < len(items) - 1 else ""))
            out.append("  }" + ("," if j < len(cases) - 1 else ""))
        out.append(" }" + ("," if i < len(models) - 1 else ""))
    out.append("}}")
    return "\n".join(out) + "\n"


def fingerprints(StemSeparator, models):
    return {m: {case: {name: fingerprint(y) for name, y in outs.items()}
                for case, outs in cases(StemSeparator, m).items()}
            for m in models}


def main():
    from stemboard import StemSeparator
    from stemboard.models import bundled_models

    data = {"signal": f"fixed_signal({SECONDS}), seed 1234", "models":
            fingerprints(StemSeparator, list(bundled_models()))}
    OUT.parent.mkdir(exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(dumps(data))
    tmp.replace(OUT)
    print(f"wrote {OUT} ({', '.join(data['models'])})", file=sys.stderr)


if __name__ == "__main__":
    main()
