"""STFT/ISTFT core: perfect reconstruction and streaming == offline."""
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from stemboard.dsp import StftGrid, StreamingAnalyzer, istft, num_frames, stft

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from benchlib import StreamingSynthesizer  # noqa: E402  (a test/bench reference only)
from stemboard.dsp import kernels  # noqa: E402

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


def _reference_render(spec, raw, gains, mb, high_stem, binary, n):
    """Normalise masks, extend them above the model, multiply, istft: per output."""
    from stemboard.models import normalize_masks

    masks = normalize_masks(np.nan_to_num(raw), "binary" if binary else "soft")
    if high_stem < 0:
        above = np.repeat(masks[:, :, -1:], GRID.n_bins - mb, axis=2)
    else:
        above = np.zeros(masks.shape[:2] + (GRID.n_bins - mb, masks.shape[3]), np.float32)
        above[:, high_stem] = 1.0
    full = np.concatenate([masks, above], axis=2)
    return [istft(spec * np.einsum("s,csft->ctf", g, full), n, GRID) for g in gains]


# 90 frames: more than one of the kernel's chunks (TILE), and not a multiple of it.
@pytest.mark.parametrize("n", [9000, 45000])
@pytest.mark.parametrize("binary,high_stem", [(False, -1), (True, -1), (False, 1)])
def test_masked_overlap_add_matches_reference(binary, high_stem, n):
    # The fused kernel must equal: normalise masks, hold the top bin, multiply, istft.
    rng = np.random.default_rng(7)
    mb = 300
    x = rng.standard_normal((2, n)).astype(np.float32)
    spec = stft(x, GRID)
    raw = rng.uniform(-0.2, 1, (2, 3, mb, spec.shape[1])).astype(np.float32)
    raw[0, :, 5, 3] = 0.0       # nobody's bin: split evenly
    raw[1, 1, 7, 2] = np.nan    # a broken model value counts as zero
    gains = np.array([[1, 0, 0], [0.5, 2.0, 0.0], [0, 0, 0]], np.float32)
    ola = np.zeros((3, 2, GRID.n_fft), np.float32)
    out = kernels.masked_overlap_add(spec, raw, gains, mb, high_stem, binary, ola, GRID.n_fft,
                                     GRID.hop, GRID.synthesis_window)
    for o, ref in enumerate(_reference_render(spec, raw, gains, mb, high_stem, binary, n)):
        got = out[o][:, GRID.pad:GRID.pad + n]
        assert np.max(np.abs(got - ref)) <= 1e-4


@pytest.mark.parametrize("frame_major", [False, True])
def test_masked_overlap_add_into_writes_its_rows_and_nothing_else(frame_major):
    """What the offline render uses: the same bits as a new array, written at a
    channel and sample offset of a larger output, whose other samples keep
    their values (even NaN), and the same overlap-add state after."""
    rng = np.random.default_rng(9)
    n_frames, mb = 80, 200
    spec = stft(rng.standard_normal((2, n_frames * GRID.hop)).astype(np.float32), GRID)
    spec = np.ascontiguousarray(spec[:, :n_frames])
    raw = rng.uniform(-0.1, 1, (2, 3, mb, n_frames)).astype(np.float32)
    if frame_major:
        raw = np.ascontiguousarray(raw.transpose(0, 3, 1, 2))
    gains = np.array([[1, 0, 0], [0.25, 0.5, 2.0]], np.float32)
    ola = rng.standard_normal((2, 2, GRID.n_fft)).astype(np.float32)
    ola[:, :, GRID.n_fft - GRID.hop:] = 0.0
    args = (gains, mb, -1, False)
    ola_new = ola.copy()
    want = kernels.masked_overlap_add(spec, raw, *args, ola_new, GRID.n_fft, GRID.hop,
                                      GRID.synthesis_window, frame_major)
    big = np.full((3, 4, n_frames * GRID.hop + 100), np.nan, np.float32)
    ola_into = ola.copy()
    # channel 1 of this call to row 2 of the output, from sample 60
    kernels.masked_overlap_add_into(spec[1:], raw[1:], *args, ola_into[:, 1:], GRID.n_fft,
                                    GRID.hop, GRID.synthesis_window, frame_major, big, 2, 60)
    end = 60 + n_frames * GRID.hop
    np.testing.assert_array_equal(big[:2, 2, 60:end], want[:, 1])
    np.testing.assert_array_equal(ola_into[:, 1], ola_new[:, 1])
    written = np.zeros(big.shape, bool)
    written[:2, 2, 60:end] = True
    assert np.isnan(big[~written]).all()


@pytest.mark.parametrize("binary,high_stem", [(False, -1), (True, -1), (False, 0)])
def test_masked_overlap_add_paths_agree_to_the_bit(binary, high_stem):
    """Streaming calls of a frame or two go frame by frame, offline calls in
    bin-major spans, frame-major masks frame by frame in tiles: the same sums in
    the same order, so the same bits whatever the layout and the cuts."""
    rng = np.random.default_rng(5)
    n_frames, mb = 150, 200
    spec = stft(rng.standard_normal((2, n_frames * GRID.hop)).astype(np.float32), GRID)
    spec = np.ascontiguousarray(spec[:, :n_frames])
    raw = rng.uniform(-0.1, 1, (2, 3, mb, n_frames)).astype(np.float32)
    raw[:, :, 3, 7] = 0.0
    gains = np.array([[1, 0, 0], [0.25, 0.5, 2.0]], np.float32)

    raw_fm = np.ascontiguousarray(raw.transpose(0, 3, 1, 2))   # (channels, frames, stems, bins)

    def render(cuts, frame_major=False):
        ola = np.zeros((2, 2, GRID.n_fft), np.float32)
        parts = [kernels.masked_overlap_add(
            np.ascontiguousarray(spec[:, a:b]),
            np.ascontiguousarray(raw_fm[:, a:b] if frame_major else raw[..., a:b]), gains, mb,
            high_stem, binary, ola, GRID.n_fft, GRID.hop, GRID.synthesis_window, frame_major)
            for a, b in zip(cuts[:-1], cuts[1:])]
        return np.concatenate(parts, axis=2), ola

    whole, ola_whole = render([0, n_frames])
    assert n_frames >= kernels.FEW_FRAMES
    assert n_frames % kernels.TILE                      # a last, partial tile
    for frame_major in (False, True):
        for step in (1, 2, kernels.FEW_FRAMES, 37, n_frames):
            cut, ola_cut = render(list(range(0, n_frames, step)) + [n_frames], frame_major)
            np.testing.assert_array_equal(cut, whole)
            np.testing.assert_array_equal(ola_cut, ola_whole)


def test_subnormal_masks_are_flushed_without_changing_the_output():
    """A softmax's confidently-absent stems underflow to subnormal floats; the
    kernel zeroes mask values up to MASK_FLOOR.  Against the reference, which
    keeps them, the output moves by less than 1e-7 (issue 28)."""
    rng = np.random.default_rng(11)
    n, mb = 45000, 400
    x = (0.5 * rng.uniform(-1, 1, (2, n))).astype(np.float32)
    spec = stft(x, GRID)
    logits = rng.normal(0, 40, (2, 4, mb, spec.shape[1]))
    raw = np.exp(logits - logits.max(axis=1, keepdims=True))
    raw = (raw / raw.sum(axis=1, keepdims=True)).astype(np.float32)
    tiny = np.finfo(np.float32).tiny
    subnormal = (raw > 0) & (raw < tiny)
    assert subnormal.mean() > 0.05 and ((raw > tiny) & (raw < 1e-20)).any()
    gains = np.eye(4, dtype=np.float32)
    ola = np.zeros((4, 2, GRID.n_fft), np.float32)
    out = kernels.masked_overlap_add(spec, raw, gains, mb, -1, False, ola, GRID.n_fft, GRID.hop,
                                     GRID.synthesis_window)
    refs = _reference_render(spec.astype(np.complex128), raw.astype(np.float64), gains, mb, -1,
                             False, n)
    for o, ref in enumerate(refs):
        assert np.max(np.abs(out[o][:, GRID.pad:GRID.pad + n] - ref)) < 1e-6
    # The flush itself: the same output as masks zeroed beforehand, to the bit.
    flushed = np.where(raw > kernels.MASK_FLOOR, raw, np.float32(0))
    again = kernels.masked_overlap_add(spec, flushed, gains, mb, -1, False,
                                       np.zeros_like(ola), GRID.n_fft, GRID.hop,
                                       GRID.synthesis_window)
    np.testing.assert_array_equal(out, again)


def test_flush_tiny_zeroes_only_small_values():
    a = np.array([1e-39, -1e-39, 1e-21, 1e-19, -2.0, 0.0, np.nan, np.inf], np.float32)
    kernels.flush_tiny(a, kernels.MASK_FLOOR)
    np.testing.assert_array_equal(a[:6], np.array([0, 0, 0, 1e-19, -2, 0], np.float32))
    assert np.isnan(a[6]) and a[7] == np.inf
    b = np.array([[1e-39, 1e-30]], np.float32)
    kernels.flush_tiny(b, kernels.TINY)
    np.testing.assert_array_equal(b, np.array([[0, 1e-30]], np.float32))


def test_analysis_zeroes_subnormal_samples_and_keeps_nan():
    tiny = np.finfo(np.float32).tiny
    x = np.full((1, 4096), tiny / 4, np.float32)       # subnormal, windowed or not
    assert not np.any(stft(x, GRID))
    x[0, 2000] = 0.25
    spec = stft(x, GRID)
    clean = np.zeros_like(x)
    clean[0, 2000] = 0.25
    np.testing.assert_array_equal(spec, stft(clean, GRID))
    buf = np.zeros((1, GRID.n_fft), np.float32)
    buf[0, 100] = np.nan
    assert np.isnan(kernels.analyze_frames(buf, 1, GRID.n_fft, GRID.hop, GRID.window)).any()


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
