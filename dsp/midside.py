"""Mid/side coding of stereo signals and spectra.

Separating the mid ``(L + R) / 2`` and side ``(L - R) / 2`` signals instead of
left and right puts every centre-panned source (usually the lead vocal, bass
and kick) in the mid only, at the same level but with the hard-panned
instruments at half their level, and leaves the side to the wide sources.  Both
maps are linear and exact inverses, so stems separated in mid/side still add up
to the mixture.

Both functions write into one new array of the input's shape (a few whole-array
passes: the engine calls them on every block and every output), or decoding,
into the input itself.
"""
import numpy as np

#: Samples per row decoded at a time in place: the temporary stays in cache.
_CHUNK = 1 << 14


def _sum_and_difference(x, axis, dtype):
    """``[x0 + x1, x0 - x1]`` along ``axis`` (length 2), in one new ``dtype`` array."""
    out = np.empty(x.shape, dtype)
    src, dst = np.moveaxis(x, axis, 0), np.moveaxis(out, axis, 0)
    # [0, ...] rather than [0]: a view even of a 1-D pair, where [0] is a scalar.
    np.add(src[0, ...], src[1, ...], out=dst[0, ...])
    np.subtract(src[0, ...], src[1, ...], out=dst[1, ...])
    return out


def to_mid_side(x, axis=0):
    """Left/right -> mid/side along ``axis`` (length 2); same shape, float dtype."""
    x = np.asarray(x)
    out = _sum_and_difference(x, axis, np.result_type(x.dtype, np.float32))
    out *= out.dtype.type(0.5)
    return out


def from_mid_side(x, axis=0, *, in_place=False):
    """Mid/side -> left/right along ``axis`` (length 2): ``L = M + S``, ``R = M - S``.

    With ``in_place``, ``x`` (a float ndarray) is overwritten and returned: the
    same values without a new array of its size (an offline render decodes
    every stem of the whole file).
    """
    x = np.asarray(x)
    if not in_place:
        return _sum_and_difference(x, axis, x.dtype)
    if x.ndim == 1:
        x[...] = _sum_and_difference(x, axis, x.dtype)
        return x
    src = np.moveaxis(x, axis, 0)
    mid, side = src[0], src[1]
    for a in range(0, mid.shape[-1], _CHUNK):
        m, s = mid[..., a:a + _CHUNK], side[..., a:a + _CHUNK]
        difference = m - s
        np.add(m, s, out=m)
        s[...] = difference
    return x
