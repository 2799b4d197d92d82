"""models/manifest.py: the JSON manifest beside every ONNX graph, its checks,
versions and input normalisation."""
import json
import warnings

import numpy as np
import pytest

from conftest import SR, copy_model, read_manifest
from stemboard.models import Manifest, MaskModel, ModelError
from stemboard.models.manifest import (FEATURE_VERSIONS, MANIFEST_VERSION, MASK_MODES,
                                       check_mask_mode)

MS = {"stereo_mode": "mid_side"}


def test_corrupt_manifest(model_path, tmp_path):
    p = copy_model(model_path, tmp_path)
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
    p = copy_model(model_path, tmp_path)
    man = json.loads(p.with_suffix(".json").read_text())
    man.update(change)
    p.with_suffix(".json").write_text(json.dumps(man))
    with pytest.raises(ModelError, match=message) as err:
        MaskModel(p)
    assert "m.json" in str(err.value) or "m.onnx" in str(err.value)


@pytest.mark.parametrize("key", ["hop", "input_normalization"])
def test_missing_manifest_key(model_path, tmp_path, key):
    # A manifest without its normalisation used to load and separate badly.
    p = copy_model(model_path, tmp_path)
    man = json.loads(p.with_suffix(".json").read_text())
    del man[key]
    p.with_suffix(".json").write_text(json.dumps(man))
    with pytest.raises(ModelError, match=f"missing key '{key}'"):
        MaskModel(p)


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


def test_manifest_versions():
    m = Manifest(sample_rate=SR, n_fft=2048, hop=512, model_bins=513, stems=("a", "b"),
                 context_frames=1, lookahead_frames=1)
    assert m.to_dict()["version"] == 1 and "stateful" not in m.to_dict()
    d = Manifest(**{**m.__dict__, "stateful": True}).to_dict()
    assert d["version"] == 2 and d["stateful"] is True
    assert Manifest.from_dict(d).stateful


def test_manifest_version_says_paired():
    m = Manifest(sample_rate=SR, n_fft=2048, hop=512, model_bins=513, stems=("a", "b"),
                 context_frames=1, lookahead_frames=1, input_layout="stereo_pair")
    d = m.to_dict()
    assert d["version"] == 3 and d["input_layout"] == "stereo_pair"
    assert Manifest.from_dict(d).input_layout == "stereo_pair"
    assert "input_layout" not in Manifest(**{**m.__dict__, "input_layout": "channel"}).to_dict()
    with pytest.raises(ModelError, match="newer"):
        Manifest.from_dict({**d, "version": MANIFEST_VERSION + 1})


def test_manifest_field(model_factory):
    m = MaskModel(model_factory(manifest_overrides=MS)).manifest
    assert m.stereo_mode == "mid_side"
    assert Manifest.from_dict(m.to_dict()).stereo_mode == "mid_side"
    plain = MaskModel(model_factory()).manifest
    assert plain.stereo_mode == "left_right" and "stereo_mode" not in plain.to_dict()


def test_bad_stereo_mode(model_path, tmp_path):
    d = json.loads(open(model_path[:-5] + ".json").read())
    d["stereo_mode"] = "side_mid"
    with pytest.raises(ModelError, match="stereo_mode must be one of"):
        Manifest.from_dict(d)


@pytest.mark.parametrize("change,message", [
    ({"lookahead_frames": 10}, "segment_frames - 1"),
    ({"segment_overlap": 40}, "less than half"),
    ({"segment_frames": 0}, "segment_overlap needs segment_frames"),
    ({"high_band_stem": "drums"}, "high_band_stem"),
    ({"high_band_rule": "average"}, "high_band_rule"),
    ({"input_layout": "stereo_pair"}, "stereo_pair"),
    ({"stateful": True}, "both segmented and stateful"),
    ({"hop": 768}, "multiple of hop"),
    ({"hop": 1024, "n_fft": 1024}, "at most n_fft / 2"),
])
def test_bad_segment_manifests_are_refused(seg_paths, change, message):
    d = read_manifest(seg_paths["context"])
    d.update(change)
    with pytest.raises(ModelError, match=message):
        Manifest.from_dict(d)


def test_required_version_is_the_newest_feature_used():
    base = dict(sample_rate=SR, n_fft=2048, hop=512, model_bins=513, stems=("a", "b"),
                context_frames=1, lookahead_frames=1)
    assert Manifest(**base).required_version() == 1
    joint = Manifest(**base, input_layout="stereo_joint", stateful=True)
    assert joint.required_version() == FEATURE_VERSIONS["stereo_joint"]
    to_stem = Manifest(**base, high_band_rule="to_stem", high_band_stem="b")
    assert to_stem.to_dict()["version"] == FEATURE_VERSIONS["to_stem"]
    frames = Manifest(**base, mask_layout="frames")
    assert frames.to_dict()["version"] == FEATURE_VERSIONS["frame_major"] == MANIFEST_VERSION
    assert frames.to_dict()["mask_layout"] == "frames"
    assert "mask_layout" not in Manifest(**base).to_dict()       # older readers still read it


def test_bad_mask_layouts_are_refused(model_path, seg_paths):
    d = read_manifest(model_path)
    with pytest.raises(ModelError, match="mask_layout must be one of"):
        Manifest.from_dict({**d, "mask_layout": "time"})
    with pytest.raises(ModelError, match="segmented graph's masks must be bin-major"):
        Manifest.from_dict({**read_manifest(seg_paths["context"]), "mask_layout": "frames"})


@pytest.mark.parametrize("version, message", [
    (MANIFEST_VERSION + 1, "newer than this stemboard supports"),
    (0, "positive integer"),
    ("2", "positive integer"),
    (True, "positive integer"),
])
def test_bad_versions_are_refused_by_name(model_path, version, message):
    d = read_manifest(model_path)
    with pytest.raises(ModelError, match=f"where.json: .*{message}"):
        Manifest.from_dict({**d, "version": version}, source="where.json")


def test_mask_type_is_deprecated_and_ignored(model_path):
    d = read_manifest(model_path)
    assert "mask_type" not in d
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = Manifest.from_dict(d)          # no key, no warning
    with pytest.warns(DeprecationWarning, match="mask_type"):
        old = Manifest.from_dict({**d, "mask_type": "binary"})
    assert old == plain and "mask_type" not in old.to_dict()
    with pytest.raises(ModelError, match="mask_type must be one of"):
        Manifest.from_dict({**d, "mask_type": "fuzzy"})


def test_the_one_mask_mode_check():
    assert MASK_MODES == ("soft", "binary")
    for mode in MASK_MODES:
        assert check_mask_mode(mode) == mode
    with pytest.raises(ValueError, match="^mask_mode must be 'soft' or 'binary', got 'hard'$"):
        check_mask_mode("hard")
    with pytest.raises(ValueError, match="^--x must be"):
        check_mask_mode(None, name="--x")


def test_normalize_is_the_shared_log1p_definition():
    """The manifest's numpy normalisation is dsp.normalization's formula."""
    from stemboard.dsp.normalization import log1p_normalization

    mean, std = np.linspace(-1, 1, 5, dtype=np.float32), np.linspace(0.5, 2, 5, dtype=np.float32)
    m = Manifest(sample_rate=SR, n_fft=16, hop=4, model_bins=5, stems=("a", "b"),
                 context_frames=0, lookahead_frames=0,
                 input_normalization={"type": "log1p", "scale": 3.0, "mean": mean.tolist(),
                                      "std": std.tolist()})
    mag = np.random.default_rng(1).uniform(0, 4, (2, 5, 7)).astype(np.float32)
    want = (np.log1p(np.float32(3.0) * mag) - mean[:, None]) / std[:, None]
    np.testing.assert_array_equal(m.normalize(mag), want)
    np.testing.assert_array_equal(
        log1p_normalization()(mag, np.float32(3.0), mean[:, None], std[:, None]), want)

