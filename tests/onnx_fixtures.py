"""Small real ONNX mask models built with ``onnx.helper`` for the engine's tests.

They are test fixtures, never offered to users as separation: each stem owns a
frequency band, and a context-dependent term (the mean magnitude over the
model's receptive field) shifts the softmax, so streaming bugs in the context
handling change the output.
"""
import json

import numpy as np

STEMS = ["vocals", "drums", "bass", "other"]


def band_split_model(path, *, model_bins=513, context=3, lookahead=2, stems=STEMS,
                     n_fft=2048, hop=512, sample_rate=44100, manifest_overrides=None,
                     bins_in_graph=None, stateful=False, paired=False):
    """Write ``path`` (.onnx) and its manifest (.json); return the ONNX path.

    ``stateful=True`` writes the same model as a stateful graph: input
    ``state_0`` (batch, bins, k - 1) holds the previous input frames, which are
    put before ``magnitude`` and returned as ``state_0_next``.

    ``paired=True`` writes a ``"stereo_pair"`` graph: it takes 2 * model_bins
    rows (the signal's features, then its partner's), and the partner's mean
    shifts the logits too, so a wrong pairing changes the output.
    """
    import onnx
    from onnx import TensorProto, helper

    n_stems = len(stems)
    k = context + lookahead + 1
    rng = np.random.default_rng(0)
    # Per-stem band preference: stem s favours bins in its quarter of the range.
    centers = np.linspace(0, model_bins - 1, n_stems)
    f = np.arange(model_bins)
    bias = -((f[None, :] - centers[:, None]) / (model_bins / n_stems)) ** 2
    weight = rng.uniform(-2.0, 2.0, size=(n_stems, model_bins))
    bias_t = helper.make_tensor("bias", TensorProto.FLOAT, (1, n_stems, model_bins, 1),
                                bias.astype(np.float32).ravel())
    weight_t = helper.make_tensor("weight", TensorProto.FLOAT, (1, n_stems, model_bins, 1),
                                  weight.astype(np.float32).ravel())
    axes = helper.make_tensor("axes", TensorProto.INT64, (1,), [1])
    bins_dim = model_bins if bins_in_graph is None else bins_in_graph
    in_dim = 2 * bins_dim if paired else bins_dim
    nodes, inputs, outputs, extra_init = [], [], [], []
    source = "magnitude"
    if stateful:
        nodes = [
            helper.make_node("Concat", ["state_0", "magnitude"], ["full"], axis=2),
            helper.make_node("Slice", ["full", "starts", "ends", "time_axis"], ["state_0_next"]),
        ]
        extra_init = [helper.make_tensor("starts", TensorProto.INT64, (1,), [-(k - 1)]),
                      helper.make_tensor("ends", TensorProto.INT64, (1,), [2 ** 62]),
                      helper.make_tensor("time_axis", TensorProto.INT64, (1,), [2])]
        inputs = [helper.make_tensor_value_info("state_0", TensorProto.FLOAT,
                                                ["batch", in_dim, k - 1])]
        outputs = [helper.make_tensor_value_info("state_0_next", TensorProto.FLOAT,
                                                 ["batch", in_dim, k - 1])]
        source = "full"
    nodes += [
        helper.make_node("Unsqueeze", [source, "axes"], ["x4"]),
        helper.make_node("AveragePool", ["x4"], ["avg"], kernel_shape=[1, k], strides=[1, 1]),
    ]
    if paired:
        # avg (batch, 1, 2 * bins, t): the own half scaled by weight, the partner's by
        # weight2, both shifting the logits.
        w2 = rng.uniform(-2.0, 2.0, size=(n_stems, model_bins))
        extra_init += [
            helper.make_tensor("weight2", TensorProto.FLOAT, (1, n_stems, model_bins, 1),
                               w2.astype(np.float32).ravel()),
            helper.make_tensor("own_lo", TensorProto.INT64, (1,), [0]),
            helper.make_tensor("own_hi", TensorProto.INT64, (1,), [bins_dim]),
            helper.make_tensor("other_hi", TensorProto.INT64, (1,), [2 * bins_dim]),
            helper.make_tensor("bin_axis", TensorProto.INT64, (1,), [2])]
        nodes += [
            helper.make_node("Slice", ["avg", "own_lo", "own_hi", "bin_axis"], ["own"]),
            helper.make_node("Slice", ["avg", "own_hi", "other_hi", "bin_axis"], ["other"]),
            helper.make_node("Mul", ["own", "weight"], ["scaled1"]),
            helper.make_node("Mul", ["other", "weight2"], ["scaled2"]),
            helper.make_node("Add", ["scaled1", "scaled2"], ["scaled"])]
    else:
        nodes += [helper.make_node("Mul", ["avg", "weight"], ["scaled"])]
    nodes += [
        helper.make_node("Add", ["scaled", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["masks"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "band_split_fixture",
        [helper.make_tensor_value_info("magnitude", TensorProto.FLOAT, ["batch", in_dim, "time"]),
         *inputs],
        [helper.make_tensor_value_info("masks", TensorProto.FLOAT,
                                       ["batch", n_stems, bins_dim, "time_out"]), *outputs],
        initializer=[bias_t, weight_t, axes, *extra_init],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    manifest = {
        "format": "stemboard-mask-model",
        "version": 1,
        "name": "band-split-fixture",
        "description": "Test fixture: fixed band split, not a separation model.",
        "sample_rate": sample_rate,
        "n_fft": n_fft,
        "hop": hop,
        "model_bins": model_bins,
        "stems": list(stems),
        "context_frames": context,
        "lookahead_frames": lookahead,
        "input_normalization": {"type": "log1p", "scale": 1.0, "mean": 0.0, "std": 1.0},
        "demo_only": True,
    }
    if stateful:
        manifest.update(version=2, stateful=True)
    if paired:
        manifest.update(version=3, input_layout="stereo_pair")
    manifest.update(manifest_overrides or {})
    path.with_suffix(".json").write_text(json.dumps(manifest))
    return path


def segment_model(path, *, segment=64, overlap=8, context=True, model_bins=257,
                  n_fft=1024, hop=256, sample_rate=44100, high_band_rule="to_stem"):
    """A ``"stereo_joint"``, segmented 2-stem fixture (vocals / accompaniment).

    Per bin, the logits are ``w1 * log(1 + x) + w2 * log(1 + partner) + bias``,
    where ``partner`` is the other channel of the item's stereo pair; with
    ``context=True`` the segment's mean of ``log(1 + x)`` per bin is added (times
    ``w3``), so the masks depend on where segments start.  With
    ``context=False`` the graph is frame-wise, so segmented output must equal a
    whole-file masking exactly (:func:`segment_reference_masks`).
    """
    import onnx
    from onnx import TensorProto, helper

    w = _segment_weights(model_bins)
    init = [helper.make_tensor(k, TensorProto.FLOAT, (1, 2, model_bins, 1), v.ravel())
            for k, v in w.items()]
    init += [helper.make_tensor("one", TensorProto.FLOAT, (), [1.0]),
             helper.make_tensor("ax1", TensorProto.INT64, (1,), [1]),
             helper.make_tensor("pairs", TensorProto.INT64, (4,), [-1, 2, model_bins, 0]),
             helper.make_tensor("tile", TensorProto.INT64, (4,), [1, 2, 1, 1])]
    nodes = [
        helper.make_node("Add", ["magnitude", "one"], ["x1"]),
        helper.make_node("Log", ["x1"], ["lx"]),
        helper.make_node("Unsqueeze", ["lx", "ax1"], ["lx4"]),              # (B, 1, F, T)
        helper.make_node("Reshape", ["lx4", "pairs"], ["lp"]),              # (B/2, 2, F, T)
        helper.make_node("ReduceSum", ["lp", "ax1"], ["ls"], keepdims=1),   # (B/2, 1, F, T)
        helper.make_node("Tile", ["ls", "tile"], ["lt"]),                   # (B/2, 2, F, T)
        helper.make_node("Shape", ["lx4"], ["shape4"]),
        helper.make_node("Reshape", ["lt", "shape4"], ["sum4"]),            # (B, 1, F, T)
        helper.make_node("Sub", ["sum4", "lx4"], ["partner"]),
        helper.make_node("Mul", ["lx4", "w1"], ["a"]),
        helper.make_node("Mul", ["partner", "w2"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["ab"]),
        helper.make_node("Add", ["ab", "bias"], ["logits0"]),
    ]
    if context:
        nodes += [helper.make_node("ReduceMean", ["lx4"], ["mean"], axes=[3], keepdims=1),
                  helper.make_node("Mul", ["mean", "w3"], ["c"]),
                  helper.make_node("Add", ["logits0", "c"], ["logits"])]
    else:
        nodes += [helper.make_node("Identity", ["logits0"], ["logits"])]
    nodes += [helper.make_node("Softmax", ["logits"], ["masks"], axis=1)]
    graph = helper.make_graph(
        nodes, "segment_fixture",
        [helper.make_tensor_value_info("magnitude", TensorProto.FLOAT,
                                       ["batch", model_bins, "time"])],
        [helper.make_tensor_value_info("masks", TensorProto.FLOAT,
                                       ["batch", 2, model_bins, "time"])],
        initializer=init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    manifest = {
        "format": "stemboard-mask-model", "version": 4, "name": "segment-fixture",
        "description": "Test fixture: a segmented stereo-joint graph, not a separation model.",
        "sample_rate": sample_rate, "n_fft": n_fft, "hop": hop, "model_bins": model_bins,
        "stems": ["vocals", "accompaniment"],
        "context_frames": segment - 1, "lookahead_frames": segment - 1,
        "input_normalization": {"type": "none"},
        "high_band_rule": high_band_rule, "input_layout": "stereo_joint",
        "segment_frames": segment, "segment_overlap": overlap, "demo_only": True,
    }
    if high_band_rule == "to_stem":
        manifest["high_band_stem"] = "accompaniment"
    path.with_suffix(".json").write_text(json.dumps(manifest))
    return path


def _segment_weights(model_bins):
    rng = np.random.default_rng(1)
    f = np.linspace(-1.0, 1.0, model_bins)
    return {"w1": rng.uniform(-1.5, 1.5, (1, 2, model_bins, 1)).astype(np.float32),
            "w2": rng.uniform(-1.0, 1.0, (1, 2, model_bins, 1)).astype(np.float32),
            "w3": rng.uniform(-1.0, 1.0, (1, 2, model_bins, 1)).astype(np.float32),
            "bias": np.stack([2 * f, -2 * f])[None, :, :, None].astype(np.float32)}


def segment_reference_masks(mag, model_bins):
    """The frame-wise (``context=False``) fixture's masks in numpy.

    ``mag`` (channels, model_bins, frames) of one stream -> (channels, 2, bins, frames).
    """
    w = _segment_weights(model_bins)
    lx = np.log1p(mag.astype(np.float64))
    partner = lx[::-1] if lx.shape[0] == 2 else lx     # mono: a pair of itself
    logits = (w["w1"][0][None] * lx[:, None] + w["w2"][0][None] * partner[:, None]
              + w["bias"][0][None])
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
