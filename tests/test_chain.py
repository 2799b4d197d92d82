"""Chain: native plugins and our processors in one latency-compensated chain."""
import numpy as np
import pedalboard as pb
import pytest

from conftest import SR, dbfs, music_like, stream
from stemboard.plugin import Chain, StemSeparator

BUFFER_SIZES = [1, 64, 65, 128, 8192, 8193]


def impulse_chain(model_path):
    return Chain([pb.Gain(0.0), StemSeparator(model_path),
                  pb.Reverb(wet_level=0.0, dry_level=0.5),  # JUCE's dry scale: 0.5 is unity
                  StemSeparator(model_path)])


@pytest.mark.parametrize("buffer_size", BUFFER_SIZES)
def test_impulse_aligned_offline(model_path, buffer_size):
    chain = impulse_chain(model_path)
    x = np.zeros((2, 12000), np.float32)
    x[:, 5000] = 1.0
    y = chain(x, SR, buffer_size=buffer_size)
    assert y.shape == x.shape
    assert np.argmax(np.abs(y[0])) == 5000
    assert dbfs(y - x) <= -80


@pytest.mark.parametrize("buffer_size", BUFFER_SIZES)
def test_impulse_aligned_streaming(model_path, buffer_size):
    chain = impulse_chain(model_path)
    n = 6000 if buffer_size == 1 else 12000
    x = np.zeros((2, n), np.float32)
    x[:, 4000] = 1.0
    # A fresh (2, 1) block reads as two mono samples (pedalboard's rule), so a
    # one-sample stream announces its layout first.
    chain.expect_layout(2)
    outs = [chain(x[:, i:i + buffer_size], SR, reset=False) for i in range(0, n, buffer_size)]
    body = np.concatenate(outs, axis=1)
    # Trimmed by both separators' latency, but aligned.
    assert body.shape[1] <= n - chain.latency_samples
    y = np.concatenate([body, chain.flush()], axis=1)
    assert y.shape == x.shape
    assert np.argmax(np.abs(y[0])) == 4000
    assert dbfs(y - x) <= -80


def test_latency_is_sum_of_parts(model_path, model_factory):
    a = StemSeparator(model_path)
    b = StemSeparator(model_factory(context=2, lookahead=0))
    chain = Chain([a, pb.Gain(1.0), Chain([b])])
    assert chain.latency_samples == a.latency_samples + b.latency_samples
    assert chain.reported_latency_samples == chain.latency_samples


def _parts(model_path):
    vocals_down = StemSeparator(model_path, gains_db={"vocals": -9.0})
    drums_muted = StemSeparator(model_path)
    drums_muted.mute("drums")
    return [pb.Gain(-3.0), vocals_down, pb.LowpassFilter(4000), drums_muted,
            pb.Compressor(threshold_db=-20, ratio=3)]


def test_offline_equals_parts_one_by_one(model_path):
    x = music_like(seconds=1.0)
    y = Chain(_parts(model_path))(x, SR)
    ref = x
    for p in _parts(model_path):
        ref = p(ref, SR)
    assert np.max(np.abs(y - ref)) <= 1e-5


@pytest.mark.parametrize("block", [64, 500, 4096, 10000])
def test_streaming_plus_flush_equals_offline(model_path, block):
    x = music_like(seconds=1.0)
    vocals_down = StemSeparator(model_path, gains_db={"vocals": -9.0})
    drums_muted = StemSeparator(model_path)
    drums_muted.mute("drums")
    # Stateful natives after our processors see blocks of varying length; they
    # must stream exactly all the same (see _NativeSegment).
    chain = Chain([pb.Gain(-3.0), vocals_down, pb.Reverb(room_size=0.6, wet_level=0.3),
                   pb.LowpassFilter(4000), drums_muted, pb.Compressor(-20, 3),
                   pb.Delay(0.01, 0.3, 0.5), pb.Chorus()])
    offline = chain(x, SR)
    y = stream(chain, x, block)
    assert y.shape == x.shape
    assert np.max(np.abs(y - offline)) <= 1e-5


def test_native_state_persists_across_blocks(model_path):
    # A reverb tail must continue across reset=False calls inside the chain.
    x = music_like(seconds=0.5)
    reverb = pb.Reverb(room_size=0.8, wet_level=0.5)
    chain = Chain([reverb])
    offline = chain(x, SR)
    y = stream(chain, x, 1000, flush=False)
    assert np.max(np.abs(y - offline)) <= 1e-5


def test_nested_chains(model_path):
    x = music_like(seconds=0.5)
    inner = Chain([pb.Gain(6.0), StemSeparator(model_path)])
    outer = Chain([inner, pb.Gain(-6.0)])
    assert dbfs(outer(x, SR) - x) <= -80
    assert dbfs(stream(outer, x, 777) - x) <= -80


def test_layout_and_mono(model_path):
    chain = Chain([pb.Gain(0.0), StemSeparator(model_path)])
    x = music_like(seconds=0.5)
    assert chain(x.T, SR).shape == x.T.shape
    assert dbfs(Chain([StemSeparator(model_path)])(x[0], SR) - x[0]) <= -80


def test_rejects_bad_members(model_path):
    with pytest.raises(TypeError, match="got str"):
        Chain(["reverb"])
    g = pb.Gain(1.0)
    with pytest.raises(ValueError, match="already in this chain"):
        Chain([g, g])
    with pytest.raises(TypeError, match="float32 or float64"):
        Chain([g])(np.zeros((2, 100), np.int32), SR)


def test_chain_wraps_a_pedalboard(model_path):
    """pedalboard.Pedalboard rejects Python plugins; Chain takes the board and adds them."""
    board = pb.Pedalboard([pb.Gain(-6), pb.LowpassFilter(4000)])
    with pytest.raises(TypeError, match="incompatible constructor arguments"):
        pb.Pedalboard([pb.Gain(-6), StemSeparator(model_path)])
    x = music_like(seconds=0.5)
    assert np.allclose(Chain(board)(x, SR), board(x, SR), atol=1e-6)
    chain = Chain([*board, StemSeparator(model_path, gains_db={"vocals": -6})])
    assert len(chain) == 3 and chain(x, SR).shape == x.shape


def test_gains_db_is_read_only(model_path):
    import copy

    sep = StemSeparator(model_path)
    with pytest.raises(TypeError, match=r"read-only; use set_gain\(stem, db\)"):
        sep.gains_db["drums"] = -12
    with pytest.raises(TypeError, match="read-only"):
        sep.gains_db.update(drums=-12)
    sep.set_gain("drums", -12)
    assert sep.gains_db == {"vocals": 0.0, "drums": -12.0, "bass": 0.0, "other": 0.0}
    editable = copy.deepcopy(sep.gains_db)
    editable["bass"] = -3  # copies are plain dicts
    assert type(editable) is dict and sep.gains_db["bass"] == 0.0
