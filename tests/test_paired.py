"""Stereo-pair graphs: each signal's features go in with its partner's.

A manifest with ``"input_layout": "stereo_pair"`` says the graph takes
(batch, 2 * model_bins, time): the signal's own features, then the other
signal's (left with right, or mid with side).  The fixture's partner half
shifts the logits, so a wrong pairing changes the masks.  No torch.
"""
import numpy as np
import pytest

from conftest import SR, dbfs, music_like, stream
from onnx_fixtures import band_split_model
from stemboard.models import MaskModel, ModelError, pair_features
from stemboard.plugin import StemSeparator

GAINS = {"vocals": -20.0, "bass": 4.0, "other": -3.0}
MS = {"stereo_mode": "mid_side"}


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    pytest.importorskip("onnx")
    root = tmp_path_factory.mktemp("paired")
    kw = dict(context=4, lookahead=2, paired=True, manifest_overrides=MS)
    return (str(band_split_model(root / "plain.onnx", **kw)),
            str(band_split_model(root / "step.onnx", stateful=True, **kw)))


def test_pair_features_layouts():
    f = np.random.default_rng(0).standard_normal((3, 5, 7)).astype(np.float32)
    np.testing.assert_array_equal(pair_features(f[:1]), np.concatenate([f[:1], f[:1]], axis=1))
    silent = np.arange(5, dtype=np.float32)
    mono = pair_features(f[:1], silent)
    np.testing.assert_array_equal(mono[0, 5:], np.repeat(silent[:, None], 7, axis=1))
    st = pair_features(f[:2])
    assert st.shape == (2, 10, 7) and st.dtype == np.float32
    np.testing.assert_array_equal(st[0], np.concatenate([f[0], f[1]]))
    np.testing.assert_array_equal(st[1], np.concatenate([f[1], f[0]]))
    np.testing.assert_allclose(pair_features(f)[0, 5:], (f[1] + f[2]) / 2, atol=1e-6)


def test_run_pairs_the_batch(paired):
    import onnxruntime as ort

    model = MaskModel(paired[0])
    assert model.manifest.input_layout == "stereo_pair" and model.manifest.input_bins == 1026
    x = np.random.default_rng(1).random((2, 513, 30)).astype(np.float32)
    sess = ort.InferenceSession(paired[0], providers=["CPUExecutionProvider"])
    feats = model.manifest.normalize(x)
    ref = sess.run(["masks"], {"magnitude": pair_features(feats)})[0]
    np.testing.assert_allclose(model.raw_masks(x), ref, atol=1e-6)
    # the partner matters: swapping it for a copy of the signal changes the masks
    self_paired = sess.run(["masks"], {"magnitude": np.concatenate([feats, feats], 1)})[0]
    assert np.abs(self_paired - ref).max() > 1e-3
    # mono in mid/side coding is paired with a silent side
    silent = model.manifest.normalize(np.zeros((1, 513, 1), np.float32))[0, :, 0]
    mono = sess.run(["masks"], {"magnitude": pair_features(feats[:1], silent)})[0]
    np.testing.assert_allclose(model.raw_masks(x[:1]), mono, atol=1e-6)
    stepper = MaskModel(paired[1])
    assert [s.shape for s in stepper.zero_state(2)] == [(2, 1026, 6)]
    np.testing.assert_allclose(stepper.run(feats), model.run(feats), atol=1e-6)


@pytest.mark.parametrize("block", [1, 300, 512, 1024, 5000])
def test_streaming_paired_equals_offline(paired, block):
    x = music_like(seconds=1.5)
    offline = StemSeparator(paired[0], gains_db=GAINS).process(x, SR)
    assert dbfs(offline - x) > -40
    sep = StemSeparator(paired[1], gains_db=GAINS)
    sep.process(x[:, :0] if block > 2 else x[:, :4], SR, reset=True)
    got = stream(sep, x, block)
    np.testing.assert_allclose(got, offline, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 2])
def test_paired_stems_sum_to_the_mix(paired, channels):
    x = music_like(channels=channels, seconds=1.0, seed=4)
    stems = StemSeparator(paired[1]).separate(x, SR)
    assert set(stems) == {"vocals", "drums", "bass", "other"}
    assert all(s.shape == x.shape for s in stems.values())
    assert dbfs(sum(stems.values()) - x) <= -80


def test_layout_must_match_the_graph(paired, tmp_path):
    # a paired graph read as per-channel is refused, and so is the other way round
    unpaired = band_split_model(tmp_path / "one.onnx", context=4, lookahead=2,
                                manifest_overrides={"input_layout": "stereo_pair"})
    with pytest.raises(ModelError, match="1026"):
        MaskModel(unpaired)
    two = band_split_model(tmp_path / "two.onnx", context=4, lookahead=2, paired=True,
                           manifest_overrides={"input_layout": "channel"})
    with pytest.raises(ModelError, match="input_layout='channel'"):
        MaskModel(two)
    bad = band_split_model(tmp_path / "bad.onnx", paired=True,
                           manifest_overrides={"input_layout": "stereo"})
    with pytest.raises(ModelError, match="input_layout must be one of"):
        MaskModel(bad)
