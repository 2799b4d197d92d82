"""Run a Numba kernel on each audio channel in its own thread.

The kernels are compiled with ``nogil=True`` and every channel's arithmetic
is independent, so splitting the channel axis over threads gives bit-identical
output in less time on a multi-core machine.  Plain Python threads are used
rather than Numba's ``parallel=True``: its default threading layer aborts the
process when two Python threads launch parallel kernels at once, and a plugin
may well be driven from several threads.

Small calls (a streaming block completes a frame or two) stay on the calling
thread: handing them to a pool would cost more than it saves.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: Fewer frames than this per call run on the calling thread.
MIN_FRAMES = 64

_pool: ThreadPoolExecutor | None = None
_n_workers: int | None = None


def _workers() -> int:
    """Cores this process may run on (looked up once: the engine calls per_channel on
    every block)."""
    global _n_workers
    if _n_workers is None:
        try:
            _n_workers = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            _n_workers = os.cpu_count() or 1
    return _n_workers


def per_channel(kernel, n_frames: int, channel_args, shared_args=(), *, arg_axes=None,
                axis: int = 0):
    """``kernel(*channel_args, *shared_args)``, split over channels when worth it.

    Parameters
    ----------
    kernel : callable
        A ``nogil`` kernel that works on each channel independently.
    n_frames : int
        STFT frames the call covers (decides whether threads are worth it).
    channel_args : sequence of ndarray
        Arrays cut along their channel axis; each thread gets views of its
        channels, so a kernel's in-place updates (overlap-add state) land in
        the caller's arrays.
    shared_args : sequence
        Passed unchanged to every call, after ``channel_args``.
    arg_axes : sequence of int, optional
        Channel axis of each of ``channel_args`` (default: 0 for all).
    axis : int or None
        Channel axis of the kernel's result, along which the parts are joined;
        ``None`` for a kernel that writes its result in place (through its
        views, or at channel indices passed as one of ``channel_args``), whose
        parts need no joining.

    Returns
    -------
    The kernel's result for all channels (``None`` when ``axis`` is ``None``).
    """
    if n_frames < MIN_FRAMES:
        out = kernel(*channel_args, *shared_args)
        return None if axis is None else out
    axes = tuple(arg_axes) if arg_axes is not None else (0,) * len(channel_args)
    n_ch = channel_args[0].shape[axes[0]]
    threads = min(n_ch, _workers())
    if threads < 2:
        out = kernel(*channel_args, *shared_args)
        return None if axis is None else out
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="stemboard")
    bounds = np.linspace(0, n_ch, threads + 1).astype(int)

    def part(a, ax, lo, hi):
        index = [slice(None)] * a.ndim
        index[ax] = slice(lo, hi)
        return a[tuple(index)]

    jobs = [_pool.submit(kernel, *(part(a, ax, lo, hi) for a, ax in zip(channel_args, axes)),
                         *shared_args)
            for lo, hi in zip(bounds[:-1], bounds[1:])]
    parts = [j.result() for j in jobs]
    return None if axis is None else np.concatenate(parts, axis=axis)
