"""Block-wise audio file reading and atomic writing, on ``pedalboard.io``.

Everything here streams: a file is read and written one block at a time, so
memory does not grow with its length. Outputs are written to a temporary file
in the destination folder, flushed to disk and renamed into place only when
complete, so no file under a final name is ever incomplete, even after
SIGKILL. Temporary names carry the writing process's id, so the next writer in
a folder removes those left by processes that no longer exist.
"""
import hashlib
import io
import os
import re
import socket
import struct
import sys
import uuid
from contextlib import ExitStack
from functools import lru_cache
from pathlib import Path

import numpy as np
from pedalboard.io import AudioFile

from stemboard.plugin import decode
from stemboard.plugin.defaults import WRITE_FORMATS
from stemboard.plugin.flac import flac_frames_present

DEFAULT_BLOCK = 1 << 16
LOSSY_FORMATS = ("mp3", "ogg")
# What pedalboard.io writes (32-bit WAV is float); AIFF stops at 24 bits there.
_BIT_DEPTHS = {"wav": (8, 16, 24, 32), "aiff": (8, 16, 24), "flac": (16, 24)}


class AudioError(OSError):
    """An audio file cannot be read or written."""


def _read_error(path, e):
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return AudioError(f"{path}: cannot read audio ({msg})")


def open_audio(path):
    """Open ``path`` for reading with ``pedalboard.io.AudioFile``; clear errors if not.

    Raises
    ------
    AudioError
        For missing, unreadable and empty files, and for WAV/AIFF files whose
        header promises more frames than the file holds (pedalboard would pad
        them with silence).
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    source = path
    if needs_ffmpeg(path):
        try:
            source = decode.ffmpeg_decoded(path)
        except decode.MissingDecoderError as e:
            raise AudioError(str(e)) from None
        except OSError as e:
            raise AudioError(str(e) if str(path) in str(e) else _read_error(path, e)) from None
    try:
        f = AudioFile(str(source))
    except Exception as e:  # pedalboard raises ValueError/RuntimeError by codec
        raise _read_error(path, e) from None
    present, info, mpeg = _length_checks(source)
    if source.suffix.lower() == ".mp3":
        f = decode.trim_mp3(f, info)  # aligned with what gapless decoders return
        if mpeg is not None and mpeg[0] < mpeg[1]:
            present = f.frames * mpeg[0] // mpeg[1]
    if f.frames <= 0 or f.num_channels <= 0:
        f.close()
        raise AudioError(f"{path}: holds no audio")
    if present is not None and present < f.frames:
        promised = f.frames
        f.close()
        raise AudioError(f"{path}: truncated: the header promises {promised} frames but the "
                         f"file holds {present}; refusing to pad it with silence")
    return f


def _length_checks(source):
    """``(frames present, MP3 gapless info, (MPEG frames held, promised))`` of ``source``.

    A file is opened once for its header (``read_info``) and again for its blocks,
    and an MP3's check reads the whole file; the answers are kept per path, change
    time and size, so the second opening reads nothing new.
    """
    st = source.stat()
    return _length_checks_of(str(source.resolve()), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=16)
def _length_checks_of(path, mtime_ns, size):
    if Path(path).suffix.lower() != ".mp3":
        return frames_present(path), None, None
    info = decode.mp3_gapless_info(path)
    return frames_present(path), info, decode.mp3_frames_present(path, info)


def needs_ffmpeg(path):
    """Whether ``path`` has a suffix pedalboard.io cannot read here (then ffmpeg decodes it)."""
    suffix = Path(path).suffix.lower()
    return bool(suffix) and suffix not in _native_read_suffixes()


def _native_read_suffixes():
    from pedalboard.io import get_supported_read_formats

    return {s.lower() for s in get_supported_read_formats()}


# -- truncated files -----------------------------------------------------------------------
# pedalboard reads a WAV or AIFF whose data ends early as if the missing frames
# were silence (a 10 s download cut at 2 s read as 2 s of audio and 8 s of
# zeros). Their headers say where the samples start and how big a frame is, so
# the frames really present follow from the file's size. A FLAC or MP3 file cut
# short reads as silence too; FLAC's frame headers say where its audio stops
# (:mod:`stemboard.plugin.flac`), and an MP3 whose Xing/Info header counts its
# frames is walked frame by frame (:func:`stemboard.plugin.decode.mp3_frames_present`).
# Ogg reads short, not padded; see docs/reliability.md.
_AIFC_PCM = {b"NONE", b"sowt", b"twos", b"raw ", b"fl32", b"FL32", b"fl64", b"FL64",
             b"in24", b"in32", b"42ni", b"23ni"}


def frames_present(path):
    """Frames ``path`` really holds when its format lets that be told (WAV, AIFF, FLAC),
    else ``None``."""
    present = pcm_frames_present(path)
    return present if present is not None else flac_frames_present(path)


def pcm_frames_present(path):
    """Frames a WAV or AIFF file's bytes hold, or ``None`` when that cannot be told.

    ``None`` for other formats, compressed AIFF-C, RF64, and headers that
    leave the length open (a data size of 0 or 0xFFFFFFFF, written by
    recorders that never finished the header).
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(12)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            return _wav_frames(fh, size)
        if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            return _aiff_frames(fh, size)
    return None


def _chunks(fh, size, endian):
    """Yield ``(chunk id, data offset, declared size)`` of an IFF-style file from offset 12."""
    pos = 12
    while pos + 8 <= size:
        fh.seek(pos)
        cid, length = struct.unpack(endian + "4sI", fh.read(8))
        yield cid, pos + 8, length
        pos += 8 + length + (length & 1)  # chunks are padded to even sizes


def _wav_frames(fh, size):
    block_align = None
    for cid, start, length in _chunks(fh, size, "<"):
        if cid == b"fmt " and length >= 14:
            fh.seek(start + 12)
            block_align, = struct.unpack("<H", fh.read(2))
        elif cid == b"data":
            if not block_align or length in (0, 0xFFFFFFFF):
                return None
            return min(length, size - start) // block_align
    return None


def _aiff_frames(fh, size):
    frame_bytes = None
    for cid, start, length in _chunks(fh, size, ">"):
        if cid == b"COMM" and length >= 18:
            fh.seek(start)
            comm = fh.read(min(length, 22))
            channels, _, bits = struct.unpack(">hIh", comm[:8])
            if len(comm) >= 22 and comm[18:22] not in _AIFC_PCM:
                return None  # compressed AIFF-C: bytes do not map to frames
            frame_bytes = channels * ((bits + 7) // 8)
        elif cid == b"SSND":
            if not frame_bytes:
                return None
            fh.seek(start)
            offset, = struct.unpack(">I", fh.read(4))
            return max(size - (start + 8 + offset), 0) // frame_bytes
    return None


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


def check_write_options(fmt, *, bit_depth=None, bitrate=None):
    """Refuse a bit depth or bitrate ``fmt`` cannot be written with, before any audio is.

    Parameters
    ----------
    fmt : str
        One of :data:`WRITE_FORMATS`.
    bit_depth : int, optional
        For PCM formats (wav 8/16/24/32-float, aiff 8/16/24, flac 16/24).
    bitrate : int, optional
        kbit/s, for the lossy formats (mp3, ogg).

    Raises
    ------
    AudioError
        Naming the format and the value it cannot take.
    """
    if fmt in LOSSY_FORMATS and bit_depth is not None:
        raise AudioError(f"{fmt} is lossy and has no bit depth (got {bit_depth}); set a "
                         "bitrate instead")
    if fmt not in LOSSY_FORMATS and bitrate is not None:
        raise AudioError(f"{fmt} is lossless and has no bitrate (got {bitrate}); bitrates "
                         f"apply to {' and '.join(LOSSY_FORMATS)}")
    allowed = _BIT_DEPTHS.get(fmt)
    if bit_depth is not None and allowed is not None and bit_depth not in allowed:
        raise AudioError(f"{fmt} supports bit depths {allowed}, not {bit_depth}")
    if bitrate is not None:
        # Ask the encoder itself: it knows which rates it takes.
        try:
            with AudioFile(io.BytesIO(), "w", 44100, 2, format=fmt,
                           quality=bitrate_quality(bitrate)):
                pass
        except ValueError:
            raise AudioError(f"{fmt} cannot be written at {bitrate} kbit/s; the encoder takes "
                             f"{_rates(fmt)}") from None


def bitrate_quality(bitrate):
    """pedalboard.io's ``quality`` argument for a bitrate in kbit/s (None passes through)."""
    return None if bitrate is None else f"{int(bitrate)} kbps"


def _rates(fmt):
    rates = []
    for kbps in range(8, 513, 8):
        try:
            with AudioFile(io.BytesIO(), "w", 44100, 2, format=fmt, quality=f"{kbps} kbps"):
                rates.append(kbps)
        except ValueError:
            pass
    return ", ".join(map(str, rates)) + " kbit/s" if rates else "no fixed bitrate"


# -- temporary files ---------------------------------------------------------------------
# Hidden, in the destination folder (so the rename is atomic), and named after
# the writing process: ".vocals.partial-<pid>-<host>-<random>.wav". A process
# killed with SIGKILL cannot remove its temporaries, so the next writer in the
# folder removes the ones whose process is gone. The host id keeps a writer
# from judging the processes of another machine sharing the folder.
_HOST_ID = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_TEMP_RE = re.compile(r"^\..+\.(?:partial|backup)-(?P<pid>\d+)-(?P<host>[0-9a-f]{8})"
                      r"-[0-9a-f]{8}(?:\.\w+)?$")


def temporary_path(path, kind, suffix):
    """A hidden sibling of ``path`` for this process: ``kind`` is ``partial`` or ``backup``."""
    return path.with_name(f".{path.stem}.{kind}-{os.getpid()}-{_HOST_ID}-"
                          f"{uuid.uuid4().hex[:8]}{suffix}")


def _process_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return not _zombie(pid)


def _zombie(pid):
    """Whether ``pid`` has exited but not been reaped (Linux; False where unknown).

    A killed batch worker is orphaned and stays a zombie until init reaps it; it
    will never finish its temporary files, so they are stale already.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # "pid (comm) S ...": the state follows the last ")" (comm may hold one).
    return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] == b"Z"


def remove_stale_temporaries(folder):
    """Remove the temporary files that dead stemboard processes left in ``folder``.

    Returns
    -------
    list of Path
        The files removed.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m is None or m["host"] != _HOST_ID or _process_alive(int(m["pid"])):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            continue  # gone already, or not ours to remove
        removed.append(Path(entry.path))
    return removed


def check_target(path):
    """Raise ``AudioError`` unless a finished file can be renamed onto ``path``.

    Checked before anything is written, so a run that cannot publish an
    output writes none: a folder (or a device) under an output's name made
    ``os.replace`` fail only after the audio was rendered.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise AudioError(f"{path.parent}: output folder does not exist")
    if path.is_dir():
        raise AudioError(f"{path}: a folder has this output's name; nothing was written")
    if path.exists() and not path.is_file():
        raise AudioError(f"{path}: exists and is not a regular file; nothing was written")
    if not os.access(path.parent, os.W_OK):
        raise AudioError(f"{path.parent}: output folder is not writable")


def _fsync(path):
    # On disk before the rename: after a crash the final name holds the whole
    # file or the old one, never a torn new one.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class AtomicWriter:
    """Write an audio file block by block; it appears under its name only when complete.

    Use as a context manager. On an exception inside the block (``KeyboardInterrupt``
    and the CLI's SIGTERM included), or if :meth:`discard` is called, the temporary
    file is deleted and the destination is left as it was.

    Parameters
    ----------
    path : str or Path
    sample_rate : float
    num_channels : int
    bit_depth : int, optional
        Sample size for PCM formats (wav/aiff: 8/16/24/32, flac: 16/24).
    """

    def __init__(self, path, sample_rate, num_channels, *, bit_depth=None, bitrate=None):
        self.path = Path(path)
        self.format = output_format(self.path)
        try:
            check_write_options(self.format, bit_depth=bit_depth, bitrate=bitrate)
        except AudioError as e:
            raise AudioError(f"{self.path}: {e}") from None
        self.bit_depth = bit_depth
        self.bitrate = bitrate
        self.sample_rate = sample_rate
        self.num_channels = num_channels
        # Same extension as the target: pedalboard picks the codec from it.
        self.tmp_path = temporary_path(self.path, "partial", f".{self.format}")
        self._file = None

    def open(self):
        check_target(self.path)
        remove_stale_temporaries(self.path.parent)
        kwargs = {} if self.bit_depth is None else {"bit_depth": self.bit_depth}
        if self.bitrate is not None:
            kwargs["quality"] = bitrate_quality(self.bitrate)
        try:
            self._file = AudioFile(str(self.tmp_path), "w", self.sample_rate,
                                   self.num_channels, **kwargs)
        except BaseException as e:
            self._cleanup()
            if not isinstance(e, Exception):
                raise
            raise AudioError(f"{self.path}: cannot write ({e})") from None
        return self

    def write(self, block):
        """Append a (channels, n) float32 block."""
        if block.shape[1]:
            self._file.write(np.ascontiguousarray(block, np.float32))

    def finish(self):
        """Close the temporary file and flush it to disk (the step before the rename)."""
        self._file.close()
        self._file = None
        _fsync(self.tmp_path)

    def commit(self):
        """Close the temporary file and rename it onto the destination.

        Raises
        ------
        AudioError
            When the rename fails; the temporary file is removed.
        """
        try:
            self.finish()
            os.replace(self.tmp_path, self.path)
        except BaseException as e:
            self.discard()
            if isinstance(e, OSError):
                raise AudioError(f"{self.path}: cannot write ({e.strerror or e}); nothing "
                                 "was written") from None
            raise

    def discard(self):
        if self._file is not None:
            try:
                self._file.close()
            except Exception:
                pass
            self._file = None
        self._cleanup()

    def _cleanup(self):
        _unlink(self.tmp_path)

    def __enter__(self):
        return self.open()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.discard()
        return False


class WriterGroup:
    """Several :class:`AtomicWriter` that publish together or not at all.

    Every target is checked before any is opened. Publishing renames the
    finished files into place one by one; if a rename fails (or the process is
    interrupted), the ones already published are rolled back: files this run
    created are removed and files it replaced are restored from a hard link
    taken just before.
    """

    def __init__(self, writers):
        self.writers = list(writers)
        seen = {}
        for w in self.writers:
            key = os.path.abspath(w.path)
            if key in seen:
                raise AudioError(f"{w.path}: two outputs would be written to this one file")
            seen[key] = w

    def __enter__(self):
        for w in self.writers:
            check_target(w.path)
        with ExitStack() as stack:
            for w in self.writers:
                w.open()
                stack.callback(w.discard)
            stack.pop_all()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            for w in self.writers:
                w.discard()
            return False
        try:
            for w in self.writers:
                w.finish()
        except BaseException:
            for w in self.writers:
                w.discard()
            raise
        self._publish()
        return False

    def _publish(self):
        published = []  # (path, backup or None): what to undo
        current = None
        try:
            for current in self.writers:
                backup = _keep_old(current.path)
                try:
                    os.replace(current.tmp_path, current.path)
                except BaseException:
                    if backup is not None:
                        _roll_back([(current.path, backup)])
                    raise
                published.append((current.path, backup))
        except BaseException as e:
            _roll_back(published)
            for w in self.writers:
                w.discard()
            if isinstance(e, OSError):
                raise AudioError(f"{current.path}: cannot write ({e.strerror or e}); no "
                                 "output was kept") from None
            raise
        for _, backup in published:
            if backup is not None:
                _unlink(backup)


def _keep_old(path):
    """Hard-link an existing ``path`` to a hidden backup name; return it (or None)."""
    if not path.is_file():
        return None
    backup = temporary_path(path, "backup", path.suffix)
    try:
        os.link(path, backup)
    except OSError:
        # No hard links here (some network and FAT file systems): the old file
        # is moved aside instead, so its name is briefly empty.
        os.replace(path, backup)
    return backup


def _roll_back(published):
    """Undo renames: restore replaced files from their backups, remove created ones."""
    for path, backup in reversed(published):
        try:
            if backup is None:
                _unlink(path)
            else:
                os.replace(backup, path)
        except OSError:
            pass  # best effort: the next run's sweep removes a stray backup


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
