"""Numba-jitted STFT/ISTFT core.

All signals are ``(channels, samples)`` float32 and all spectra are
``(channels, frames, bins)`` complex64. The grid convention is shared by the
offline and the streaming paths, so that streaming output equals offline output:

* the signal is treated as if preceded and followed by infinite silence;
* frame ``k`` covers the original samples ``[k*hop - (n_fft - hop), k*hop + hop)``,
  so frame 0 is the first frame that sees sample 0 and every sample is covered by
  exactly ``n_fft // hop`` frames (full overlap, hence perfect reconstruction);
* ``num_frames(n)`` frames cover ``n`` samples completely.
"""
from stemboard.dsp.midside import from_mid_side, to_mid_side
from stemboard.dsp.stft import StftGrid, istft, num_frames, stft
from stemboard.dsp.stream import StreamingAnalyzer

__all__ = [
    "StftGrid",
    "stft",
    "istft",
    "num_frames",
    "StreamingAnalyzer",
    "to_mid_side",
    "from_mid_side",
]
