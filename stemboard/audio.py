"""Block-wise audio file reading and atomic writing, on ``pedalboard.io``.

Everything here streams: a file is read and written one block at a time, so
memory does not grow with its length. Outputs are written to a temporary file
in the destination folder and renamed into place only when complete, so a
failure never leaves a half-written file behind.
"""
import os
import sys
import uuid
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from pedalboard.io import AudioFile

DEFAULT_BLOCK = 1 << 16
WRITE_FORMATS = ("wav", "flac", "aiff", "ogg", "mp3")
_BIT_DEPTHS = {"wav": (8, 16, 24, 32), "aiff": (8, 16, 24, 32), "flac": (16, 24)}


class AudioError(OSError):
    """An audio file cannot be read or written."""


def _read_error(path, e):
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return AudioError(f"{path}: cannot read audio ({msg})")


def open_audio(path):
    """Open ``path`` for reading with ``pedalboard.io.AudioFile``; clear errors if not."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    try:
        f = AudioFile(str(path))
    except Exception as e:  # pedalboard raises ValueError/RuntimeError by codec
        raise _read_error(path, e) from None
    if f.frames <= 0 or f.num_channels <= 0:
        f.close()
        raise AudioError(f"{path}: holds no audio")
    return f


def read_info(path):
    """Return ``(sample_rate, num_channels, frames, file_dtype)`` of an audio file."""
    with open_audio(path) as f:
        return float(f.samplerate), int(f.num_channels), int(f.frames), str(f.file_dtype)


def iter_blocks(path, block_size=DEFAULT_BLOCK):
    """Yield (channels, n) float32 blocks of ``path``, at most ``block_size`` long."""
    with open_audio(path) as f:
        while f.tell() < f.frames:
            try:
                block = f.read(block_size)
            except Exception as e:
                raise _read_error(path, e) from None
            if block.shape[1] == 0:
                break
            yield np.ascontiguousarray(block, np.float32)


def default_bit_depth(file_dtype, fmt):
    """A lossless-enough bit depth for ``fmt`` given the input's sample type."""
    want = {"int8": 16, "int16": 16, "int24": 24, "int32": 24}.get(file_dtype, 32)
    allowed = _BIT_DEPTHS.get(fmt)
    if allowed is None:
        return None
    return want if want in allowed else max(allowed)


def output_format(path, fmt=None):
    fmt = (fmt or Path(path).suffix.lstrip(".")).lower()
    if fmt == "aif":
        fmt = "aiff"
    if fmt not in WRITE_FORMATS:
        raise AudioError(f"{path}: cannot write format {fmt!r}; use one of {WRITE_FORMATS}")
    return fmt


class AtomicWriter:
    """Write an audio file block by block; it appears under its name only when complete.

    Use as a context manager. On an exception inside the block, or if
    :meth:`discard` is called, the temporary file is deleted and the
    destination is left as it was.

    Parameters
    ----------
    path : str or Path
    sample_rate : float
    num_channels : int
    bit_depth : int, optional
        Sample size for PCM formats (wav/aiff: 8/16/24/32, flac: 16/24).
    """

    def __init__(self, path, sample_rate, num_channels, *, bit_depth=None):
        self.path = Path(path)
        self.format = output_format(self.path)
        allowed = _BIT_DEPTHS.get(self.format)
        if bit_depth is not None and allowed is not None and bit_depth not in allowed:
            raise AudioError(f"{self.path}: {self.format} supports bit depths {allowed}, "
                             f"not {bit_depth}")
        self.bit_depth = bit_depth
        self.sample_rate = sample_rate
        self.num_channels = num_channels
        # Same folder (so the rename is atomic), same extension (pedalboard picks
        # the codec from it), hidden name so a folder listing ignores it.
        self.tmp_path = self.path.with_name(
            f".{self.path.stem}.partial-{uuid.uuid4().hex[:8]}.{self.format}")
        self._file = None

    def open(self):
        if not self.path.parent.is_dir():
            raise AudioError(f"{self.path.parent}: output folder does not exist")
        kwargs = {} if self.bit_depth is None else {"bit_depth": self.bit_depth}
        try:
            self._file = AudioFile(str(self.tmp_path), "w", self.sample_rate,
                                   self.num_channels, **kwargs)
        except Exception as e:
            self._cleanup()
            raise AudioError(f"{self.path}: cannot write ({e})") from None
        return self

    def write(self, block):
        """Append a (channels, n) float32 block."""
        if block.shape[1]:
            self._file.write(np.ascontiguousarray(block, np.float32))

    def commit(self):
        """Close the temporary file and rename it onto the destination."""
        self._file.close()
        self._file = None
        os.replace(self.tmp_path, self.path)

    def discard(self):
        if self._file is not None:
            try:
                self._file.close()
            except Exception:
                pass
            self._file = None
        self._cleanup()

    def _cleanup(self):
        try:
            self.tmp_path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self.open()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.discard()
        return False


class WriterGroup:
    """Several :class:`AtomicWriter` that commit together or not at all."""

    def __init__(self, writers):
        self.writers = list(writers)

    def __enter__(self):
        with ExitStack() as stack:
            for w in self.writers:
                w.open()
                stack.callback(w.discard)
            stack.pop_all()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            for w in self.writers:
                w._file.close()
                w._file = None
            for w in self.writers:
                os.replace(w.tmp_path, w.path)
        else:
            for w in self.writers:
                w.discard()
        return False


def progress_bar(total, desc, enabled=None):
    """A tqdm bar on stderr when it is a terminal (or when ``enabled``), else None."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="s", unit_scale=True, leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s "
                           "[{elapsed}<{remaining}]")
