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


@numba.njit(cache=True, nogil=True)
def apply_masks(spec, masks, gains, n_model_bins):
    """Combine per-stem masks with per-stem gains into one masked spectrum.

    Parameters
    ----------
    spec : ndarray, shape (channels, frames, bins), complex64
    masks : ndarray, shape (channels, stems, frames, n_model_bins), float32
        Masks that sum to one over stems. Bins at or above ``n_model_bins``
        reuse the mask of the top model bin (the documented high-band rule).
    gains : ndarray, shape (stems,), float32
        Linear gain per stem.
    n_model_bins : int

    Returns
    -------
    ndarray, shape (channels, frames, bins), complex64
    """
    n_ch, n_frames, n_bins = spec.shape
    n_stems = masks.shape[1]
    out = np.empty_like(spec)
    top = n_model_bins - 1
    for c in range(n_ch):
        for t in range(n_frames):
            for f in range(n_bins):
                mf = f if f < n_model_bins else top
                g = np.float32(0.0)
                for s in range(n_stems):
                    g += gains[s] * masks[c, s, t, mf]
                out[c, t, f] = spec[c, t, f] * g
    return out
