"""ONNX mask-model runtime: loading, validation and clear errors."""
import numpy as np
import pytest

from conftest import copy_model
from stemboard.models import MaskModel, ModelError, normalize_masks


def test_loads_and_runs(model_path):
    m = MaskModel(model_path)
    assert m.stems == ("vocals", "drums", "bass", "other")
    mag = np.abs(np.random.default_rng(0).standard_normal((2, 513, 20))).astype(np.float32)
    masks = m.masks(mag)
    mf = m.manifest
    assert masks.shape == (2, 4, 513, 20 - mf.context_frames - mf.lookahead_frames)
    assert np.allclose(masks.sum(axis=1), 1.0, atol=1e-6)


def test_masks_mode_is_the_deprecated_name_of_mask_mode(model_path):
    m = MaskModel(model_path)
    mag = np.abs(np.random.default_rng(1).standard_normal((1, 513, 12))).astype(np.float32)
    binary = m.masks(mag, mask_mode="binary")
    assert set(np.unique(binary)) <= {0.0, 0.25, 1.0}
    with pytest.warns(DeprecationWarning, match="mask_mode"):
        np.testing.assert_array_equal(m.masks(mag, mode="binary"), binary)
    with pytest.raises(ValueError, match="mask_mode"):
        m.masks(mag, mask_mode="hard")


def test_threads_and_providers(model_path):
    MaskModel(model_path, num_threads=1, providers=["CPUExecutionProvider"])
    with pytest.raises(ModelError, match="NoSuchExecutionProvider"):
        MaskModel(model_path, providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match="num_threads"):
        MaskModel(model_path, num_threads=0)


def test_load_by_manifest_path(model_path):
    assert MaskModel(model_path.replace(".onnx", ".json")).stems[0] == "vocals"


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="nope.onnx"):
        MaskModel(tmp_path / "nope.onnx")


def test_missing_manifest(model_path, tmp_path):
    p = copy_model(model_path, tmp_path)
    p.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match=r"m\.json: model manifest not found"):
        MaskModel(p)


def test_corrupt_onnx(model_path, tmp_path):
    p = copy_model(model_path, tmp_path)
    p.write_bytes(b"\x08\x01garbage" * 10)
    with pytest.raises(ModelError, match=r"m\.onnx: not a loadable ONNX model"):
        MaskModel(p)


def test_truncated_onnx(model_path, tmp_path):
    p = copy_model(model_path, tmp_path)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="m.onnx"):
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
    with pytest.raises(ValueError, match="mask_mode"):
        normalize_masks(raw, "hard")
