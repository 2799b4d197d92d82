"""StemSplit: per-stem chains, branch alignment, null property, streaming contract."""
import math

import numpy as np
import pytest
from pedalboard import Gain

from conftest import SR, dbfs, music_like, stream
from stemboard.plugin import Chain, StemSeparator
from stemboard.plugin.stemsplit import ScheduledValue, StemSplit


@pytest.fixture(scope="module")
def x():
    return music_like(channels=2, seconds=0.5)


def test_all_empty_branches_null_against_input(model_path, x):
    split = StemSplit({"vocals": None, "drums": [], "bass": Chain([])}, model=model_path)
    assert dbfs(split(x, SR) - x) <= -80
    # Streaming too, with the latency trimmed and flushed back.
    y = stream(split, x, 4096)
    assert y.shape == x.shape and dbfs(y - x) <= -80


def test_branches_with_different_latency_are_aligned(model_path):
    # An impulse: the drums branch holds a second separator (an all-0 dB
    # separator is an identity with latency), the vocals branch has none.
    imp = np.zeros((1, 16000), np.float32)
    imp[0, 3000] = 1.0
    inner = StemSeparator(model_path)
    split = StemSplit({"vocals": [Gain(-6.0)], "drums": [inner]}, model=model_path)
    assert inner.latency_samples > 0
    assert split.latency_samples == split.separator.latency_samples + inner.latency_samples
    stems = StemSeparator(model_path).separate(imp, SR)
    want = 10 ** (-6 / 20) * stems["vocals"] + stems["drums"] + stems["bass"] + stems["other"]
    got = split(imp, SR)
    assert got.shape == imp.shape
    assert np.abs(got - want).max() < 1e-5
    # A misaligned drums branch would have moved its share of the impulse.
    shifted = np.roll(stems["drums"], inner.latency_samples, axis=1)
    assert np.abs(got - (want - stems["drums"] + shifted)).max() > 1e-3
    assert int(np.argmax(np.abs(got[0]))) == 3000


@pytest.mark.parametrize("block", [64, 1000, 8192])
def test_streaming_equals_offline(model_path, x, block):
    split = StemSplit({"vocals": [Gain(-3.0)], "other": [StemSeparator(model_path)]},
                      model=model_path)
    off = split(x, SR)
    lat = split.latency_samples
    outs = [split(x[:, i:i + block], SR, reset=False) for i in range(0, x.shape[1], block)]
    # Latency trimmed at the start; the STFT emits whole hops (512 here).
    assert x.shape[1] - lat - 2 * 512 <= sum(o.shape[1] for o in outs) <= x.shape[1] - lat
    y = np.concatenate(outs + [split.flush()], axis=1)
    assert np.abs(y - off).max() < 1e-5


def test_tiny_blocks_channels_last(model_path):
    x = music_like(channels=2, seconds=0.05)
    split = StemSplit({"bass": [Gain(2.0)]}, model=model_path)
    off = split(x.T, SR)
    assert off.shape == x.T.shape
    y = np.concatenate([split(x.T[i:i + 1], SR, reset=False) for i in range(x.shape[1])]
                       + [split.flush()], axis=0)
    assert np.abs(y - off).max() < 1e-5


def test_unlisted_stems_keep_or_mute(model_path, x):
    stems = StemSeparator(model_path).separate(x, SR)
    kept = StemSplit({"vocals": [Gain(-6.0)]}, model=model_path)(x, SR)
    muted = StemSplit({"vocals": [Gain(-6.0)]}, model=model_path, unlisted="mute")(x, SR)
    v = 10 ** (-6 / 20) * stems["vocals"]
    assert np.abs(muted - v).max() < 1e-5
    assert np.abs(kept - (v + stems["drums"] + stems["bass"] + stems["other"])).max() < 1e-5


def test_gains_and_mix_match_separator(model_path, x):
    sep = StemSeparator(model_path, gains_db={"vocals": -math.inf, "bass": 4.0}, mix=0.7)
    split = StemSplit(separator=StemSeparator(model_path), gains_db=sep.gains_db, mix=0.7)
    assert np.abs(split(x, SR) - sep(x, SR)).max() < 1e-5


def test_bad_arguments_name_the_problem(model_path):
    with pytest.raises(ValueError, match="'voice'"):
        StemSplit({"voice": None}, model=model_path)
    with pytest.raises(TypeError, match="'drums'"):
        StemSplit({"drums": 3}, model=model_path)
    c = Chain([Gain(1.0)])
    with pytest.raises(ValueError, match="share one chain"):
        StemSplit({"drums": c, "bass": c}, model=model_path)
    with pytest.raises(ValueError, match="unlisted"):
        StemSplit({}, model=model_path, unlisted="drop")


def test_scheduled_value_ramp_is_exact_outside_ramp():
    v = ScheduledValue(1.0, 4)
    head = v.render(10)
    v.schedule(0.0, 12)
    tail = v.render(10)
    curve = np.concatenate([head, tail])
    assert np.all(curve[:12] == 1.0) and np.all(curve[16:] == 0.0)
    assert np.allclose(curve[12:16], 1 - np.arange(1, 5) / 5)
