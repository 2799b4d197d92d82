"""ONNX mask-model runtime: loading, validation and clear errors."""
import json
import shutil

import numpy as np
import pytest

from stemboard.models import MaskModel, ModelError, normalize_masks


def test_loads_and_runs(model_path):
    m = MaskModel(model_path)
    assert m.stems == ("vocals", "drums", "bass", "other")
    mag = np.abs(np.random.default_rng(0).standard_normal((2, 513, 20))).astype(np.float32)
    masks = m.masks(mag)
    mf = m.manifest
    assert masks.shape == (2, 4, 513, 20 - mf.context_frames - mf.lookahead_frames)
    assert np.allclose(masks.sum(axis=1), 1.0, atol=1e-6)


def test_threads_and_providers(model_path):
    MaskModel(model_path, num_threads=1, providers=["CPUExecutionProvider"])
    with pytest.raises(ModelError, match="NoSuchExecutionProvider"):
        MaskModel(model_path, providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match="num_threads"):
        MaskModel(model_path, num_threads=0)


def test_load_by_manifest_path(model_path):
    assert MaskModel(model_path.replace(".onnx", ".json")).stems[0] == "vocals"


def _copy(model_path, tmp_path, name="m"):
    onnx_path = tmp_path / f"{name}.onnx"
    shutil.copy(model_path, onnx_path)
    shutil.copy(model_path.replace(".onnx", ".json"), onnx_path.with_suffix(".json"))
    return onnx_path


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="nope.onnx"):
        MaskModel(tmp_path / "nope.onnx")


def test_missing_manifest(model_path, tmp_path):
    p = _copy(model_path, tmp_path)
    p.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match=r"m\.json: model manifest not found"):
        MaskModel(p)


def test_corrupt_onnx(model_path, tmp_path):
    p = _copy(model_path, tmp_path)
    p.write_bytes(b"\x08\x01garbage" * 10)
    with pytest.raises(ModelError, match=r"m\.onnx: not a loadable ONNX model"):
        MaskModel(p)


def test_truncated_onnx(model_path, tmp_path):
    p = _copy(model_path, tmp_path)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="m.onnx"):
        MaskModel(p)


def test_corrupt_manifest(model_path, tmp_path):
    p = _copy(model_path, tmp_path)
    p.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        MaskModel(p)


@pytest.mark.parametrize("change, message", [
    ({"context_frames": 5}, "implies"),
    ({"lookahead_frames": 0}, "implies"),
    ({"stems": ["vocals", "accompaniment"]}, "implies"),
    ({"model_bins": 512}, "bins"),
    ({"n_fft": 2000}, "multiple of hop"),
    ({"stems": []}, "stems must be"),
    ({"stems": ["a", "a", "b", "c"]}, "unique"),
    ({"mask_type": "fuzzy"}, "mask_type"),
    ({"input_normalization": {"type": "zscore"}}, "input_normalization"),
    ({"input_normalization": {"type": "log1p", "mean": [0.0, 1.0]}}, "mean"),
    ({"sample_rate": "fast"}, "sample_rate must be an integer"),
    ({"version": 99}, "newer"),
    ({"output_name": "logits"}, "no output 'logits'"),
])
def test_mismatched_manifest(model_path, tmp_path, change, message):
    p = _copy(model_path, tmp_path)
    man = json.loads(p.with_suffix(".json").read_text())
    man.update(change)
    p.with_suffix(".json").write_text(json.dumps(man))
    with pytest.raises(ModelError, match=message) as err:
        MaskModel(p)
    assert "m.json" in str(err.value) or "m.onnx" in str(err.value)


@pytest.mark.parametrize("key", ["hop", "input_normalization"])
def test_missing_manifest_key(model_path, tmp_path, key):
    # A manifest without its normalisation used to load and separate badly.
    p = _copy(model_path, tmp_path)
    man = json.loads(p.with_suffix(".json").read_text())
    del man[key]
    p.with_suffix(".json").write_text(json.dumps(man))
    with pytest.raises(ModelError, match=f"missing key '{key}'"):
        MaskModel(p)


def test_graph_bins_disagree_with_manifest(model_factory):
    path = model_factory(bins_in_graph=257, model_bins=257,
                         manifest_overrides={"model_bins": 513})
    with pytest.raises(ModelError, match="257 bins"):
        MaskModel(path)


def test_normalize_masks():
    raw = np.random.default_rng(0).uniform(0, 2, (2, 4, 10, 7)).astype(np.float32)
    raw[0, :, 3, 2] = 0.0  # a bin no stem claims
    soft = normalize_masks(raw, "soft")
    assert np.allclose(soft.sum(axis=1), 1.0, atol=1e-6)
    assert np.allclose(soft[0, :, 3, 2], 0.25)
    binary = normalize_masks(raw, "binary")
    assert set(np.unique(binary)) <= {0.0, 0.25, 1.0}
    assert np.allclose(binary.sum(axis=1), 1.0)
    claimed = raw.sum(axis=1) > 0
    assert np.all((np.argmax(binary, axis=1) == np.argmax(raw, axis=1))[claimed])
    assert np.allclose(binary[0, :, 3, 2], 0.25)
    with pytest.raises(ValueError, match="mask mode"):
        normalize_masks(raw, "hard")


def test_engine_features_equal_manifest_normalisation():
    # The streaming engine computes features in a Numba kernel; they must equal
    # the manifest's (numpy) normalisation that MaskModel.masks and training use.
    from stemboard.dsp import StftGrid, stft
    from stemboard.dsp.kernels import log_features
    from stemboard.models import Manifest

    rng = np.random.default_rng(3)
    man = Manifest(sample_rate=44100, n_fft=2048, hop=512, model_bins=513,
                   stems=("a", "b"), context_frames=1, lookahead_frames=1,
                   input_normalization={"type": "log1p", "scale": 3.0,
                                        "mean": rng.uniform(-1, 1, 513).tolist(),
                                        "std": rng.uniform(0.5, 2, 513).tolist()})
    spec = stft(rng.standard_normal((2, 20000)).astype(np.float32), StftGrid())
    ref = man.normalize(np.abs(spec[:, :, :513]).transpose(0, 2, 1))
    got = log_features(spec, 513, *man.feature_params())
    assert got.shape == ref.shape == (2, 513, spec.shape[1])
    assert np.max(np.abs(got - ref)) <= 1e-4
