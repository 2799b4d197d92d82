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
        "mask_type": "soft",
        "demo_only": True,
    }
    if stateful:
        manifest.update(version=2, stateful=True)
    if paired:
        manifest.update(version=3, input_layout="stereo_pair")
    manifest.update(manifest_overrides or {})
    path.with_suffix(".json").write_text(json.dumps(manifest))
    return path
