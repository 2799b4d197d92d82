"""StemSeparator: pedalboard's contract, the null property, streaming == offline, latency."""
import math

import numpy as np
import pytest

from conftest import SR, dbfs, music_like, noise, stream
from stemboard.plugin import StemSeparator


@pytest.fixture
def sep(model_path):
    return StemSeparator(model_path)


@pytest.mark.parametrize("shape", ["mono1d", "first", "last", "three"])
def test_null_with_unity_gains(sep, shape):
    x = music_like(channels=3 if shape == "three" else 2, seconds=1.0)
    arr = {"mono1d": x[0], "first": x[:2], "last": x[:2].T, "three": x}[shape]
    y = sep.process(arr, SR)
    assert y.shape == arr.shape and y.dtype == np.float32
    assert dbfs(y - arr) <= -80


def test_float64_in_float32_out(sep):
    x = music_like(seconds=0.5).astype(np.float64)
    y = sep(x, SR)
    assert y.dtype == np.float32 and dbfs(y - x) <= -80


def test_stems_sum_to_mix(sep):
    x = music_like(seconds=1.0)
    stems = sep.separate(x, SR)
    assert list(stems) == ["vocals", "drums", "bass", "other"]
    for s in stems.values():
        assert s.shape == x.shape and s.dtype == np.float32
    assert dbfs(sum(stems.values()) - x) <= -80
    # The fixture's bands really split: every stem carries energy, none carries all.
    energies = np.array([np.sum(s ** 2) for s in stems.values()])
    assert np.all(energies > 0.01 * energies.sum()) and np.all(energies < 0.9 * energies.sum())


def test_separate_subset_and_layout(sep):
    x = music_like(seconds=0.5)
    both = sep.separate(x.T, SR, stems=["bass", "vocals"])
    assert list(both) == ["bass", "vocals"] and both["bass"].shape == x.T.shape
    full = sep.separate(x, SR)
    assert np.allclose(both["vocals"].T, full["vocals"], atol=1e-6)


def test_mute_equals_input_minus_stem(sep):
    x = music_like(seconds=1.0)
    stems = sep.separate(x, SR)
    sep.mute("vocals")
    y = sep(x, SR)
    assert dbfs(y - (x - stems["vocals"])) <= -80
    sep.solo("drums")
    assert dbfs(sep(x, SR) - stems["drums"]) <= -80
    assert sep.gains_db["vocals"] == -math.inf
    sep.unmute_all()
    assert dbfs(sep(x, SR) - x) <= -80


def test_gain_and_mix(sep):
    x = music_like(seconds=0.5)
    stems = sep.separate(x, SR)
    sep.set_gain("bass", 6.0)
    g = 10 ** (6 / 20)
    assert dbfs(sep(x, SR) - (x + (g - 1) * stems["bass"])) <= -80
    sep.unmute_all()
    sep.mute("vocals")
    sep.mix = 0.0
    assert dbfs(sep(x, SR) - x) <= -80
    sep.mix = 0.5
    assert dbfs(sep(x, SR) - (x - 0.5 * stems["vocals"])) <= -80


def test_binary_masks_sum_to_one(model_path):
    sep = StemSeparator(model_path, mask_mode="binary")
    x = music_like(seconds=0.5)
    stems = sep.separate(x, SR)
    assert dbfs(sum(stems.values()) - x) <= -80
    soft = StemSeparator(model_path).separate(x, SR)
    assert not np.allclose(stems["vocals"], soft["vocals"], atol=1e-3)


@pytest.mark.parametrize("block", [1, 64, 65, 511, 512, 4096, 8193])
@pytest.mark.parametrize("channels", [1, 2])
def test_streaming_equals_offline(sep, block, channels):
    x = music_like(channels=channels, seconds=0.2 if block == 1 else 1.0, seed=block)
    sep.mute("drums")
    offline = sep(x, SR)
    streamed = stream(sep, x, block)
    assert streamed.shape == x.shape
    assert np.max(np.abs(streamed - offline)) <= 1e-5


@pytest.mark.parametrize("block", [64, 4096])
def test_streaming_separate_equals_offline(sep, block):
    x = music_like(seconds=0.7)
    offline = sep.separate(x, SR)
    parts = [sep.separate(x[:, i:i + block], SR, reset=False) for i in range(0, x.shape[1], block)]
    parts.append(sep.flush_stems())
    for s in sep.stems:
        got = np.concatenate([p[s] for p in parts], axis=1)
        assert np.max(np.abs(got - offline[s])) <= 1e-5


@pytest.mark.parametrize("context, lookahead", [(3, 2), (0, 0), (6, 0)])
@pytest.mark.parametrize("block", [64, 65, 512, 8193])
def test_latency_alignment(model_factory, context, lookahead, block):
    sep = StemSeparator(model_factory(context=context, lookahead=lookahead))
    assert sep.latency_samples == 2048 - 512 + lookahead * 512
    assert sep.reported_latency_samples == sep.latency_samples
    n = 512 * 40
    x = np.zeros((2, n), np.float32)
    x[:, 9000] = 1.0
    outs = [sep(x[:, i:i + block], SR, reset=False) for i in range(0, n, block)]
    streamed = np.concatenate(outs, axis=1)
    # pedalboard semantics: the start is trimmed, so the stream is short by the latency...
    assert streamed.shape[1] == n - sep.latency_samples
    # ...and what comes out is aligned with the input.
    assert np.argmax(np.abs(streamed[0])) == 9000
    tail = sep.flush()
    assert streamed.shape[1] + tail.shape[1] == n
    offline = sep(x, SR, buffer_size=block)
    assert np.argmax(np.abs(offline[0])) == 9000
    assert dbfs(offline - x) <= -80


def test_buffer_size_never_changes_result(sep):
    x = music_like(seconds=0.5)
    sep.set_gain("other", -12)
    ref = sep(x, SR)
    for bs in (1, 100, 8192, 1 << 20):
        assert np.array_equal(sep(x, SR, buffer_size=bs), ref)


def test_reset_discards_stream(sep):
    x = music_like(seconds=0.5)
    sep(x, SR, reset=False)
    sep.reset()
    a = stream(sep, x, 4096)
    assert np.max(np.abs(a - sep(x, SR))) <= 1e-5


@pytest.mark.parametrize("sr", [22050, 48000, 32000])
def test_other_sample_rates(sep, sr):
    t = np.arange(int(sr * 0.75)) / sr
    x = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1000 * t + 1))
    x = np.stack([x, x[::-1]]).astype(np.float32)
    y = sep(x, sr)
    assert y.shape == x.shape
    inner = slice(sr // 10, -sr // 10)
    # pedalboard's resampler adds a sub-sample delay (see README), so the null
    # is measured against the best integer-or-fractional alignment of one sample.
    assert dbfs((y - x)[:, inner]) <= -25
    streamed = stream(sep, x, 1000, sr=sr)
    assert streamed.shape == x.shape
    assert np.max(np.abs(streamed - y)) <= 1e-4


def test_impulse_alignment_at_48k(sep):
    sr = 48000
    x = np.zeros((1, sr), np.float32)
    # A band-limited click (the model rate cannot carry 22-24 kHz).
    n = np.arange(-200, 201)
    x[0, 20000 - 200:20000 + 201] = np.sinc(n * 0.8) * np.hanning(401)
    y = sep(x, sr)
    peak = np.argmax(np.abs(y[0]))
    assert abs(peak - 20000) <= 1


def test_bad_input(sep):
    with pytest.raises(TypeError, match="int16"):
        sep(np.zeros((2, 1000), np.int16), SR)
    with pytest.raises(TypeError, match="float32 or float64"):
        sep(np.zeros((2, 1000), bool), SR)
    x = noise(seconds=0.1)
    x[1, 77] = np.nan
    with pytest.raises(ValueError, match="NaN.*channel 1, sample 77"):
        sep(x, SR)
    x[1, 77] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        sep(x, SR, reset=False)
    with pytest.raises(ValueError, match="square"):
        StemSeparator(sep.model)(np.zeros((4, 4), np.float32), SR)
    with pytest.raises(ValueError, match="1-D .* or 2-D"):
        sep(np.zeros((2, 2, 100), np.float32), SR)
    for bad_sr in (0, -44100, float("nan"), "fast"):
        with pytest.raises(ValueError, match="sample_rate"):
            sep(noise(seconds=0.1), bad_sr)
    with pytest.raises(ValueError, match="buffer_size"):
        sep(noise(seconds=0.1), SR, buffer_size=0)
    with pytest.raises(ValueError, match="unknown stem 'voice'"):
        sep.set_gain("voice", 3)
    with pytest.raises(ValueError, match="mix"):
        sep.mix = 1.5
    with pytest.raises(ValueError, match="mask_mode"):
        sep.mask_mode = "hard"
    with pytest.raises(ValueError, match="finite"):
        sep.set_gain("vocals", float("nan"))


def test_nan_does_not_poison_state(sep):
    x = music_like(seconds=0.5)
    first = sep(x[:, :8000], SR, reset=False)
    bad = x[:, 8000:9000].copy()
    bad[0, 5] = np.nan
    with pytest.raises(ValueError):
        sep(bad, SR, reset=False)
    rest = stream(sep, x[:, 8000:], 1000)
    assert np.max(np.abs(np.concatenate([first, rest], axis=1) - sep(x, SR))) <= 1e-5


def test_empty_and_tiny_input(sep):
    assert sep(np.zeros(0, np.float32), SR).shape == (0,)
    assert sep(np.zeros((2, 0), np.float32), SR).shape == (2, 0)
    one = np.array([[0.5], [0.25]], np.float32)
    sep2 = StemSeparator(sep.model)
    sep2(noise(seconds=0.01), SR)  # learn the layout
    y = sep2(one, SR)
    assert y.shape == (2, 1) and dbfs(y - one) <= -80
    assert sep.flush().shape[-1] == 0


def test_empty_block_announces_layout(sep):
    assert sep(np.zeros((2, 0), np.float32), SR, reset=False).shape == (2, 0)
    x = music_like(seconds=0.05)
    got = stream(sep, x, 1)
    assert np.max(np.abs(got - sep(x, SR))) <= 1e-5


def test_layout_cached_for_tiny_blocks(sep):
    x = music_like(seconds=0.1)
    ref = sep(x, SR)
    got = stream(sep, x, 2)  # (2, 2) blocks are square: the cached layout decides
    assert np.max(np.abs(got - ref)) <= 1e-5


def test_channel_change_mid_stream(sep):
    sep(noise(seconds=0.1), SR, reset=False)
    with pytest.raises(ValueError, match="channel count changed"):
        sep(noise(channels=1, seconds=0.1)[0], SR, reset=False)
    with pytest.raises(ValueError, match="sample rate changed"):
        sep(noise(seconds=0.1), 48000, reset=False)


def test_pedalboard_contract(sep):
    assert sep.is_effect and not sep.is_instrument
    assert callable(sep.reset)
    assert "vocals" in repr(sep)


def test_top_level_separate(model_path):
    import stemboard

    x = music_like(seconds=0.3)
    stems = stemboard.separate(x.T, SR, model=model_path, stems=["vocals", "other"])
    assert list(stems) == ["vocals", "other"] and stems["vocals"].shape == x.T.shape
    assert stemboard._loaded_model(model_path) is stemboard._loaded_model(model_path)
