"""Ship an int8 copy of an fp32 mask graph: calibrate, quantise, score, write.

    python -m stemboard.train.quantize models/weights/offline-fp32.onnx models/weights/offline.onnx

1. Calibration: the fp32 model separates the 80 MUSDB18-7 ``train`` excerpts
   through the engine (:class:`~stemboard.plugin.StemSeparator`, as
   ``stemboard separate`` runs it), and every graph call's inputs are kept: the
   features and the carried states, so the states' scales see real states.  The
   ``valid`` excerpts are not used.
2. :func:`stemboard.models.convert.quantize.quantize` (the recipe is there).
3. Both graphs are scored on the 14 ``valid`` excerpts (the pipeline's
   BSSEval v4 SDR); the int8 manifest records its own scores and the fp32 ones.
4. The graph, then its manifest, are written whole (temporary file and rename).

The manifest is the source's with the name, description and metrics replaced and
``source`` added: the source graph's sha256, the recipe and the int8 graph's
sha256, which :class:`~stemboard.models.MaskModel` checks on every load.
Deterministic: the same source, data and onnxruntime give the same bytes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime

from stemboard.models import MaskModel
from stemboard.models.convert.graphs import write_whole
from stemboard.models.convert.quantize import quantize
from stemboard.plugin import StemSeparator
from stemboard.train.data import SAMPLE_RATE, decode_musdb
from stemboard.train.evaluate import evaluate_systems, onnx_system, separation_speed

#: What the manifest records as the recipe (the details: models/convert/quantize.py).
RECIPE = ("stemboard.models.convert.quantize: onnxruntime quantize_static, QDQ, "
          "Conv/Relu/MatMul only: 7-bit per-channel int8 weights, uint8 activations with "
          "MinMax scales from the 80 MUSDB18-7 train excerpts; front end, carried states, "
          "residual adds, logits and softmax fp32")


class _Recorder(MaskModel):
    """A model that keeps every stateful graph call's inputs."""

    def __init__(self, *args, **kwargs):
        self.feeds = []
        super().__init__(*args, **kwargs)
        self.feeds.clear()  # the load-time probe run is not music

    def step(self, features, state):
        m = self.manifest
        x = self._input(features)
        feed = {m.input_name: np.array(x, np.float32)}
        feed.update({name: np.array(s) for (name, _, _), s in zip(self._states, state)})
        self.feeds.append(feed)
        return super().step(features, state)


def calibration_feeds(src, tracks, log=print) -> list[dict]:
    """The graph inputs of ``src`` separating each track's mixture (sum of stems)."""
    model = _Recorder(src)
    if not model.stateful:
        raise ValueError(f"{src}: calibration records stateful graph calls only")
    for i, track in enumerate(tracks):
        StemSeparator(model).separate(track["stems"].sum(0), SAMPLE_RATE)
        if (i + 1) % 20 == 0:
            log(f"[quantize] calibration: {i + 1}/{len(tracks)} excerpts")
    return model.feeds


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", help="fp32 graph with its .json manifest beside")
    ap.add_argument("dst", help="int8 graph to write (its .json manifest beside)")
    ap.add_argument("--data", default="../shared/data", help="folder holding musdb18-7/")
    ap.add_argument("--cache", default="runs/cache", help="decoded-audio cache")
    ap.add_argument("--name", help="manifest name (default: stemboard-<dst stem>)")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        run(args, argv)
    except (OSError, ValueError) as e:  # missing files or data, ModelError, QuantizeError
        raise SystemExit(f"[quantize] {e}")


def run(args, argv=None):
    """Calibrate, quantise, score and write (see the module notes)."""
    src, dst = Path(args.src), Path(args.dst)
    if src.resolve() == dst.resolve():
        raise SystemExit("src and dst must differ: the fp32 graph is the recipe's input")
    src_bytes = src.read_bytes()
    manifest = json.loads(src.with_suffix(".json").read_text())
    log = print
    feeds = calibration_feeds(src, decode_musdb(args.data, args.cache, "train", log), log)
    log(f"[quantize] {len(feeds)} calibration runs, "
        f"{sum(f[manifest['input_name']].shape[-1] for f in feeds)} frames")
    out = quantize(src_bytes, feeds)
    del feeds
    with tempfile.TemporaryDirectory(prefix="stemboard-quantize-") as tmp:
        trial = Path(tmp) / dst.name
        trial.write_bytes(out)
        new = {**manifest, "name": args.name or f"stemboard-{dst.stem}"}
        new["description"] = (f"{manifest['description']} int8 weights and activations, "
                              f"quantised from {src.name} (python -m "
                              "stemboard.train.quantize).")
        new["source"] = {
            "quantized_from": src.name,
            "quantized_from_sha256": _sha(src_bytes),
            "recipe": RECIPE,
            "converter": "python -m stemboard.train.quantize " + " ".join(
                sys.argv[1:] if argv is None else argv),
            "onnxruntime": onnxruntime.__version__,
            "onnx_sha256": _sha(out),
        }
        trial.with_suffix(".json").write_text(json.dumps(new, indent=2) + "\n")
        valid = decode_musdb(args.data, args.cache, "valid", log)
        table = evaluate_systems(valid, {"int8": onnx_system(MaskModel(trial)),
                                         "fp32": onnx_system(MaskModel(src))}, log=log)
        metrics = {k: v for k, v in table["int8"].items() if k != "per_track"}
        metrics["fp32"] = {k: table["fp32"][k] for k in ("vocals", "drums", "bass", "other",
                                                          "avg")}
        metrics["speed"] = separation_speed(MaskModel(trial))
        metrics["eval"] = manifest.get("metrics", {}).get("eval", "")
        new["metrics"] = metrics
        log(f"[quantize] valid SDR avg: int8 {metrics['avg']:.3f}, "
            f"fp32 {metrics['fp32']['avg']:.3f} dB")
    # The graph first: a manifest whose sha256 names a graph not yet written would
    # refuse the old one (MaskModel checks), never run the wrong one.
    write_whole(dst, out)
    write_whole(dst.with_suffix(".json"), (json.dumps(new, indent=2) + "\n").encode())
    log(f"[quantize] wrote {dst} ({len(out) / 1e6:.2f} MB) and its manifest")


if __name__ == "__main__":
    main()
