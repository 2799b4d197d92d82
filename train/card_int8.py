"""The model card's section on the int8 graphs that ship as ``offline`` and ``live``,
written from their manifests (``python -m stemboard.train.quantize`` records the
source's sha256, the recipe and both graphs' valid scores there)."""
from __future__ import annotations

import json
from pathlib import Path

STEMS = ("vocals", "drums", "bass", "other", "avg")


def int8_section(folder) -> list:
    """Markdown lines for the quantised models in ``folder``; empty when there are none."""
    folder = Path(folder)
    rows = []
    for name in ("offline", "live"):
        path = folder / f"{name}.json"
        manifest = json.loads(path.read_text()) if path.is_file() else {}
        source = manifest.get("source", {})
        if "quantized_from" in source:
            rows.append((name, manifest, source))
    if not rows:
        return []
    lines = []
    add = lines.append
    add("### int8 graphs: what ships as `offline` and `live`")
    add("")
    add("The tables above score the fp32 graphs the pipeline trained; they ship as "
        "`offline-fp32` and `live-fp32`. `offline` and `live` are their int8 copies "
        "(issue 28: ONNX Runtime's call was over half of a separation, and its int8 "
        "kernels do the same multiplies in about half the time), made by "
        "`python -m stemboard.train.quantize` with the recipe in "
        "`stemboard/models/convert/quantize.py`:")
    add("")
    add("- the 1×1 input projection, the five dilated convolutions and the output layer "
        "in int8: 7-bit weights (one scale per output channel; 7 bits so that CPUs "
        "without VNNI cannot saturate their 16-bit pair sums) and uint8 activations with "
        "fixed scales, the min/max over the fp32 graph's calls while it separated the 80 "
        "`train` excerpts (the `valid` ones are not used);")
    add("- in fp32: the frequency front end (1 and 16 channels), the ops that only move "
        "data and the residual additions (so the states carried between calls stay fp32), "
        "the logits, their bias and the softmax.")
    add("")
    add("Activations are rounded once, at fixed scales, and integer sums do not depend on "
        "how a call is cut, so streamed output equals offline output bit for bit "
        "(`tests/test_quantize.py`; `bench/equivalence.py --self` on the valid excerpts). "
        "Scored the same way as above, both graphs in one run:")
    add("")
    add("| model | vocals | drums | bass | other | avg | fp32 avg | int8 − fp32 |")
    add("|---|---|---|---|---|---|---|---|")
    for name, manifest, _ in rows:
        m = manifest["metrics"]
        fp32 = m["fp32"]
        cells = " | ".join(f"{m[s]:.2f}" for s in STEMS)
        add(f"| {name} | {cells} | {fp32['avg']:.2f} | {m['avg'] - fp32['avg']:+.3f} |")
    add("")
    add("Each manifest records the source graph's sha256 and its own (checked on every "
        "load), the recipe and the onnxruntime version that wrote it; the same source, "
        "data and onnxruntime give the same bytes. Speed: docs/benchmarks.md (issue 28).")
    add("")
    return lines
