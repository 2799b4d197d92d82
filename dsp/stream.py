"""Streaming STFT analysis: blocks of any size in, the frames they complete out.

(The engine's synthesis is fused with the masking: ``kernels.masked_overlap_add``.)

The per-block work (all frames a block completes) runs inside one Numba call;
Python only concatenates the carried-over tail with the new block.
"""
import numpy as np

from stemboard.dsp.kernels import analyze_frames
from stemboard.dsp.stft import StftGrid
from stemboard.dsp.threads import per_channel


class StreamingAnalyzer:
    """Turn blocks of any size into the frames they complete.

    Frame numbering and content equal :func:`stemboard.dsp.stft` on the
    concatenation of all blocks pushed since the last :meth:`reset`.
    """

    def __init__(self, grid: StftGrid, num_channels: int):
        self.grid = grid
        self.num_channels = num_channels
        self.reset()

    def reset(self):
        # The carried tail starts as the grid's leading silence.
        self._tail = np.zeros((self.num_channels, self.grid.pad), np.float32)

    def push(self, block: np.ndarray) -> np.ndarray:
        """Feed ``block`` (channels, samples) float32; return (channels, k, bins) complex64."""
        buf = np.concatenate([self._tail, block], axis=1) if block.shape[1] else self._tail
        n_fft, hop = self.grid.n_fft, self.grid.hop
        n_frames = (buf.shape[1] - n_fft) // hop + 1 if buf.shape[1] >= n_fft else 0
        spec = per_channel(analyze_frames, n_frames, (buf,),
                           (n_frames, n_fft, hop, self.grid.window))
        self._tail = np.ascontiguousarray(buf[:, n_frames * hop :])
        return spec
