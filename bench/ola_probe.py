"""A design probe for issue 28's overlap-add target, not used by the package.

:func:`frame_major_kernel` does the arithmetic of
``stemboard.dsp.kernels.masked_overlap_add`` (soft masks, ``hold_top_bin``)
frame by frame on masks laid out frame-major, ``(channels, frames, stems,
bins)``, so every read is contiguous and the spectrum needs no transpose; the
inverse FFTs are batched over ``tile`` frames.  The graphs emit masks
bin-major, ``(channels, stems, bins, frames)``; this measures what a graph
emitting them frame-major would buy, and what transposing them first costs.
Its output equals the kernel's to the bit (same sums in the same order);
``bench/overlap_add.py --frame-major`` checks that and times it beside.
"""
import numba
import numpy as np
from rocket_fft.lowlevel import c2r

from stemboard.dsp import StftGrid
from stemboard.dsp.kernels import MASK_FLOOR, mask_frame, soft_frame_gains


@numba.njit(nogil=True)
def frame_major_kernel(spec, masks_fm, gains, n_model_bins, n_fft, hop, window, out, tails,
                       tile):
    """Add every output's masked, windowed frames into ``out`` / ``tails``.

    spec : (channels, frames, bins) complex64; masks_fm : (channels, frames, stems,
    model bins) float32; gains : (outputs, stems); out : (outputs, channels,
    frames * hop), holding the pending state; tails : (outputs, channels, n_fft - hop).
    """
    n_ch, n_frames, n_bins = spec.shape
    n_stems = masks_fm.shape[2]
    n_out = gains.shape[0]
    top = n_model_bins - 1
    zero = np.float32(0.0)
    r = np.empty((n_stems, n_model_bins), np.float32)
    tot = np.empty(n_model_bins, np.float32)
    g = np.empty(n_model_bins, np.float32)
    masked = np.empty((n_out, tile, n_bins), np.complex64)
    frames = np.empty((n_out, tile, n_fft), np.float32)
    even = np.empty(n_out, np.float32)
    for o in range(n_out):
        even[o] = gains[o].mean()
    axes = np.array([2])
    scale = 1.0 / n_fft
    for c in range(n_ch):
        for t0 in range(0, n_frames, tile):
            n_t = min(tile, n_frames - t0)
            for j in range(n_t):
                t = t0 + j
                for s in range(n_stems):
                    for f in range(n_model_bins):
                        v = masks_fm[c, t, s, f]
                        v = v if v > MASK_FLOOR else zero
                        r[s, f] = v
                        tot[f] = tot[f] + v if s else v
                for o in range(n_out):
                    soft_frame_gains(r, tot, gains, o, even[o], g)
                    mask_frame(spec, c, t, g, g[top], masked[o, j])
            c2r(masked[:, :n_t], frames[:, :n_t], axes, False, scale, 1)
            for o in range(n_out):
                dst = out[o, c]
                for j in range(n_t):
                    base = (t0 + j) * hop
                    inside = min(n_fft, dst.shape[0] - base)
                    for i in range(inside):
                        dst[base + i] += frames[o, j, i] * window[i]
                    for i in range(n_fft - inside):
                        tails[o, c, base + inside - dst.shape[0] + i] += (
                            frames[o, j, inside + i] * window[inside + i])


def frame_major_call(parts, gains, manifest, *, tile=32, transpose=True):
    """A closure running :func:`frame_major_kernel` over ``parts`` as
    ``bench/overlap_add.py``'s ``kernel_call`` runs the kernel (state carried).
    ``transpose``: the parts' masks are bin-major and get transposed inside the
    timed call; otherwise they are transposed here, once, outside it."""
    if manifest.high_stem_index >= 0:
        raise SystemExit("the frame-major probe covers the hold_top_bin rule only")
    n_fft, hop = manifest.n_fft, manifest.hop
    keep = n_fft - hop
    window = StftGrid(n_fft, hop).synthesis_window
    fm = [(spec, masks if transpose else np.ascontiguousarray(masks.transpose(0, 3, 1, 2)))
          for spec, masks in parts]

    def run():
        n_out, n_ch = gains.shape[0], fm[0][0].shape[0]
        pending = np.zeros((n_out, n_ch, keep), np.float32)
        outs = []
        for spec, masks in fm:
            if transpose:
                masks = np.ascontiguousarray(masks.transpose(0, 3, 1, 2))
            out = np.zeros((n_out, n_ch, spec.shape[1] * hop), np.float32)
            k = min(keep, out.shape[2])
            out[:, :, :k] += pending[:, :, :k]
            tails = np.zeros((n_out, n_ch, keep), np.float32)
            tails[:, :, :keep - k] += pending[:, :, k:]
            frame_major_kernel(spec, masks, gains, manifest.model_bins, n_fft, hop, window,
                               out, tails, tile)
            pending = tails
            outs.append(out)
        return np.concatenate(outs, axis=2)
    return run
