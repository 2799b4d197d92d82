"""The ``"log1p"`` input normalisation of mask models: one definition for the
engine's Numba kernel, the runtime's numpy reference and training's torch code.

A manifest describes it as ``"input_normalization": {"type": "log1p", "scale": s,
"mean": m, "std": d}`` (``mean`` and ``std`` a number or one per model bin), and
the graph's input is ``(log1p(s * |X|) - m) / d`` for the STFT magnitudes ``|X|``.
Numpy only here, so the manifest can import it without Numba.
"""
import numpy as np

#: The manifest's ``input_normalization.type`` for this normalisation.
LOG1P = "log1p"


def log1p_normalization(log1p=np.log1p):
    """The normalisation, built on an array library's ``log1p``.

    Parameters
    ----------
    log1p : callable
        ``np.log1p`` (default), ``torch.log1p``, ...

    Returns
    -------
    callable
        ``normalize(magnitude, scale, mean, std)``: ``(log1p(scale * magnitude)
        - mean) / std``, elementwise with broadcasting (``magnitude`` of any
        shape; ``mean`` and ``std`` broadcast against it).  Wrapped in
        ``numba.njit`` it is the kernel's per-value step
        (:func:`stemboard.dsp.kernels.log_features`).
    """
    def normalize(magnitude, scale, mean, std):
        return (log1p(scale * magnitude) - mean) / std
    return normalize


#: :func:`log1p_normalization` on numpy arrays.
normalize_log1p = log1p_normalization()
