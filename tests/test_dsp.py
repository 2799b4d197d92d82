"""STFT/ISTFT core: perfect reconstruction and streaming == offline."""
import numba
import numpy as np
import pytest

from stemboard.dsp import StftGrid, StreamingAnalyzer, StreamingSynthesizer, istft, num_frames, stft
from stemboard.dsp import kernels

GRID = StftGrid(2048, 512)


@pytest.mark.parametrize("length", [1, 2, 100, 511, 512, 513, 1536, 2048, 2049, 44117])
@pytest.mark.parametrize("channels", [1, 2])
def test_perfect_reconstruction(length, channels):
    x = np.random.default_rng(length).uniform(-1, 1, (channels, length)).astype(np.float32)
    spec = stft(x, GRID)
    assert spec.shape == (channels, num_frames(length, GRID), GRID.n_bins)
    assert spec.dtype == np.complex64
    y = istft(spec, length, GRID)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.max(np.abs(y - x)) <= 1e-5


@pytest.mark.parametrize("grid", [StftGrid(1024, 256), StftGrid(4096, 1024), StftGrid(512, 256),
                                  StftGrid(256, 32)])
def test_reconstruction_other_grids(grid):
    x = np.random.default_rng(1).uniform(-1, 1, (2, 9999)).astype(np.float32)
    assert np.max(np.abs(istft(stft(x, grid), x.shape[1], grid) - x)) <= 1e-5


def test_stft_matches_numpy_reference():
    x = np.random.default_rng(2).standard_normal((1, 5000)).astype(np.float32)
    spec = stft(x, GRID)
    padded = np.concatenate([np.zeros(GRID.pad), x[0], np.zeros(4096)])
    k = 5
    ref = np.fft.rfft(padded[k * 512:k * 512 + 2048] * GRID.window)
    assert np.allclose(spec[0, k], ref, atol=1e-3)


def test_empty_signal():
    spec = stft(np.zeros((2, 0), np.float32), GRID)
    assert spec.shape == (2, 0, GRID.n_bins)
    assert istft(spec, 0, GRID).shape == (2, 0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="multiple of hop"):
        StftGrid(2048, 500)
    with pytest.raises(ValueError, match="channels, samples"):
        stft(np.zeros(100, np.float32), GRID)
    with pytest.raises(TypeError, match="int16"):
        stft(np.zeros((1, 100), np.int16), GRID)
    with pytest.raises(ValueError, match="do not cover"):
        istft(np.zeros((1, 3, GRID.n_bins), np.complex64), 10000, GRID)


@pytest.mark.parametrize("block", [1, 64, 65, 511, 512, 4096, 8193])
@pytest.mark.parametrize("channels", [1, 2])
def test_streaming_equals_offline(block, channels):
    seconds = 0.25 if block == 1 else 1.0
    n = int(44100 * seconds) + 37
    x = np.random.default_rng(block).uniform(-1, 1, (channels, n)).astype(np.float32)
    offline = stft(x, GRID)
    ref = istft(offline, n, GRID)

    ana, syn = StreamingAnalyzer(GRID, channels), StreamingSynthesizer(GRID, channels)
    tail = GRID.n_fft  # trailing silence that completes the last frames
    padded = np.concatenate([x, np.zeros((channels, tail), np.float32)], axis=1)
    specs, outs = [], []
    for i in range(0, padded.shape[1], block):
        s = ana.push(padded[:, i:i + block])
        specs.append(s)
        outs.append(syn.push(s))
    spec_stream = np.concatenate(specs, axis=1)[:, :offline.shape[1]]
    # The synthesizer starts grid.pad samples before sample 0 (the fixed latency).
    y = np.concatenate(outs, axis=1)[:, GRID.pad:GRID.pad + n]
    assert np.max(np.abs(spec_stream - offline)) <= 1e-6
    assert np.max(np.abs(y - ref)) <= 1e-6
    assert np.max(np.abs(y - x)) <= 1e-5


def test_block_loops_are_jitted():
    # Streaming must not loop over frames in Python: the frame loops live in @njit kernels.
    for fn in (kernels.analyze_frames, kernels.overlap_add, kernels.masked_overlap_add,
               kernels.log_features):
        assert isinstance(fn, numba.core.registry.CPUDispatcher)


@pytest.mark.parametrize("binary", [False, True])
def test_masked_overlap_add_matches_reference(binary):
    # The fused kernel must equal: normalise masks, hold the top bin, multiply, istft.
    from stemboard.models import normalize_masks

    rng = np.random.default_rng(7)
    n, mb = 9000, 300
    x = rng.standard_normal((2, n)).astype(np.float32)
    spec = stft(x, GRID)
    raw = rng.uniform(-0.2, 1, (2, 3, mb, spec.shape[1])).astype(np.float32)
    raw[0, :, 5, 3] = 0.0       # nobody's bin: split evenly
    raw[1, 1, 7, 2] = np.nan    # a broken model value counts as zero
    gains = np.array([[1, 0, 0], [0.5, 2.0, 0.0]], np.float32)
    ola = np.zeros((2, 2, GRID.n_fft), np.float32)
    out = kernels.masked_overlap_add(spec, raw, gains, mb, -1, binary, ola, GRID.n_fft, GRID.hop,
                                     GRID.synthesis_window)
    masks = normalize_masks(np.nan_to_num(raw), "binary" if binary else "soft")
    full = np.concatenate([masks, np.repeat(masks[:, :, -1:], GRID.n_bins - mb, axis=2)], axis=2)
    for o, g in enumerate(gains):
        eff = np.einsum("s,csft->ctf", g, full)
        ref = istft(spec * eff, n, GRID)
        got = out[o][:, GRID.pad:GRID.pad + n]
        assert np.max(np.abs(got - ref)) <= 1e-4


@pytest.mark.parametrize("channels", [2, 3])
def test_kernels_split_over_threads_give_identical_output(monkeypatch, channels):
    """dsp.threads runs each channel's kernel call in its own thread: same bits,
    overlap-add state carried across calls through the views."""
    from stemboard.dsp import threads

    monkeypatch.setattr(threads, "_workers", lambda: 2)
    g = StftGrid(2048, 512)
    rng = np.random.default_rng(3)
    buf = rng.standard_normal((channels, 160 * 512 + 2048)).astype(np.float32)
    n = 160
    one = kernels.analyze_frames(buf, n, g.n_fft, g.hop, g.window)
    many = threads.per_channel(kernels.analyze_frames, n, (buf,), (n, g.n_fft, g.hop, g.window))
    np.testing.assert_array_equal(one, many)

    raw = rng.random((channels, 4, 513, n)).astype(np.float32)
    gains = np.eye(4, dtype=np.float32)[:3]
    ola_one = np.zeros((3, channels, g.n_fft), np.float32)
    ola_many = np.zeros_like(ola_one)

    def kernel(spec, masks, ola):
        return kernels.masked_overlap_add(spec, masks, gains, 513, -1, False, ola, g.n_fft, g.hop,
                                          g.synthesis_window)

    for part in (slice(0, 80), slice(80, n)):   # two calls: the state must carry over
        spec, masks = one[:, part], np.ascontiguousarray(raw[..., part])
        a = kernel(spec, masks, ola_one)
        b = threads.per_channel(kernel, spec.shape[1], (spec, masks, ola_many),
                                arg_axes=(0, 0, 1), axis=1)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ola_one, ola_many)
    # small calls stay on the calling thread
    calls = []
    threads.per_channel(lambda x: calls.append(x.shape) or x, 3, (buf,))
    assert calls == [buf.shape]
