"""Static int8 quantisation of a MaskNet graph (the shipped ``offline`` and ``live``).

On 2 cores the fp32 graph's GEMMs already run near the machine's fp32 peak, and
ONNX Runtime's call is over half of a separation (issue 28, docs/benchmarks.md).
Its int8 kernels (VNNI where the CPU has it) do the same multiplies in about half
the time, so the recipe quantises what is GEMM-shaped and keeps the rest in fp32:

- the 192-channel layers (the 1x1 input projection, the dilated convolutions) and
  the output ``MatMul``: 7-bit int8 weights, one scale per output channel, and uint8
  activations with *fixed* scales, the min/max over calibration runs of the fp32
  graph (ONNX Runtime's ``quantize_static``, QDQ format);
- fp32: everything else.  The frequency front end (1 and 16 channels, where the
  int8 convolution was 3.5x slower than fp32); the ops that only move data
  (``Concat``, ``Slice``, ``Transpose``) and the residual ``Add``, so the carried
  states stay fp32 (quantised, a state left one call through a DequantizeLinear and
  entered the next through a QuantizeLinear of another scale: rounded twice, where
  one long call rounds once, and masks moved by up to 0.5 between one call and
  one-frame calls); the output layer's logits (``MatMul`` writes float:
  8-bit logits cost 0.04 dB, and the masks moved by up to 0.4), its bias and the
  softmax over stems.  The output layer is then written as one
  ``MatMulIntegerToFloat`` node (:func:`fuse_output_layer`).

Fixed scales and fp32 states keep "streaming equals offline" exact: a frame's
activations are rounded once, the same way whichever call it arrives in, and
integer sums do not depend on how a call is blocked (a dynamic, per-call scale
moved streamed output by 3.4e-3).

:func:`quantize` returns the int8 graph's bytes; ``python -m stemboard.train.quantize``
records the calibration feeds from the MUSDB18-7 training excerpts, scores the
result and writes it with its manifest.  Needs the ``onnx`` package (the ``test`` or
``train`` extra).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from stemboard.models.convert.graphs import prune

#: Layers with fewer input or output channels than this stay fp32: ONNX Runtime's
#: int8 convolution does not pay for itself on the 1- and 16-channel front end.
MIN_INT8_CHANNELS = 64
#: The op types quantised (each convolution's ReLU is fused into it).
QUANTIZED_OPS = ("Conv", "Relu", "MatMul")
#: Ops after the output layer's MatMul (bias, softmax over stems) stay fp32.
TAIL_OPS = ("Add", "Reshape", "ReduceMax", "Sub", "Exp", "ReduceSum", "Div")
#: A guard against a broken calibration, not a quality bar (valid SDR is): the int8
#: masks may differ from the fp32 graph's by at most this much on average.  The
#: shipped ``offline``: about 0.01; masks that ignored their input: about 0.25.
MAX_MEAN_MASK_CHANGE = 0.05


class QuantizeError(ValueError):
    """The graph or the calibration feeds are not what this recipe expects."""


def _name_nodes(model):
    """Give unnamed nodes names: ``nodes_to_exclude`` selects nodes by name."""
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"


def fp32_nodes(model) -> list[str]:
    """Names of the nodes the recipe keeps in fp32 (see the module notes).

    Parameters
    ----------
    model : onnx.ModelProto
        A MaskNet graph with named nodes; ends in a ``MatMul`` (frame-major masks).
    """
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    keep = []
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    if len(matmuls) != 1:
        raise QuantizeError(f"expected one MatMul (the output layer of a frame-major "
                            f"graph), found {len(matmuls)}")
    for node in model.graph.node:
        if node.op_type == "Conv":
            out_ch, in_ch = weights[node.input[1]][:2]
            if min(out_ch, in_ch) < MIN_INT8_CHANNELS:
                keep.append(node.name)
        elif node.op_type == "Relu":
            conv = producer.get(node.input[0])
            if conv is not None and conv.name in keep:
                keep.append(node.name)
    # Everything downstream of the output layer.
    frontier, tail = [matmuls[0].output[0]], []
    while frontier:
        name = frontier.pop()
        for node in model.graph.node:
            if name in node.input and node.name not in tail:
                if node.op_type not in TAIL_OPS:
                    raise QuantizeError(f"unexpected {node.op_type} after the output layer")
                tail.append(node.name)
                frontier.extend(node.output)
    return keep + tail


class _Feeds:
    """The calibration feeds as ONNX Runtime's ``CalibrationDataReader`` wants them."""

    def __init__(self, feeds):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def quantize(src: bytes, feeds: list[dict], *, check: list[dict] | None = None) -> bytes:
    """Quantise a MaskNet graph with fixed activation scales from ``feeds``.

    Parameters
    ----------
    src : bytes
        The fp32 graph (frame-major, stateful or not).
    feeds : list of dict
        Calibration runs: {graph input name: ndarray}, the graph's own inputs
        (``magnitude`` (batch, bins, time) float32 and, for a stateful graph, every
        ``state_i`` (batch, channels, frames)) as the engine feeds them.
    check : list of dict, optional
        Runs to compare the two graphs' masks on (default: eight spread over ``feeds``).

    Returns
    -------
    bytes
        The int8 graph.  QuantizeError if its masks differ from the fp32 graph's by
        more than :data:`MAX_MEAN_MASK_CHANGE` on average.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not feeds:
        raise QuantizeError("no calibration feeds")
    with tempfile.TemporaryDirectory(prefix="stemboard-quantize-") as tmp:
        raw, pre, dst = (Path(tmp) / n for n in ("src.onnx", "pre.onnx", "int8.onnx"))
        raw.write_bytes(src)
        quant_pre_process(str(raw), str(pre))
        model = onnx.load(str(pre))
        _name_nodes(model)
        onnx.save(model, str(pre))
        quantize_static(
            str(pre), str(dst), _Feeds(feeds), quant_format=QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
            # 7-bit weights: CPUs without VNNI multiply uint8 by int8 with
            # VPMADDUBSW, whose int16 pair sums saturate at full range (255 * 127 * 2
            # > 32767); at 7 bits they cannot, so every x86 CPU gets the same exact
            # integer sums.  Valid SDR: -0.02 dB against -0.004 at 8 bits (offline).
            reduce_range=True,
            op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_exclude=fp32_nodes(model),
            # (Not "CalibMaxIntermediateOutputs": onnxruntime 1.32 drops, rather
            # than reduces, the runs it has collected when that count is reached.)
            extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul"]})
        model = onnx.load(str(dst))
    fuse_output_layer(model)
    onnx.checker.check_model(model)
    out = model.SerializeToString()
    _check_masks(src, out, check or feeds[::max(1, len(feeds) // 8)])
    return out


def fuse_output_layer(model):
    """Write the output layer as one ``MatMulIntegerToFloat`` (com.microsoft) node.

    ``quantize_static`` leaves it as DequantizeLinear (activations, weights) ->
    MatMul -> Add (bias).  ONNX Runtime fuses that pattern when it builds a session,
    but not always: in the one-frame streaming session (fixed shapes) it made the
    MatMul and Add an fp32 Gemm instead, fed by a DequantizeLinear of the whole
    192 x 2052 weight matrix on every call, 0.87 ms of a 1.6 ms step (three times
    the fp32 graph's step).  Written out, every session runs the int8 kernel on
    prepacked weights, with the bias added in the same pass; the masks are the same
    to the bit as the session-time fusion's.

    Parameters
    ----------
    model : onnx.ModelProto
        The QDQ graph; changed in place.
    """
    from onnx import helper

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    matmul = next(n for n in graph.node if n.op_type == "MatMul")
    add = [n for n in graph.node if n.op_type == "Add" and matmul.output[0] in n.input]
    dq_a, dq_b = (producer.get(i) for i in matmul.input)
    if (len(add) != 1 or dq_a is None or dq_b is None
            or {dq_a.op_type, dq_b.op_type} != {"DequantizeLinear"}):
        raise QuantizeError("the output layer is not DequantizeLinear -> MatMul -> Add")
    bias = next(i for i in add[0].input if i != matmul.output[0])
    fused = helper.make_node(
        "MatMulIntegerToFloat",
        [dq_a.input[0], dq_b.input[0], dq_a.input[1], dq_b.input[1], dq_a.input[2],
         dq_b.input[2], bias],
        [add[0].output[0]], name="output_layer", domain="com.microsoft")
    nodes = [fused if n is matmul else n for n in graph.node if n is not add[0]]
    del graph.node[:]
    graph.node.extend(nodes)
    prune(graph)  # the weights' DequantizeLinear now feeds nothing
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def _check_masks(old: bytes, new: bytes, runs: list[dict]):
    import onnxruntime as ort

    sessions = [ort.InferenceSession(b, providers=["CPUExecutionProvider"]) for b in (old, new)]
    name = sessions[0].get_outputs()[0].name
    change = float(np.mean([np.abs(np.subtract(*(s.run([name], feeds)[0] for s in sessions)))
                            .mean() for feeds in runs]))
    if not np.isfinite(change) or change > MAX_MEAN_MASK_CHANGE:
        raise QuantizeError(f"the int8 masks differ from the fp32 ones by {change:.3g} "
                            f"on average (at most {MAX_MEAN_MASK_CHANGE} allowed)")
