"""Offline STFT/ISTFT on the shared grid (see :mod:`stemboard.dsp`)."""
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from stemboard.dsp.kernels import analyze_frames, overlap_add


@dataclass(frozen=True)
class StftGrid:
    """An STFT grid: FFT size, hop and the matching analysis/synthesis windows.

    ``n_fft`` must be a multiple of ``hop`` so that every sample is covered by
    the same number of frames; the synthesis window is then normalised so that
    overlap-add reconstructs the input exactly.
    """

    n_fft: int = 2048
    hop: int = 512

    def __post_init__(self):
        if self.n_fft <= 0 or self.hop <= 0:
            raise ValueError(f"n_fft and hop must be positive, got {self.n_fft}, {self.hop}")
        if self.n_fft % self.hop:
            raise ValueError(f"n_fft ({self.n_fft}) must be a multiple of hop ({self.hop})")
        if self.n_fft // self.hop < 2:
            raise ValueError("hop must be at most n_fft / 2 for a Hann window to reconstruct")

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def pad(self) -> int:
        """Samples of silence in front of sample 0 inside frame 0 (``n_fft - hop``)."""
        return self.n_fft - self.hop

    @cached_property
    def window(self) -> np.ndarray:
        """Periodic Hann window, shape (n_fft,), float32."""
        n = np.arange(self.n_fft)
        return (0.5 - 0.5 * np.cos(2 * np.pi * n / self.n_fft)).astype(np.float32)

    @cached_property
    def synthesis_window(self) -> np.ndarray:
        """Window that makes windowed overlap-add an exact inverse, shape (n_fft,)."""
        w = self.window.astype(np.float64)
        norm = (w**2).reshape(-1, self.hop).sum(axis=0)  # periodic in hop
        return (w / np.tile(norm, self.n_fft // self.hop)).astype(np.float32)


def num_frames(length: int, grid: StftGrid) -> int:
    """Number of frames that cover ``length`` samples completely (0 for empty)."""
    if length <= 0:
        return 0
    return -(-length // grid.hop) + grid.n_fft // grid.hop - 1


def _as_signal(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected a (channels, samples) array, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"expected float32 or float64 audio, got {x.dtype}")
    return np.ascontiguousarray(x, dtype=np.float32)


def stft(x: np.ndarray, grid: StftGrid = StftGrid()) -> np.ndarray:
    """Short-time Fourier transform.

    Parameters
    ----------
    x : ndarray, shape (channels, samples), float
    grid : StftGrid

    Returns
    -------
    ndarray, shape (channels, num_frames(samples), n_fft // 2 + 1), complex64
    """
    x = _as_signal(x)
    n_ch, length = x.shape
    n_frames = num_frames(length, grid)
    if n_frames == 0:
        return np.zeros((n_ch, 0, grid.n_bins), np.complex64)
    total = (n_frames - 1) * grid.hop + grid.n_fft
    buf = np.zeros((n_ch, total), np.float32)
    buf[:, grid.pad : grid.pad + length] = x
    return analyze_frames(buf, n_frames, grid.n_fft, grid.hop, grid.window)


def istft(spec: np.ndarray, length: int, grid: StftGrid = StftGrid()) -> np.ndarray:
    """Inverse of :func:`stft`.

    Parameters
    ----------
    spec : ndarray, shape (channels, frames, n_fft // 2 + 1), complex
    length : int
        Samples to return; ``frames`` must be ``num_frames(length)``.
    grid : StftGrid

    Returns
    -------
    ndarray, shape (channels, length), float32
    """
    spec = np.ascontiguousarray(spec, dtype=np.complex64)
    if spec.ndim != 3 or spec.shape[2] != grid.n_bins:
        raise ValueError(
            f"expected a (channels, frames, {grid.n_bins}) spectrum, got shape {spec.shape}"
        )
    if spec.shape[1] != num_frames(length, grid):
        raise ValueError(
            f"{spec.shape[1]} frames do not cover {length} samples "
            f"(expected {num_frames(length, grid)})"
        )
    if length == 0:
        return np.zeros((spec.shape[0], 0), np.float32)
    ola = np.zeros((spec.shape[0], grid.n_fft), np.float32)
    out = overlap_add(spec, ola, grid.n_fft, grid.hop, grid.synthesis_window)
    return out[:, grid.pad : grid.pad + length]
