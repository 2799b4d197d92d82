"""The training package's scoring: direct BSSEval v4 SDR equals museval's.

Needs museval (the ``[bench]`` extra); no torch, no dataset.
"""
import numpy as np
import pytest

from stemboard.train.evaluate import (evaluate_systems, museval_sdr_windows,
                                             oracle_system, sdr_windows, windows_differ)

SR = 44100


def _track(seconds=3.0, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    stems = np.stack([
        np.stack([np.sin(2 * np.pi * 220 * t), 0.7 * np.sin(2 * np.pi * 220 * t)]),
        0.3 * rng.standard_normal((2, n)) * (np.sin(2 * np.pi * 2 * t) > 0.5),
        np.stack([0.5 * np.sin(2 * np.pi * 55 * t)] * 2),
        0.1 * rng.standard_normal((2, n)),
    ]).astype(np.float32)
    stems[3, :, SR: 2 * SR] = 0.0        # a silent window: museval's NaN rule applies
    return stems


def test_direct_sdr_equals_museval():
    pytest.importorskip("museval")
    refs = _track()
    rng = np.random.default_rng(1)
    ests = refs + rng.standard_normal(refs.shape).astype(np.float32) * np.array(
        [0.01, 0.1, 0.3, 1.0], np.float32)[:, None, None]
    ests[3, :, SR: 2 * SR] = 0.0
    direct, slow = sdr_windows(refs, ests), museval_sdr_windows(refs, ests)
    assert direct.shape == slow.shape == (4, 3)
    assert np.isnan(direct[:, 1]).all()          # the silent window is left out
    assert windows_differ(direct, slow) <= 1e-6
    # noisier estimates score lower
    assert np.all(np.diff(direct[:, 0]) < 0)


def test_windows_differ_sees_nan_patterns():
    a = np.array([[1.0, np.nan]])
    assert windows_differ(a, np.array([[1.0, 2.0]])) == float("inf")
    assert windows_differ(a, np.array([[1.5, np.nan]])) == 0.5


def test_evaluate_systems_checks_against_museval():
    pytest.importorskip("museval")
    tracks = [{"name": "synthetic", "stems": _track(seconds=2.0)}]
    res = evaluate_systems(tracks, {"irm": oracle_system("irm"), "mixture": "mixture"},
                           log=lambda *_: None)
    for row in res.values():
        assert row["museval_check_tracks"] == 1
        assert row["museval_max_abs_diff_db"] <= 1e-6
    assert res["irm"]["avg"] > res["mixture"]["avg"] + 5.0
    assert 0.0 <= res["irm"]["vad_accuracy"] <= 1.0


def test_evaluate_systems_runs_models_in_their_stereo_mode(model_factory):
    """A mid/side model is scored on exactly what the runtime makes of the track."""
    pytest.importorskip("museval")
    from stemboard.models import MaskModel
    from stemboard.plugin import StemSeparator
    from stemboard.train.evaluate import bss_sdr, mask_system, onnx_system

    stems = _track(seconds=2.0, seed=1)
    tracks = [{"name": "synthetic", "stems": stems}]
    res = {}
    for mode, path in (("lr", model_factory()),
                       ("ms", model_factory(manifest_overrides={"stereo_mode": "mid_side"}))):
        assert onnx_system(MaskModel(path)).stereo_mode == ("mid_side" if mode == "ms"
                                                            else "left_right")
        res[mode] = evaluate_systems(tracks, {mode: onnx_system(MaskModel(path))},
                                     log=lambda *_: None)[mode]
        sep = StemSeparator(path).separate(stems.sum(axis=0), SR)
        runtime = bss_sdr(stems, np.stack([sep[k] for k in ("vocals", "drums", "bass",
                                                              "other")]))
        np.testing.assert_allclose([res[mode][k] for k in ("vocals", "drums", "bass", "other")],
                                   runtime, atol=2e-3)
        # The numpy reference (stft, MaskModel.masks, hold-top-bin, istft) is the
        # oracle the engine is held to.
        ref = evaluate_systems(tracks, {mode: mask_system(MaskModel(path))},
                               log=lambda *_: None)[mode]
        for k in ("vocals", "drums", "bass", "other", "avg"):
            assert abs(res[mode][k] - ref[k]) <= 2e-3, (mode, k, res[mode][k], ref[k])
    assert res["lr"]["vocals"] != res["ms"]["vocals"]


def test_onnx_system_left_right_runs_each_channel_alone(model_factory):
    """A mid/side model forced to left_right is the model on each channel as a mono stream."""
    from stemboard.models import MaskModel
    from stemboard.plugin import StemSeparator
    from stemboard.train.evaluate import onnx_system

    model = MaskModel(model_factory(manifest_overrides={"stereo_mode": "mid_side"}))
    mix = _track(seconds=1.0, seed=2).sum(axis=0)
    est = onnx_system(model, stereo_mode="left_right")(mix)
    assert est.shape == (len(model.stems), *mix.shape)
    for c in range(2):
        alone = StemSeparator(model).separate(mix[c], SR)
        np.testing.assert_array_equal(est[:, c], np.stack([alone[s] for s in model.stems]))
    joint = onnx_system(model)(mix)
    assert not np.array_equal(joint, est)
    with pytest.raises(ValueError, match="cannot run"):
        onnx_system(model, stereo_mode="stereo")
