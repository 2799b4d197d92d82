"""Mid/side coding of stereo signals and spectra.

Separating the mid ``(L + R) / 2`` and side ``(L - R) / 2`` signals instead of
left and right puts every centre-panned source (usually the lead vocal, bass
and kick) in the mid only, at the same level but with the hard-panned
instruments at half their level, and leaves the side to the wide sources.  Both
maps are linear and exact inverses, so stems separated in mid/side still add up
to the mixture.

Both functions write into one new array of the input's shape (a few whole-array
passes: the engine calls them on every block and every output).
"""
import numpy as np


def _sum_and_difference(x, axis, dtype):
    """``[x0 + x1, x0 - x1]`` along ``axis`` (length 2), in one new ``dtype`` array."""
    out = np.empty(x.shape, dtype)
    src, dst = np.moveaxis(x, axis, 0), np.moveaxis(out, axis, 0)
    np.add(src[0], src[1], out=dst[0])
    np.subtract(src[0], src[1], out=dst[1])
    return out


def to_mid_side(x, axis=0):
    """Left/right -> mid/side along ``axis`` (length 2); same shape, float dtype."""
    x = np.asarray(x)
    out = _sum_and_difference(x, axis, np.result_type(x.dtype, np.float32))
    out *= out.dtype.type(0.5)
    return out


def from_mid_side(x, axis=0):
    """Mid/side -> left/right along ``axis`` (length 2): ``L = M + S``, ``R = M - S``."""
    x = np.asarray(x)
    return _sum_and_difference(x, axis, x.dtype)
