"""Mid/side coding of stereo signals and spectra.

Separating the mid ``(L + R) / 2`` and side ``(L - R) / 2`` signals instead of
left and right puts every centre-panned source (usually the lead vocal, bass
and kick) in the mid only, at the same level but with the hard-panned
instruments at half their level, and leaves the side to the wide sources.  Both
maps are linear and exact inverses, so stems separated in mid/side still add up
to the mixture.
"""
import numpy as np


def to_mid_side(x, axis=0):
    """Left/right -> mid/side along ``axis`` (length 2); same shape and dtype."""
    x = np.asarray(x)
    left, right = np.take(x, 0, axis=axis), np.take(x, 1, axis=axis)
    half = np.asarray(0.5, x.dtype if x.dtype.kind in "fc" else np.float64)
    return np.stack([half * (left + right), half * (left - right)], axis=axis)


def from_mid_side(x, axis=0):
    """Mid/side -> left/right along ``axis`` (length 2): ``L = M + S``, ``R = M - S``."""
    x = np.asarray(x)
    mid, side = np.take(x, 0, axis=axis), np.take(x, 1, axis=axis)
    return np.stack([mid + side, mid - side], axis=axis)
