"""The int8 recipe (stemboard.models.convert.quantize) and the int8 graphs it shipped."""
import hashlib
import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from stemboard.models import MaskModel, bundled_models  # noqa: E402
from stemboard.models.convert import quantize as q  # noqa: E402
from stemboard.plugin import StemSeparator  # noqa: E402

#: (int8 name, its fp32 source)
PAIRS = [("offline", "offline-fp32"), ("live", "live-fp32")]


def _fp32(name="offline-fp32"):
    return bundled_models()[name]


def _feeds(path, runs=3, frames=60, seed=0):
    """Graph inputs shaped as the engine feeds them: log1p-like features, real-size states."""
    model = MaskModel(path, num_threads=1)
    rng = np.random.default_rng(seed)
    bins = model.manifest.model_bins
    out = []
    for _ in range(runs):
        x = rng.gamma(0.5, 2.0, (2, bins, frames)).astype(np.float32)
        feed = {model.manifest.input_name: model.manifest.normalize(x)}
        state = model.zero_state(2)
        _, state = model.step(feed[model.manifest.input_name][:, :, :30], state)
        feed.update({name: s for (name, _, _), s in zip(model._states, state)})
        out.append(feed)
    return out


def test_recipe_keeps_the_front_end_and_the_softmax_in_fp32():
    model = onnx.load(str(_fp32()))
    q._name_nodes(model)
    keep = set(q.fp32_nodes(model))
    by_name = {n.name: n for n in model.graph.node}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    for conv in convs:
        small = min(weights[conv.input[1]][:2]) < q.MIN_INT8_CHANNELS
        assert (conv.name in keep) == small, conv.name
    assert sum(n.name not in keep for n in convs) == 6  # input projection + 5 dilated
    kept_ops = {by_name[n].op_type for n in keep}
    assert {"Exp", "ReduceMax", "ReduceSum", "Div", "Add"} <= kept_ops
    assert not any(by_name[n].op_type == "MatMul" for n in keep)


def test_quantize_gives_int8_layers_close_masks_and_stays_deterministic():
    src = _fp32().read_bytes()
    feeds = _feeds(_fp32())
    a = q.quantize(src, feeds)
    assert q.quantize(src, feeds) == a  # same inputs, same bytes
    model = onnx.load_from_string(a)
    # The output layer is one int8 node with its bias, whatever session runs it.
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MatMulIntegerToFloat") == 1 and "MatMul" not in ops
    int8 = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8) >= 7  # six convolutions and the output layer
    # 7-bit weights (reduce_range): no uint8 x int8 pair sum can saturate int16.
    for t in int8:
        w = onnx.numpy_helper.to_array(t)
        assert np.abs(w.astype(int)).max() <= 64, t.name
    import onnxruntime as ort

    sessions = [ort.InferenceSession(b, providers=["CPUExecutionProvider"]) for b in (src, a)]
    feed = _feeds(_fp32(), runs=1, seed=1)[0]
    old, new = (s.run(["masks"], feed)[0] for s in sessions)
    np.testing.assert_allclose(new.sum(axis=2), 1.0, atol=1e-5)  # still a softmax
    assert 0 < np.abs(new - old).mean() < q.MAX_MEAN_MASK_CHANGE


def test_quantize_refuses_bad_calibration(monkeypatch):
    with pytest.raises(q.QuantizeError, match="no calibration feeds"):
        q.quantize(_fp32().read_bytes(), [])
    monkeypatch.setattr(q, "MAX_MEAN_MASK_CHANGE", 0.0)
    with pytest.raises(q.QuantizeError, match="differ from the fp32 ones"):
        q.quantize(_fp32().read_bytes(), _feeds(_fp32(), runs=1))


@pytest.mark.parametrize("name,source", PAIRS)
def test_shipped_int8_graph_names_its_source_and_separates_like_it(name, source):
    models = bundled_models()
    manifest = json.loads(models[name].with_suffix(".json").read_text())
    src = manifest["source"]
    assert src["quantized_from"] == models[source].name
    assert src["quantized_from_sha256"] == hashlib.sha256(
        models[source].read_bytes()).hexdigest()
    assert src["onnx_sha256"] == hashlib.sha256(models[name].read_bytes()).hexdigest()
    assert abs(manifest["metrics"]["avg"] - manifest["metrics"]["fp32"]["avg"]) < 0.1
    # One int8 output layer, and no node whose output nothing reads (ONNX Runtime
    # runs dead nodes too: a dead weight DequantizeLinear cost 0.8 ms a step).
    graph = onnx.load(str(models[name])).graph
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    assert [n.name for n in graph.node if not any(o in used for o in n.output)] == []
    assert [n.op_type for n in graph.node].count("MatMulIntegerToFloat") == 1
    # The same stems, to within quantisation noise, and the same mixture.
    rng = np.random.default_rng(3)
    t = np.arange(3 * 44100) / 44100
    x = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t))
         + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    x = np.stack([x, np.roll(x, 300)])
    a = StemSeparator(MaskModel(name, num_threads=1)).separate(x, 44100)
    b = StemSeparator(MaskModel(source, num_threads=1)).separate(x, 44100)
    total = sum(np.sum(b[s] ** 2) for s in b)
    err = sum(np.sum((a[s] - b[s]) ** 2) for s in b)
    assert 10 * np.log10(total / err) > 20.0
    np.testing.assert_allclose(sum(a.values()), x, atol=1e-5)


def test_int8_manifest_refuses_an_edited_graph(tmp_path):
    src = bundled_models()["offline"]
    for suffix in (".onnx", ".json"):
        (tmp_path / f"m{suffix}").write_bytes(src.with_suffix(suffix).read_bytes())
    data = bytearray((tmp_path / "m.onnx").read_bytes())
    data[-100] ^= 1
    (tmp_path / "m.onnx").write_bytes(bytes(data))
    with pytest.raises(Exception, match="sha256"):
        MaskModel(tmp_path / "m.onnx")


def _masks_in_chunks(path, features, chunk):
    """The graph's masks for ``features`` run ``chunk`` frames a call, states carried."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    names = [o.name for o in session.get_outputs()]
    state = {i.name: np.zeros((features.shape[0], i.shape[1], i.shape[2]), np.float32)
             for i in inputs[1:]}
    out = []
    for t in range(0, features.shape[-1], chunk):
        got = dict(zip(names, session.run(None, {
            inputs[0].name: np.ascontiguousarray(features[:, :, t:t + chunk]), **state})))
        out.append(got["masks"])
        state = {k[: -len("_next")]: v for k, v in got.items() if k.endswith("_next")}
    return np.concatenate(out, axis=1)


@pytest.mark.parametrize("name", [p[0] for p in PAIRS])
def test_int8_masks_do_not_depend_on_how_calls_are_cut(name):
    # Bit for bit: activations are rounded once, at fixed scales, and the carried
    # states stay fp32 (quantised states were rounded twice across a call boundary,
    # and one-frame calls moved masks by up to 0.5 against one long call).
    path = bundled_models()[name]
    model = MaskModel(path, num_threads=1)
    rng = np.random.default_rng(7)
    t = np.arange(400)
    level = 1.0 + 0.8 * np.sin(2 * np.pi * t / 90)        # a slow swell, like music
    mag = rng.gamma(0.6, 1.5, (2, model.manifest.model_bins, t.size)) * level
    features = model.manifest.normalize(mag.astype(np.float32))
    whole = _masks_in_chunks(path, features, t.size)
    for chunk in (1, 2, 5, 64):
        np.testing.assert_array_equal(_masks_in_chunks(path, features, chunk), whole,
                                      err_msg=f"{chunk}-frame calls")


def test_quantize_command_names_what_is_missing(tmp_path):
    from stemboard.train.quantize import main

    src = str(_fp32())
    with pytest.raises(SystemExit, match="must differ"):
        main([src, src])
    with pytest.raises(SystemExit, match="No such file"):
        main([str(tmp_path / "none.onnx"), str(tmp_path / "out.onnx")])
    with pytest.raises(SystemExit, match="no MUSDB18 tracks"):
        main([src, str(tmp_path / "out.onnx"), "--data", str(tmp_path),
              "--cache", str(tmp_path / "cache")])
    assert not (tmp_path / "out.onnx").exists()
