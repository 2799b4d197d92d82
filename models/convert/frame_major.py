"""Rewrite a mask graph to emit its masks frame-major (manifest ``mask_layout: "frames"``).

The MaskNet graphs end in a 1x1 convolution over the hidden state, (batch,
hidden, time) -> (batch, stems * bins, time), a reshape to (batch, stems, bins,
time) and a softmax over the stems.  The engine's overlap-add reads the masks
frame by frame, so in that layout every read strides through memory; transposing
the masks after the graph costs about what reading them in order saves (issue
28, docs/benchmarks.md).  Here the convolution becomes a ``MatMul`` on the
transposed hidden state (a tenth of the masks' size): the graph then emits
(batch, time, stems, bins) with no transpose of the masks at all, and the same
softmax runs over axis 2.  The weights are the same numbers.

    python -m stemboard.models.convert.frame_major models/weights/offline.onnx

rewrites the graph and its manifest in place (each written whole, then renamed),
after checking that the new graph's masks equal the old one's, transposed, on a
random input.  Needs the ``onnx`` package (the ``test`` or ``train`` extra).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from stemboard.models.convert.graphs import prune, write_whole
from stemboard.models.manifest import Manifest

#: The old tail, from the 1x1 convolution to the masks: the ops the rewrite replaces.
TAIL_OPS = {"Conv", "Constant", "Shape", "Gather", "Unsqueeze", "Concat", "Reshape", "ReduceMax",
            "Sub", "Exp", "ReduceSum", "Div"}


class ConvertError(ValueError):
    """The graph is not one this rewrite understands."""


def _consumers(graph):
    out = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def _find_tail(graph, output):
    """(conv node, [tail nodes]) of a MaskNet graph's ``output``; ConvertError otherwise."""
    producer = {o: n for n in graph.node for o in n.output}
    div = producer.get(output)
    if div is None or div.op_type != "Div":
        raise ConvertError(f"output {output!r} is not made by a softmax's Div")
    # Walk back from the masks to the convolution that feeds the reshape.
    tail, stack, conv = [], [div], None
    seen = set()
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if n.op_type not in TAIL_OPS:
            raise ConvertError(f"unexpected {n.op_type} node {n.name!r} between the masks and "
                               "the last convolution")
        tail.append(n)
        if n.op_type == "Conv":
            if conv is not None and conv is not n:
                raise ConvertError("more than one convolution in the masks' tail")
            conv = n
            continue
        stack.extend(producer[i] for i in n.input if i in producer)
    if conv is None:
        raise ConvertError("no convolution feeds the masks")
    return conv, tail


def frame_major_model(model, *, stems: int, bins: int):
    """A copy of the ONNX ``model`` whose ``masks`` are (batch, time, stems, bins).

    Parameters
    ----------
    model : onnx.ModelProto
        A MaskNet export: ... -> Conv(1x1) -> Reshape(batch, stems, bins, time)
        -> softmax over axis 1 (ReduceMax, Sub, Exp, ReduceSum, Div) -> masks.
    stems, bins : int
        From the manifest.

    Returns
    -------
    onnx.ModelProto
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    out_name = g.output[0].name
    conv, tail = _find_tail(g, out_name)
    inits = {i.name: i for i in g.initializer}
    if len(conv.input) != 3 or conv.input[1] not in inits or conv.input[2] not in inits:
        raise ConvertError("the last convolution must have constant weights and bias")
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    w = numpy_helper.to_array(inits[conv.input[1]])
    b = numpy_helper.to_array(inits[conv.input[2]])
    if (w.ndim != 3 or w.shape[2] != 1 or attrs.get("group", 1) != 1
            or any(d != 1 for d in attrs.get("dilations", [1]))
            or any(p != 0 for p in attrs.get("pads", [0, 0]))
            or any(s != 1 for s in attrs.get("strides", [1]))):
        raise ConvertError(f"the last convolution is not a plain 1x1 (weights {w.shape}, "
                           f"{attrs})")
    if w.shape[0] != stems * bins:
        raise ConvertError(f"the last convolution has {w.shape[0]} outputs; the manifest's "
                           f"{stems} stems x {bins} bins need {stems * bins}")
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    hidden = conv.input[0]
    dead = {id(n) for n in tail}
    keep = [n for n in g.node if id(n) not in dead]
    p = "/frame_major/"
    consts = [numpy_helper.from_array(np.ascontiguousarray(w[:, :, 0].T.astype(np.float32)),
                                      p + "weight"),
              numpy_helper.from_array(b.astype(np.float32), p + "bias"),
              numpy_helper.from_array(np.array([0, 0, stems, bins], np.int64), p + "shape"),
              numpy_helper.from_array(np.array([2], np.int64), p + "axes")]
    reduce_max = (helper.make_node("ReduceMax", [p + "logits"], [p + "max"], keepdims=1,
                                   axes=[2]) if opset < 18 else
                  helper.make_node("ReduceMax", [p + "logits", p + "axes"], [p + "max"],
                                   keepdims=1))
    reduce_sum = (helper.make_node("ReduceSum", [p + "exp", p + "axes"], [p + "sum"], keepdims=1)
                  if opset >= 13 else
                  helper.make_node("ReduceSum", [p + "exp"], [p + "sum"], keepdims=1, axes=[2]))
    new = [
        # (batch, hidden, time) -> (batch, time, hidden): a tenth of the masks' size.
        helper.make_node("Transpose", [hidden], [p + "hidden_t"], perm=[0, 2, 1]),
        helper.make_node("MatMul", [p + "hidden_t", p + "weight"], [p + "matmul"]),
        helper.make_node("Add", [p + "matmul", p + "bias"], [p + "flat"]),
        # 0 keeps the input's dimension: (batch, time, stems * bins) -> (batch, time, stems, bins)
        helper.make_node("Reshape", [p + "flat", p + "shape"], [p + "logits"]),
        reduce_max,
        helper.make_node("Sub", [p + "logits", p + "max"], [p + "shifted"]),
        helper.make_node("Exp", [p + "shifted"], [p + "exp"]),
        reduce_sum,
        helper.make_node("Div", [p + "exp", p + "sum"], [out_name]),
    ]
    del g.node[:]
    g.node.extend(keep + new)
    used = {i for n in g.node for i in n.input}
    kept_inits = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept_inits + consts)
    # Constant nodes and value_info of the old tail are now unused.
    prune(g)
    out = g.output[0]
    dims = out.type.tensor_type.shape.dim
    old = [(d.dim_param, d.dim_value) for d in dims]
    new_dims = [old[0], old[3], (None, stems), (None, bins)]
    for d, (param, value) in zip(dims, new_dims):
        d.Clear()
        if param:
            d.dim_param = param
        else:
            d.dim_value = value
    produced = {o for n in g.node for o in n.output}
    keep_vi = [v for v in g.value_info if v.name in used or v.name in produced]
    del g.value_info[:]
    g.value_info.extend(keep_vi)
    onnx.checker.check_model(model)
    return model


def _check_same_masks(old_bytes, new_bytes, manifest: dict, *, atol=1e-5):
    """Run both graphs on the same random features; ConvertError unless the new masks
    are the old ones transposed (within ``atol``: the product is summed in another
    order)."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    frames = manifest["context_frames"] + manifest["lookahead_frames"] + 40
    feeds = {}
    old = ort.InferenceSession(old_bytes, providers=["CPUExecutionProvider"])
    for i in old.get_inputs():
        shape = [2 if not isinstance(d, int) and k == 0 else
                 (frames if not isinstance(d, int) else d) for k, d in enumerate(i.shape)]
        feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    new = ort.InferenceSession(new_bytes, providers=["CPUExecutionProvider"])
    a = old.run(None, feeds)
    b = new.run(None, feeds)
    names = [o.name for o in old.get_outputs()]
    for name, x, y in zip(names, a, b):
        if name == manifest.get("output_name", "masks"):
            x = x.transpose(0, 3, 1, 2)
        if x.shape != y.shape or not np.allclose(x, y, rtol=0, atol=atol):
            diff = np.abs(x - y).max() if x.shape == y.shape else f"shape {y.shape}"
            raise ConvertError(f"the rewritten graph's {name} differs from the original's "
                               f"({diff})")


def convert(onnx_path) -> dict:
    """Rewrite ``onnx_path`` and its ``.json`` manifest in place; returns the new manifest.

    Nothing is written unless the new graph's outputs match the old ones; the
    graph is written first, so an interruption between the two writes leaves a
    frame-major graph beside a bin-major manifest, which the runtime's probe
    run refuses by name (it never runs with the layouts mixed up).
    """
    import onnx

    onnx_path = Path(onnx_path)
    manifest_path = onnx_path.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("mask_layout", "bins") == "frames":
        raise ConvertError(f"{manifest_path}: mask_layout is already 'frames'")
    if manifest.get("segment_frames", 0):
        raise ConvertError(f"{manifest_path}: segmented graphs stay bin-major")
    old_bytes = onnx_path.read_bytes()
    model = frame_major_model(onnx.load_from_string(old_bytes),
                              stems=len(manifest["stems"]), bins=manifest["model_bins"])
    new_bytes = model.SerializeToString()
    _check_same_masks(old_bytes, new_bytes, manifest)
    # The manifest as it was (key order, extras), with the layout and the version that
    # introduced it: older readers refuse the file rather than misread its masks.
    new_manifest = {**manifest, "mask_layout": "frames"}
    new_manifest["version"] = Manifest.from_dict(
        new_manifest, source=str(manifest_path)).required_version()
    write_whole(onnx_path, new_bytes)
    write_whole(manifest_path, (json.dumps(new_manifest, indent=2) + "\n").encode())
    return new_manifest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("graphs", nargs="+", help=".onnx files with a .json manifest beside")
    args = ap.parse_args(argv)
    for path in args.graphs:
        try:
            convert(path)
        except (ConvertError, OSError) as e:
            raise SystemExit(f"{path}: {e}")
        print(f"{path}: masks now frame-major (mask_layout 'frames')")


if __name__ == "__main__":
    main()
