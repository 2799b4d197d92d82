"""Mid/side stereo mode: models whose manifest says ``"stereo_mode": "mid_side"``."""

import numpy as np
import pytest

from conftest import SR, music_like, stream
from stemboard.dsp import from_mid_side, to_mid_side
from stemboard.plugin import StemSeparator

MS = {"stereo_mode": "mid_side"}


def test_coding_round_trip():
    x = np.random.default_rng(0).standard_normal((3, 2, 100)).astype(np.float32)
    ms = to_mid_side(x, axis=1)
    assert ms.dtype == np.float32 and ms.shape == x.shape
    np.testing.assert_allclose(ms[:, 0], (x[:, 0] + x[:, 1]) / 2, atol=1e-7)
    np.testing.assert_allclose(ms[:, 1], (x[:, 0] - x[:, 1]) / 2, atol=1e-7)
    np.testing.assert_allclose(from_mid_side(ms, axis=1), x, atol=1e-6)
    spec = (x + 1j * x[::-1]).astype(np.complex64)
    np.testing.assert_allclose(from_mid_side(to_mid_side(spec, axis=1), axis=1), spec, atol=1e-6)


@pytest.mark.parametrize("shape,axis", [((3, 2, 40000), 1), ((2, 5), 0), ((7, 2), 1), ((2,), 0)])
def test_decoding_in_place_gives_the_same_bits(shape, axis):
    # 40000 samples span several of the in-place decoder's chunks.
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    want = from_mid_side(x, axis=axis)
    got = x.copy()
    assert from_mid_side(got, axis=axis, in_place=True) is got
    assert np.array_equal(got, want)
    # a strided view is decoded where it lies, the rest left alone
    big = np.zeros(shape[:-1] + (shape[-1] + 6,), np.float32)
    view = big[..., 3:-3]
    view[...] = x
    from_mid_side(view, axis=axis, in_place=True)
    if shape[-1] > 2 or axis != len(shape) - 1:
        assert np.array_equal(view, want)
        assert not big[..., :3].any() and not big[..., -3:].any()


@pytest.fixture(scope="module")
def pair(model_factory):
    """The same band-split model, run left/right and mid/side."""
    return (StemSeparator(model_factory()),
            StemSeparator(model_factory(manifest_overrides=MS)))


def test_stereo_is_separated_as_mid_and_side(pair):
    lr, ms = pair
    x = music_like(2, 1.0)
    got = ms.separate(x, SR)
    # The mid and side signals separated one by one (as mono) by the same model...
    mid, side = to_mid_side(x)
    parts = [lr.separate(s, SR) for s in (mid, side)]
    for name in got:
        want = from_mid_side(np.stack([parts[0][name], parts[1][name]]))
        np.testing.assert_allclose(got[name], want, atol=1e-5)
    # ...which is not what left/right gives with this (nonlinear) model.
    assert np.max(np.abs(got["vocals"] - lr.separate(x, SR)["vocals"])) > 1e-3


def test_mid_side_keeps_the_separator_properties(pair):
    _, ms = pair
    x = music_like(2, 1.5, seed=3)
    stems = ms.separate(x, SR)
    np.testing.assert_allclose(sum(stems.values()), x, atol=1e-5)
    np.testing.assert_allclose(ms(x, SR), x, atol=1e-5)            # 0 dB remix
    ms.mute("drums")
    try:
        off = ms(x, SR)
        np.testing.assert_allclose(off, x - stems["drums"], atol=1e-5)
        for block in (1, 511, 4096):
            np.testing.assert_allclose(stream(ms, x, block), off, atol=1e-5)
        np.testing.assert_allclose(ms(x.T, SR), off.T, atol=1e-5)   # (samples, channels)
    finally:
        ms.unmute_all()


@pytest.mark.parametrize("channels", [1, 3])
def test_other_channel_counts_are_separated_channel_by_channel(pair, channels):
    lr, ms = pair
    x = music_like(channels, 0.5, seed=channels)
    a, b = lr.separate(x, SR), ms.separate(x, SR)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_other_rates_follow_the_mode(pair):
    lr, ms = pair
    x = music_like(2, 0.5, sr=48000, seed=5)
    stems, plain = ms.separate(x, 48000), lr.separate(x, 48000)
    # The stems add up to the resampled round trip of the input in either mode.
    np.testing.assert_allclose(sum(stems.values()), sum(plain.values()), atol=1e-5)
    assert np.max(np.abs(stems["vocals"] - plain["vocals"])) > 1e-3
