"""Numba kernels shared by the offline and the streaming STFT.

Both paths call these same functions, which is what makes streaming output
equal offline output: the arithmetic per frame is identical.
"""
import numba
import numpy as np
import rocket_fft  # noqa: F401  (registers numpy.fft / scipy.fft support inside @njit)

# rocket-fft registers itself on import; keep the import even though unused.


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
                frames[c, j, i] = buf[c, start + i] * window[i]
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
                        v = (np.log1p(scale * v) - mean[f]) / std[f]
                    out[c, f, t] = v
    return out


@numba.njit(cache=True, nogil=True)
def masked_overlap_add(spec, raw, gains, n_model_bins, high_stem, binary, ola, n_fft, hop,
                       synth_window):
    """Mask, inverse FFT and overlap-add every output, frame by frame.

    Raw model masks are normalised to sum to exactly one over stems here
    (negative and NaN values count as zero; a bin no stem claims is split
    evenly), so an output with unit gains reproduces the input and outputs
    with one-hot gains add up to it. Working frame by frame keeps the masked
    spectra out of memory: only ``hop`` samples per frame and output are kept.

    Parameters
    ----------
    spec : ndarray, shape (channels, frames, bins), complex64
    raw : ndarray, shape (channels, stems, n_model_bins, frames), float32
        The model's output as the graph returns it.
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
        Overlap-add state per output, updated in place.
    n_fft, hop : int
    synth_window : ndarray, shape (n_fft,), float32

    Returns
    -------
    ndarray, shape (outputs, channels, frames * hop), float32
    """
    n_ch, n_frames, n_bins = spec.shape
    n_stems = raw.shape[1]
    n_out = gains.shape[0]
    out = np.empty((n_out, n_ch, n_frames * hop), np.float32)
    # Frames go through in tiles: big enough for a batched inverse FFT, small
    # enough that the masked spectra stay in cache.
    tile = 32
    masked = np.empty((n_out, tile, n_bins), np.complex64)
    rt = np.empty((n_stems, tile, n_model_bins), np.float32)
    g = np.empty(n_model_bins, np.float32)
    total = np.empty(n_model_bins, np.float32)
    best = np.empty(n_model_bins, np.float32)
    arg = np.empty(n_model_bins, np.int64)
    even = np.empty(n_out, np.float32)
    for o in range(n_out):
        even[o] = gains[o].mean()
    top = n_model_bins - 1
    keep = n_fft - hop
    for c in range(n_ch):
        for t0 in range(0, n_frames, tile):
            n_t = min(tile, n_frames - t0)
            # Transpose this tile of masks to frame-major in a small buffer, so
            # every loop below runs along contiguous bins.
            for s in range(n_stems):
                for f in range(n_model_bins):
                    for j in range(n_t):
                        v = raw[c, s, f, t0 + j]
                        rt[s, j, f] = v if v > 0 else np.float32(0.0)  # NaN -> 0 too
            for j in range(n_t):
                t = t0 + j
                total[:] = 0.0
                for s in range(n_stems):
                    for f in range(n_model_bins):
                        total[f] += rt[s, j, f]
                if binary:  # the largest stem per bin (first on ties, as argmax)
                    best[:] = -1.0
                    arg[:] = 0
                    for s in range(n_stems):
                        for f in range(n_model_bins):
                            if rt[s, j, f] > best[f]:
                                best[f] = rt[s, j, f]
                                arg[f] = s
                for o in range(n_out):
                    if binary:
                        for f in range(n_model_bins):
                            g[f] = gains[o, arg[f]]
                    else:
                        g[:] = 0.0
                        for s in range(n_stems):
                            gs = gains[o, s]
                            if gs != 0.0:
                                for f in range(n_model_bins):
                                    g[f] += gs * rt[s, j, f]
                        for f in range(n_model_bins):
                            if total[f] > 1e-12:
                                g[f] = g[f] / total[f]
                    for f in range(n_model_bins):
                        if total[f] <= 1e-12:
                            g[f] = even[o]
                        masked[o, j, f] = spec[c, t, f] * g[f]
                    # Bins above the model: the top bin's mask, or one stem's whole.
                    held = g[top] if high_stem < 0 else gains[o, high_stem]
                    for f in range(n_model_bins, n_bins):
                        masked[o, j, f] = spec[c, t, f] * held
            frames = np.fft.irfft(masked[:, :n_t], n_fft, axis=-1)
            for o in range(n_out):
                acc = ola[o, c]
                for j in range(n_t):
                    for i in range(n_fft):
                        acc[i] += frames[o, j, i] * synth_window[i]
                    base = (t0 + j) * hop
                    for i in range(hop):
                        out[o, c, base + i] = acc[i]
                    for i in range(keep):
                        acc[i] = acc[i + hop]
                    for i in range(keep, n_fft):
                        acc[i] = 0.0
    return out
