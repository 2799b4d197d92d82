"""Teacher targets for distillation: a bundled system's stems on the training songs.

The ``live`` model sees 22 past and 2 future frames; ``hq`` sees whole
12-second segments and scores 1.6 dB higher on valid.  Distillation trains the
small model towards what the large one makes of the same mixture, as well as
towards the true stems (``TrainConfig.distill``).

A teacher's stems exist only for the mixtures it was run on, so they are
computed once per training song and per pitch-shifted copy (the songs' own
mixtures, the sum of their stems), on the training grid, and cached.  The
sampler then gives a teacher target only to the crops it does not remix, and
scales all four stems of such a crop by one gain (no per-stem gains, no dropped
stems), so the crop's mixture is the teacher's input up to that gain.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np

from stemboard.dsp import StftGrid, stft
from stemboard.models import load_model
from stemboard.plugin import StemSeparator

from stemboard.train.data import SAMPLE_RATE, STEMS, track_frames


def _model_files(m) -> list:
    """The files a loaded model reads: a mask model's graph and manifest, a cascade's own."""
    if hasattr(m, "first"):
        return [m.path, *_model_files(m.first), *_model_files(m.second)]
    return [m.path, m.path.with_suffix(".json")]


def _model_key(loaded) -> str:
    """A hash of a loaded model's files, so a retrained teacher gets a new cache."""
    h = hashlib.sha256()
    for p in _model_files(loaded):
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def teacher_magnitudes(tracks, grid: StftGrid, model_bins: int, *, model: str = "hq",
                       cache=None, log=print) -> np.ndarray:
    """``model``'s stem estimates on every track's mixture, as STFT magnitudes.

    Parameters
    ----------
    tracks : list of dict
        Training tracks in the order :func:`.data.stem_spectra` was given them:
        ``{"stems"}`` (4, 2, samples) or ``{"samples", "make"}`` (lazy copies).
    grid : StftGrid
        The student's STFT grid.
    model_bins : int
        Bins kept, as in the training spectra.
    model : str
        Bundled model name (or manifest path) of the teacher.
    cache : str or Path, optional
        Folder for the ``.npy`` cache (memory-mapped on later calls).

    Returns
    -------
    ndarray, shape (tracks, 4, 2, frames, model_bins), float16
        Frames are zero-padded at the end like :func:`.data.stem_spectra`'s.
    """
    lengths = track_frames(tracks, grid)
    n = int(lengths.max()) if len(tracks) else 0
    shape = (len(tracks), 4, 2, n, model_bins)
    # Loaded once: for the cache key (its files) and to run it.
    teacher = load_model(model)
    path = None
    if cache is not None:
        names = hashlib.sha256("\n".join(t["name"] for t in tracks).encode()).hexdigest()[:12]
        key = f"{_model_key(teacher)}_{names}_{grid.n_fft}_{grid.hop}_{model_bins}"
        path = Path(cache) / f"teacher_{Path(model).stem}_{key}.npy"
        if path.is_file():
            out = np.load(path, mmap_mode="r")
            if out.shape != shape or out.dtype != np.float16:
                raise ValueError(f"{path}: cached teacher shape {out.shape} {out.dtype}, "
                                 f"expected {shape} float16; delete it to recompute")
            log(f"teacher {model}: cached {path}")
            return out
        path.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name and renamed when whole, so an interrupted run
    # never leaves a cache that a later one would trust.
    tmp = None if path is None else path.with_name(f".{path.name}.{os.getpid()}.tmp")
    out = (np.zeros(shape, np.float16) if tmp is None
           else np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape))
    t0 = time.time()
    try:
        separator = StemSeparator(teacher)
        for i, t in enumerate(tracks):
            s = t["make"]() if "make" in t else t["stems"]
            est = separator.separate(s.sum(axis=0), SAMPLE_RATE)
            est = np.stack([est[name] for name in STEMS])
            spec = np.abs(stft(est.reshape(-1, est.shape[-1]), grid)[:, :, :model_bins])
            out[i, :, :, : spec.shape[1]] = spec.reshape(4, 2, spec.shape[1], model_bins)
            if (i + 1) % 25 == 0 or i + 1 == len(tracks):
                log(f"teacher {model}: {i + 1}/{len(tracks)} tracks, {time.time() - t0:.0f}s")
        if tmp is not None:
            out.flush()
            del out
            os.replace(tmp, path)
            return np.load(path, mmap_mode="r")
    except BaseException:
        if tmp is not None and tmp.exists():
            tmp.unlink()
        raise
    return out
