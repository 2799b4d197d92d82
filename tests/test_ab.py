"""ABSwitch: click-free equal-power switching, alignment, loudness matching."""
import numpy as np
import pytest
from pedalboard import Gain, Invert

from conftest import SR, music_like, noise
from stemboard.plugin import StemSeparator
from stemboard.plugin.ab import ABSwitch, integrated_lufs, matching_gains


def sine(seconds=0.5, f=440.0, amp=0.5):
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)[None]


def switched(ab, x, at_block, block=1000):
    outs = []
    for k, i in enumerate(range(0, x.shape[1], block)):
        if k == at_block:
            ab.toggle()
        outs.append(ab(x[:, i:i + block], SR, reset=False))
    return np.concatenate(outs + [ab.flush()], axis=1)


def max_step(y):
    return float(np.abs(np.diff(y, axis=1)).max())


@pytest.mark.parametrize("crossfade_ms, clicks", [(5.0, False), (0.0, True)])
def test_switch_has_no_discontinuity(crossfade_ms, clicks):
    # A and B are the same sine in opposite polarity: the worst case for a switch.
    x = sine()
    ab = ABSwitch([Gain(0.0)], [Invert()], crossfade_ms=crossfade_ms)
    y = switched(ab, x, at_block=10)
    t0, ramp = 10000, int(round(crossfade_ms * 1e-3 * SR))
    assert np.abs(y[:, :t0] - x[:, :t0]).max() < 1e-6
    assert np.abs(y[:, t0 + ramp:] + x[:, t0 + ramp:]).max() < 1e-6
    steady = max_step(x)
    around = max_step(y[:, t0 - 200:t0 + ramp + 200])
    # The hard switch (the control) jumps by up to twice the amplitude.
    assert (around > 3 * steady) is clicks
    if not clicks:
        assert around <= 1.05 * steady
        theta = np.pi / 2 * np.arange(1, ramp + 1) / (ramp + 1)
        fade = (np.cos(theta) - np.sin(theta)) * x[0, t0:t0 + ramp]
        assert np.abs(y[0, t0:t0 + ramp] - fade).max() < 1e-6


def test_preset_sides_switch_between_their_renders(model_path):
    x = music_like(channels=2, seconds=0.5)
    ab = ABSwitch("karaoke", "vocals-only", model=model_path, crossfade_ms=3.0)
    assert ab.label_a == "karaoke" and ab.label_b == "vocals-only"
    ref_a = ab.side_a(x, SR)
    ref_b = ab.side_b(x, SR)
    y = switched(ab, x, at_block=12, block=1000)
    t0, ramp = 12000, int(round(0.003 * SR))
    assert y.shape == x.shape
    assert np.abs(y[:, :t0] - ref_a[:, :t0]).max() < 1e-5
    assert np.abs(y[:, t0 + ramp:] - ref_b[:, t0 + ramp:]).max() < 1e-5


def test_sides_with_different_latency_are_aligned(model_path):
    x = music_like(channels=1, seconds=0.3)
    ab = ABSwitch(None, StemSeparator(model_path))  # an identity with latency
    assert ab.latency_samples == ab.side_b.latency_samples > 0
    for side in ("a", "b"):
        ab.select(side)
        assert np.abs(ab(x, SR) - x).max() < 1e-5


def test_loudness_matching_equalizes_lufs():
    x = noise(channels=2, seconds=1.0, scale=0.1)
    ab = ABSwitch([Gain(0.0)], [Gain(-10.0)])
    report = ab.match_loudness(x, SR)
    (la, ga), (lb, gb) = report["a"], report["b"]
    assert la - lb == pytest.approx(10.0, abs=0.05)
    assert ga == pytest.approx(-10.0, abs=0.05) and gb == 0.0  # only attenuation
    ab.select("a")
    ya = ab(x, SR)
    ab.select("b")
    yb = ab(x, SR)
    assert integrated_lufs(ya, SR) == pytest.approx(integrated_lufs(yb, SR), abs=0.05)


def test_loudness_helpers():
    assert matching_gains(-14.0, -20.0) == (-6.0, 0.0)
    assert matching_gains(float("-inf"), -20.0) == (0.0, 0.0)
    assert integrated_lufs(np.zeros((1, SR)), SR) == float("-inf")
    with pytest.raises(ValueError, match="0.4 s"):
        integrated_lufs(np.zeros((1, 100)), SR)
    with pytest.raises(ValueError, match="'c'"):
        ABSwitch(None, None).select("c")
