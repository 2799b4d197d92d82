"""The mask models' input features: normalised STFT magnitudes.

The magnitudes are taken and transposed to the graph's layout in a Numba
kernel (:func:`stemboard.dsp.kernels.magnitudes`); the ``log1p``
normalisation then runs in numpy, whose ``log1p`` is vectorised (SIMD):
a scalar ``log1p`` per value inside the kernel took about 13 ns, most of the
features' time (issue 28, docs/benchmarks.md).
"""
import numpy as np

from stemboard.dsp.kernels import TINY, magnitudes
from stemboard.dsp.normalization import normalize_log1p


def log_features(spec, n_model_bins, log, scale, mean, std):
    """Model input features from a spectrum.

    Parameters
    ----------
    spec : ndarray, shape (channels, frames, bins), complex64
        Finite values (inputs are checked for NaN/inf before the STFT).
    n_model_bins : int
    log : bool
        ``True``: ``(log1p(scale * |X|) - mean) / std``
        (:mod:`stemboard.dsp.normalization`); ``False``: ``|X|``, with
        subnormal values zeroed (none reaches the graph).
    scale : float
    mean, std : ndarray, shape (n_model_bins,), float32

    Returns
    -------
    ndarray, shape (channels, n_model_bins, frames), float32
    """
    if not log:
        return magnitudes(spec, n_model_bins, TINY)
    mag = magnitudes(spec, n_model_bins, 0.0)
    return normalize_log1p(mag, np.float32(scale), np.asarray(mean, np.float32)[:, None],
                           np.asarray(std, np.float32)[:, None])
