"""Numba kernels shared by the offline and the streaming STFT.

Both paths call these same functions, which is what makes streaming output
equal offline output: the arithmetic per frame is identical.
"""
import numba
import numpy as np
import rocket_fft  # noqa: F401  (registers numpy.fft / scipy.fft support inside @njit)
from rocket_fft.lowlevel import c2r

# rocket-fft registers itself on import; keep the import even though unused.

from stemboard.dsp.normalization import log1p_normalization

#: The smallest normal float32.  Values below it are subnormal: arithmetic on
#: them can take a microcode assist on x86 (no flush-to-zero is set: that is a
#: per-thread CPU mode, and setting it would change the caller's numerics), so
#: the kernels zero them where they can arise (issue 28).
TINY = np.float32(np.finfo(np.float32).tiny)


@numba.njit(cache=True, nogil=True)
def analyze_frames(buf, n_frames, n_fft, hop, window):
    """Window and FFT ``n_frames`` frames of ``buf``.

    Parameters
    ----------
    buf : ndarray, shape (channels, samples), float32
        Frame ``j`` is ``buf[:, j*hop : j*hop + n_fft]``.
    n_frames : int
    n_fft, hop : int
    window : ndarray, shape (n_fft,), float32

    Returns
    -------
    ndarray, shape (channels, n_frames, n_fft // 2 + 1), complex64
    """
    n_ch = buf.shape[0]
    frames = np.empty((n_ch, n_frames, n_fft), np.float32)
    for c in range(n_ch):
        for j in range(n_frames):
            start = j * hop
            for i in range(n_fft):
                v = buf[c, start + i] * window[i]
                # Subnormal samples (a float32 fade's last bits) would slow the
                # FFT; zeroing them moves nothing above 1e-38.  NaN stays NaN.
                frames[c, j, i] = np.float32(0.0) if abs(v) < TINY else v
    return np.fft.rfft(frames, axis=-1)


@numba.njit(cache=True, nogil=True)
def overlap_add(spec, ola, n_fft, hop, synth_window):
    """Inverse FFT ``spec`` frame by frame and overlap-add into ``ola``.

    Each frame completes ``hop`` output samples, which are returned; the
    overlap-add state ``ola`` is updated in place so the next call continues
    seamlessly.

    Parameters
    ----------
    spec : ndarray, shape (channels, frames, n_fft // 2 + 1), complex64
    ola : ndarray, shape (channels, n_fft), float32
        Running overlap-add buffer (state, modified in place).
    n_fft, hop : int
    synth_window : ndarray, shape (n_fft,), float32

    Returns
    -------
    ndarray, shape (channels, frames * hop), float32
    """
    n_ch = spec.shape[0]
    n_frames = spec.shape[1]
    out = np.empty((n_ch, n_frames * hop), np.float32)
    if n_frames == 0:
        return out
    frames = np.fft.irfft(spec, n_fft, axis=-1)
    keep = n_fft - hop
    for c in range(n_ch):
        for j in range(n_frames):
            for i in range(n_fft):
                ola[c, i] += frames[c, j, i] * synth_window[i]
            base = j * hop
            for i in range(hop):
                out[c, base + i] = ola[c, i]
            for i in range(keep):
                ola[c, i] = ola[c, i + hop]
            for i in range(keep, n_fft):
                ola[c, i] = 0.0
    return out


#: The input normalisation's one definition (:mod:`stemboard.dsp.normalization`),
#: inlined into :func:`log_features`.
_normalize_log1p = numba.njit(cache=True, nogil=True, inline="always")(log1p_normalization())


@numba.njit(cache=True, nogil=True, fastmath=True)
def log_features(spec, n_model_bins, log, scale, mean, std):
    """Model input features from a spectrum, in one pass.

    Parameters
    ----------
    spec : ndarray, shape (channels, frames, bins), complex64
        Finite values (inputs are checked for NaN/inf before the STFT).
    n_model_bins : int
    log : bool
        ``True``: ``(log1p(scale * |X|) - mean) / std``; ``False``: ``|X|``.
    scale : float
    mean, std : ndarray, shape (n_model_bins,), float32

    Returns
    -------
    ndarray, shape (channels, n_model_bins, frames), float32
    """
    n_ch, n_frames = spec.shape[0], spec.shape[1]
    out = np.empty((n_ch, n_model_bins, n_frames), np.float32)
    scale = np.float32(scale)
    tile = 32  # transpose in tiles so both reads and writes stay in cache
    for c in range(n_ch):
        for t0 in range(0, n_frames, tile):
            t1 = min(t0 + tile, n_frames)
            for f in range(n_model_bins):
                for t in range(t0, t1):
                    z = spec[c, t, f]
                    v = np.sqrt(z.real * z.real + z.imag * z.imag)
                    if log:
                        v = _normalize_log1p(v, scale, mean[f], std[f])
                    elif v < TINY:  # raw magnitudes: no subnormal into the graph
                        v = np.float32(0.0)
                    out[c, f, t] = v
    return out


#: Mask values at or below this count as zero.  The graphs' softmax/sigmoid
#: outputs underflow to subnormal floats for confidently absent stems (3.3 % of
#: the offline model's mask values on the speed benchmark's signal), and
#: arithmetic on subnormals can take a microcode assist on x86.  Zeroing them
#: changes a normalised mask by at most ``stems * MASK_FLOOR / 1e-12`` (bins
#: whose total is below 1e-12 are split evenly anyway), far below float32
#: resolution for any mask that matters.
MASK_FLOOR = np.float32(1e-20)

#: A bin whose masks add up to no more than this is split evenly.  (As a
#: float32 it compares with float32 totals exactly as the double 1e-12 does.)
TOTAL_FLOOR = np.float32(1e-12)

#: Frames whose mask gains :func:`masked_overlap_add` computes at once.  The
#: masks are read along their rows (frames): longer runs miss the cache less
#: (the gains of 64 frames at once took 0.6x the time of 32 in a micro-benchmark),
#: but the span's gains must stay in the L2 cache while its tiles use them.
SPAN = 64

#: Calls of fewer frames than this (streaming) go frame by frame.
FEW_FRAMES = 4

#: Frames per batched inverse FFT, within a span.  The spectrum, masked
#: spectrum and frames of a tile (24 kB per frame for n_fft 2048) and the
#: span's gains stay in the L2 cache.
TILE = 32


@numba.njit(cache=True, nogil=True)
def flush_tiny(a, floor):
    """Zero the values of ``a`` whose magnitude is below ``floor``, in place.

    Used on graph outputs (masks, recurrent states) so no subnormal float
    reaches the next graph run or the numpy code between; NaN is left alone
    (the mask kernel treats it as zero).

    Parameters
    ----------
    a : ndarray, float32, C-contiguous
    floor : float
    """
    flat = a.reshape(-1)
    for i in range(flat.size):
        if abs(flat[i]) < floor:
            flat[i] = 0.0


@numba.njit(cache=True, nogil=True, inline="always")
def _bin_major(spec, c, t0, n_t, sft):
    """``sft[f, j] = spec[c, t0 + j, f]``: frame rows read in order (the writes
    land in ``sft``, small enough to stay in cache; blocking the loops was
    3.7x slower here)."""
    n_bins = spec.shape[2]
    for j in range(n_t):
        for f in range(n_bins):
            sft[f, j] = spec[c, t0 + j, f]


@numba.njit(cache=True, nogil=True, inline="always")
def _chunk_gains(raw, c, t0, n_t, gains, used, n_used, binary, even, r, tot, top, G):
    """Normalised mask gain ``G[o, f, j]`` of every output, model bin and frame
    ``t0 + j``.

    Every loop runs along the frames (contiguous in ``raw``) and stores
    unconditionally (selects, not branches), so each one vectorises; arrays
    are indexed rather than sliced (a slice is a reference-counted view, and
    the counting cost more than the arithmetic).  Each output takes one pass
    per stem it uses (``used[o, :n_used[o]]``), the division fused into the
    last; the sums are those of ``(0 + g0 * m0 + g1 * m1 + ...) / total`` in
    stem order.
    """
    n_stems, n_model_bins = raw.shape[1], raw.shape[2]
    n_out = gains.shape[0]
    zero = np.float32(0.0)
    for f in range(n_model_bins):
        for s in range(n_stems):
            for j in range(n_t):
                v = raw[c, s, f, t0 + j]
                v = v if v > MASK_FLOOR else zero  # NaN and negatives -> 0 too
                r[s, j] = v
                # v is never -0.0, so the first stem's 0 + v is v itself.
                tot[j] = tot[j] + v if s else v
        for o in range(n_out):
            e = even[o]
            k = n_used[o]
            if binary:  # the largest stem per bin (first on ties, as argmax)
                for j in range(n_t):
                    top[j] = -1.0
                for s in range(n_stems):
                    gs = gains[o, s]
                    for j in range(n_t):
                        larger = r[s, j] > top[j]
                        top[j] = r[s, j] if larger else top[j]
                        G[o, f, j] = gs if larger else G[o, f, j]
                for j in range(n_t):
                    G[o, f, j] = G[o, f, j] if tot[j] > TOTAL_FLOOR else e
            elif k == 0:
                for j in range(n_t):
                    G[o, f, j] = zero if tot[j] > TOTAL_FLOOR else e
            else:
                for i in range(k - 1):
                    s = used[o, i]
                    gs = gains[o, s]
                    for j in range(n_t):
                        G[o, f, j] = G[o, f, j] + gs * r[s, j] if i else gs * r[s, j]
                s = used[o, k - 1]
                gs = gains[o, s]
                for j in range(n_t):
                    g = G[o, f, j] + gs * r[s, j] if k > 1 else gs * r[s, j]
                    G[o, f, j] = g / tot[j] if tot[j] > TOTAL_FLOOR else e


@numba.njit(cache=True, nogil=True, inline="always")
def _apply_gains(sft, G, o, j0, n_t, n_model_bins, high_stem, gains, mft):
    """``mft[f, j] = sft[f, j] * G[o, f, j0 + j]``; bins above the model get the top
    bin's gain (``high_stem < 0``) or that stem's whole.  Indexed, not sliced
    (see :func:`_chunk_gains`)."""
    n_bins = sft.shape[0]
    top = n_model_bins - 1
    for f in range(n_bins):
        if f < n_model_bins or high_stem < 0:
            fg = min(f, top)
            for j in range(n_t):
                z = sft[f, j]
                g = G[o, fg, j0 + j]
                # A complex times a real, written out: half the multiplies of a
                # complex product (same result; the imaginary part of g is zero).
                mft[f, j] = complex(z.real * g, z.imag * g)
        else:
            h = gains[o, high_stem]
            for j in range(n_t):
                z = sft[f, j]
                mft[f, j] = complex(z.real * h, z.imag * h)


@numba.njit(cache=True, nogil=True, inline="always")
def soft_frame_gains(r, total, gains, o, e, g):
    """``g[f]``: output ``o``'s normalised soft-mask gain in model bin ``f`` of one
    frame, from that frame's floored masks ``r`` (stems, model bins) and their sums
    ``total``; ``e`` where no stem claims the bin.  Sums in stem order."""
    zero = np.float32(0.0)
    n_stems, n_model_bins = r.shape
    g[:] = zero
    for s in range(n_stems):
        gs = gains[o, s]
        if gs != 0.0:
            for f in range(n_model_bins):
                g[f] += gs * r[s, f]
    for f in range(n_model_bins):
        g[f] = g[f] / total[f] if total[f] > TOTAL_FLOOR else e


@numba.njit(cache=True, nogil=True, inline="always")
def mask_frame(spec, c, t, g, h, masked):
    """``masked[f] = spec[c, t, f] * g[f]`` in the model bins, ``* h`` above them."""
    n_model_bins = g.shape[0]
    for f in range(n_model_bins):
        z = spec[c, t, f]
        masked[f] = complex(z.real * g[f], z.imag * g[f])
    for f in range(n_model_bins, spec.shape[2]):
        z = spec[c, t, f]
        masked[f] = complex(z.real * h, z.imag * h)


@numba.njit(cache=True, nogil=True, inline="always")
def _add_frame(frame, out, tail, base):
    """Add ``frame`` at sample ``base`` of ``out`` continued by ``tail``."""
    n = frame.shape[0]
    inside = min(n, out.shape[0] - base)
    dst = out[base:base + inside]
    for i in range(inside):
        dst[i] += frame[i]
    rest = tail[base + inside - out.shape[0]:base + n - out.shape[0]]
    for i in range(n - inside):
        rest[i] += frame[inside + i]


@numba.njit(cache=True, nogil=True, inline="always")
def _add_windowed(frame, synth_window, out, tail, base):
    """Overlap-add one windowed frame at sample ``base`` of ``out`` continued by
    ``tail`` (slices, so the loops vectorise)."""
    n = frame.shape[0]
    inside = min(n, out.shape[0] - base)
    dst = out[base:base + inside]
    for i in range(inside):
        dst[i] += frame[i] * synth_window[i]
    rest = tail[base + inside - out.shape[0]:base + n - out.shape[0]]
    for i in range(n - inside):
        rest[i] += frame[inside + i] * synth_window[inside + i]


@numba.njit(cache=True, nogil=True)
def _masked_overlap_add_chunks(spec, raw, gains, n_model_bins, high_stem, binary, n_fft, hop,
                               synth_window, out, c0, start, tails, even, used, n_used):
    """The frames of :func:`masked_overlap_add` in spans and tiles, bin-major."""
    n_ch, n_frames, n_bins = spec.shape
    end = start + n_frames * hop
    n_stems = raw.shape[1]
    n_out = gains.shape[0]
    span = min(SPAN, n_frames)
    tile = min(TILE, n_frames)
    sft = np.empty((n_bins, tile), np.complex64)
    mft = np.empty((n_bins, tile), np.complex64)
    G = np.empty((n_out, n_model_bins, span), np.float32)
    frames = np.empty((tile, n_fft), np.float32)
    r = np.empty((n_stems, span), np.float32)
    total = np.empty(span, np.float32)
    best = np.empty(span, np.float32)
    axes = np.array([1])
    scale = 1.0 / n_fft
    for c in range(n_ch):
        for s0 in range(0, n_frames, span):
            n_s = min(span, n_frames - s0)
            _chunk_gains(raw, c, s0, n_s, gains, used, n_used, binary, even, r, total, best,
                         G)
            for t0 in range(s0, s0 + n_s, tile):
                n_t = min(tile, s0 + n_s - t0)
                _bin_major(spec, c, t0, n_t, sft)
                for o in range(n_out):
                    _apply_gains(sft, G, o, t0 - s0, n_t, n_model_bins, high_stem, gains, mft)
                    # The inverse FFTs read the bin-major tile through a transposed view.
                    c2r(mft[:, :n_t].T, frames[:n_t], axes, False, scale, 1)
                    for j in range(n_t):
                        _add_windowed(frames[j], synth_window, out[o, c0 + c, start:end],
                                      tails[o, c], (t0 + j) * hop)


@numba.njit(cache=True, nogil=True)
def _masked_overlap_add_frames(spec, raw, gains, n_model_bins, high_stem, binary, n_fft, hop,
                               synth_window, out, c0, start, tails, even, frame_major):
    """The frames of :func:`masked_overlap_add` one by one, along the bins, with the
    inverse FFTs batched over :data:`TILE` frames.  For frame-major masks (every read
    contiguous) and for a streaming call's frame or two, which cannot spread the
    bin-major path's per-bin set-up.  The same arithmetic and sums in the same
    order, so the output depends neither on the path nor on the masks' layout."""
    n_ch, n_frames, n_bins = spec.shape
    end = start + n_frames * hop
    n_stems = raw.shape[2] if frame_major else raw.shape[1]
    n_out = gains.shape[0]
    top = n_model_bins - 1
    zero = np.float32(0.0)
    tile = max(1, min(TILE, n_frames))
    r = np.empty((n_stems, n_model_bins), np.float32)
    total = np.empty(n_model_bins, np.float32)
    best = np.empty(n_model_bins, np.float32)
    arg = np.empty(n_model_bins, np.int64)
    g = np.empty(n_model_bins, np.float32)
    masked = np.empty((n_out, tile, n_bins), np.complex64)
    frames = np.empty((n_out, tile, n_fft), np.float32)
    axes = np.array([2])
    scale = 1.0 / n_fft
    for c in range(n_ch):
        for t0 in range(0, n_frames, tile):
            n_t = min(tile, n_frames - t0)
            for j in range(n_t):
                t = t0 + j
                for s in range(n_stems):
                    for f in range(n_model_bins):
                        v = raw[c, t, s, f] if frame_major else raw[c, s, f, t]
                        v = v if v > MASK_FLOOR else zero  # NaN and negatives -> 0 too
                        r[s, f] = v
                        total[f] = total[f] + v if s else v
                if binary:  # the largest stem per bin (first on ties, as argmax)
                    for f in range(n_model_bins):
                        best[f] = -1.0
                        arg[f] = 0
                    for s in range(n_stems):
                        for f in range(n_model_bins):
                            larger = r[s, f] > best[f]
                            best[f] = r[s, f] if larger else best[f]
                            arg[f] = s if larger else arg[f]
                for o in range(n_out):
                    e = even[o]
                    if binary:
                        for f in range(n_model_bins):
                            g[f] = gains[o, arg[f]] if total[f] > TOTAL_FLOOR else e
                    else:
                        soft_frame_gains(r, total, gains, o, e, g)
                    h = g[top] if high_stem < 0 else gains[o, high_stem]
                    mask_frame(spec, c, t, g, h, masked[o, j])
            c2r(masked[:, :n_t], frames[:, :n_t], axes, False, scale, 1)
            for o in range(n_out):
                for j in range(n_t):
                    _add_windowed(frames[o, j], synth_window, out[o, c0 + c, start:end],
                                  tails[o, c], (t0 + j) * hop)


@numba.njit(cache=True, nogil=True)
def masked_overlap_add(spec, raw, gains, n_model_bins, high_stem, binary, ola, n_fft, hop,
                       synth_window, frame_major=False):
    """Mask, inverse FFT and overlap-add every output, a few frames at a time.

    Raw model masks are normalised to sum to exactly one over stems here
    (negative, NaN and values at or below :data:`MASK_FLOOR` count as zero; a
    bin no stem claims is split evenly), so an output with unit gains
    reproduces the input and outputs with one-hot gains add up to it.

    Frame-major masks (what the shipped graphs emit) and streaming calls of
    fewer than :data:`FEW_FRAMES` frames are masked frame by frame, every read
    contiguous, with the inverse FFTs of all outputs batched over :data:`TILE`
    frames.  Bin-major masks in larger calls have their gains worked out
    :data:`SPAN` frames at a time along the masks' rows, then :data:`TILE`
    frames are masked bin-major and inverse FFT'd straight from that layout.
    Either way the frames are added into the returned samples, and the
    arithmetic and the order of every sum are those of a frame-by-frame masked
    inverse STFT, so the result depends neither on the path nor on how a
    stream is cut into calls.

    Parameters
    ----------
    spec : ndarray, shape (channels, frames, bins), complex64
    raw : ndarray, shape (channels, stems, n_model_bins, frames), float32
        The model's output as the graph returns it; with ``frame_major``,
        (channels, frames, stems, n_model_bins), as a graph whose manifest says
        ``"mask_layout": "frames"`` returns it.
    gains : ndarray, shape (outputs, stems), float32
        Linear gain per output and stem.
    n_model_bins : int
    high_stem : int
        What the bins at or above ``n_model_bins`` get: ``-1``, the mask of the
        top model bin (the manifest's ``hold_top_bin`` rule); a stem index,
        all of that stem (``to_stem``).
    binary : bool
        Give each bin wholly to its largest stem (the article's binary masks).
    ola : ndarray, shape (outputs, channels, n_fft), float32
        Overlap-add state per output, updated in place: the first
        ``n_fft - hop`` samples are the pending sums, the rest zeros.
    n_fft, hop : int
    synth_window : ndarray, shape (n_fft,), float32
    frame_major : bool
        The layout of ``raw``.  Frame-major masks are read frame by frame, every
        read contiguous; bin-major ones span by span along their rows.

    Returns
    -------
    ndarray, shape (outputs, channels, frames * hop), float32
    """
    out = np.empty((gains.shape[0], spec.shape[0], spec.shape[1] * hop), np.float32)
    masked_overlap_add_into(spec, raw, gains, n_model_bins, high_stem, binary, ola, n_fft,
                            hop, synth_window, frame_major, out, 0, 0)
    return out


@numba.njit(cache=True, nogil=True)
def masked_overlap_add_into(spec, raw, gains, n_model_bins, high_stem, binary, ola, n_fft, hop,
                            synth_window, frame_major, out, c0, start):
    """:func:`masked_overlap_add`, written into part of a larger array.

    Output ``o`` of channel ``c`` lands in ``out[o, c0 + c, start:start +
    frames * hop]``, overwriting it, so a renderer can hand over the whole
    file's output and skip copying each block into it.  ``out`` is the whole
    C-contiguous array rather than a slice of it so that each row stays a
    contiguous array to Numba and the loops still vectorise.

    Parameters
    ----------
    out : ndarray, shape (>= outputs, >= c0 + channels, >= start + frames * hop), float32
    c0, start : int
    """
    n_ch, n_frames, n_bins = spec.shape
    n_stems = raw.shape[2] if frame_major else raw.shape[1]
    n_out = gains.shape[0]
    keep = n_fft - hop
    # Zeroed, then the pending state and every frame are added in frame order:
    # the same sums, in the same order, as a running overlap-add buffer.
    end = start + n_frames * hop
    for o in range(n_out):
        for c in range(n_ch):
            out[o, c0 + c, start:end] = 0.0
    if n_frames == 0:
        return
    # tails[o, c]: the samples past this call's end, the next call's pending state.
    tails = np.zeros((n_out, n_ch, keep), np.float32)
    even = np.empty(n_out, np.float32)
    used = np.empty((n_out, n_stems), np.int64)     # the stems each output mixes
    n_used = np.zeros(n_out, np.int64)
    for o in range(n_out):
        even[o] = gains[o].mean()
        for s in range(n_stems):
            if gains[o, s] != 0.0:
                used[o, n_used[o]] = s
                n_used[o] += 1
    for c in range(n_ch):
        for o in range(n_out):
            # The pending state covers samples 0 .. n_fft - 1 of this call.
            _add_frame(ola[o, c], out[o, c0 + c, start:end], tails[o, c], 0)
    if frame_major or n_frames < FEW_FRAMES:
        _masked_overlap_add_frames(spec, raw, gains, n_model_bins, high_stem, binary, n_fft,
                                   hop, synth_window, out, c0, start, tails, even, frame_major)
    else:
        _masked_overlap_add_chunks(spec, raw, gains, n_model_bins, high_stem, binary, n_fft,
                                   hop, synth_window, out, c0, start, tails, even, used,
                                   n_used)
    for c in range(n_ch):
        for o in range(n_out):
            ola[o, c, :keep] = tails[o, c]
            ola[o, c, keep:] = 0.0
