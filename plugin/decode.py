"""Input decoding beyond what ``pedalboard.io`` does on its own.

Two gaps are filled here:

- **Gapless MP3.** pedalboard.io decodes every MPEG frame, so a LAME-encoded
  file starts with the encoder delay plus the decoder's 529-sample delay and
  ends with the encoder's padding: a 300,000-sample song read as 301,824
  samples, 1,105 of them silence in front. Stems separated from that lagged
  the song by 25 ms in a DAW. The LAME/Xing ("Info") header records the delay
  and padding; :class:`TrimmedReader` shows only the samples a gapless-aware
  decoder (ffmpeg, mpg123, every DAW) returns.
- **Formats pedalboard.io cannot read here** (m4a/aac, opus, stem.mp4 on
  Linux) are decoded once with ffmpeg to a temporary float WAV.
"""
import atexit
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
from pathlib import Path

# The MP3 decoder's own delay (one granule's filterbank, 528 + 1 samples): what
# ffmpeg and mpg123 add to the encoder delay of the LAME tag.
DECODER_DELAY = 529


class GaplessInfo:
    """What an MP3's LAME/Xing header says about its real length.

    Attributes
    ----------
    delay, padding : int
        Encoder delay and padding in samples.
    frames : int or None
        MPEG frames after the header frame, when the header counts them.
    samples_per_frame : int
        1152 for MPEG-1 Layer III, 576 for MPEG-2/2.5.
    audio_start : int or None
        File offset of the first audio frame (the header frame carries none);
        None when the header frame's length cannot be told (free format).
    """

    def __init__(self, delay, padding, frames, samples_per_frame, audio_start=None):
        self.delay = delay
        self.padding = padding
        self.frames = frames
        self.samples_per_frame = samples_per_frame
        self.audio_start = audio_start

    def window(self, decoded_frames):
        """``(start, length)`` of the real audio among ``decoded_frames`` decoded samples."""
        start = min(self.delay + DECODER_DELAY, decoded_frames)
        total = (self.frames * self.samples_per_frame if self.frames is not None
                 else decoded_frames)
        length = total - self.delay - self.padding
        return start, max(0, min(length, decoded_frames - start))


_MP3_KBPS = {True: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
             False: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame_length(header):
    """Bytes of the Layer III frame whose 4-byte header is ``header``, or None."""
    if header >> 21 != 0x7FF:
        return None
    version, layer = (header >> 19) & 3, (header >> 17) & 3
    rate_i, kbps_i, pad = (header >> 10) & 3, (header >> 12) & 15, (header >> 9) & 1
    if layer != 1 or version == 1 or rate_i == 3 or kbps_i in (0, 15):
        return None  # not Layer III, reserved values, or free format
    mpeg1 = version == 3
    rate = _MP3_RATES[version][rate_i]
    return (144000 if mpeg1 else 72000) * _MP3_KBPS[mpeg1][kbps_i] // rate + pad


def _skip_id3v2(data):
    if data[:3] != b"ID3" or len(data) < 10:
        return 0
    size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]  # syncsafe
    return 10 + size + (10 if data[5] & 0x10 else 0)  # footer flag


def mp3_gapless_info(path):
    """Read the LAME/Xing header of an MP3 file.

    Returns
    -------
    GaplessInfo or None
        None when the first frame carries no Xing/Info header with a LAME
        extension (then nothing is known to trim, and nothing is trimmed).
    """
    with open(path, "rb") as fh:
        skip = _skip_id3v2(fh.read(10))
        fh.seek(skip)
        data = fh.read(4096)
    pos = next((i for i in range(len(data) - 3)
                if data[i] == 0xFF and data[i + 1] & 0xE0 == 0xE0), None)
    if pos is None:
        return None
    header, = struct.unpack(">I", data[pos:pos + 4])
    version, layer, mode = (header >> 19) & 3, (header >> 17) & 3, (header >> 6) & 3
    if layer != 1:  # 1 means Layer III; the LAME tag is a Layer III convention
        return None
    mpeg1 = version == 3
    side_info = (17 if mode == 3 else 32) if mpeg1 else (9 if mode == 3 else 17)
    x = pos + 4 + side_info
    if data[x:x + 4] not in (b"Xing", b"Info") or len(data) < x + 8:
        return None
    flags, = struct.unpack(">I", data[x + 4:x + 8])
    p, frames = x + 8, None
    if flags & 1:
        frames, = struct.unpack(">I", data[p:p + 4])
        p += 4
    p += (4 if flags & 2 else 0) + (100 if flags & 4 else 0) + (4 if flags & 8 else 0)
    # LAME extension: 9-byte encoder name, then 12 bytes of other fields, then
    # delay and padding packed as two 12-bit numbers.
    if len(data) < p + 24 or not data[p:p + 4].strip(b"\x00"):
        return None
    d = data[p + 21:p + 24]
    delay, padding = (d[0] << 4) | (d[1] >> 4), ((d[1] & 0x0F) << 8) | d[2]
    length = _mp3_frame_length(header)
    return GaplessInfo(delay, padding, frames, 1152 if mpeg1 else 576,
                       None if length is None else skip + pos + length)


def mp3_frames_present(path, info):
    """``(frames present, frames promised)`` of an MP3 whose Xing/Info header counts its
    MPEG frames, or None when it does not (then its length is not promised).

    A cut MP3 reads as silence past the cut up to the header's length; walking the
    frames from the header on (each header gives its frame's length) counts the
    whole frames the file really holds.

    Parameters
    ----------
    path : str or Path
    info : GaplessInfo or None
        ``mp3_gapless_info(path)``.
    """
    if info is None or info.frames is None or info.audio_start is None:
        return None
    with open(path, "rb") as fh:
        data = fh.read()
    pos, count = info.audio_start, 0
    while pos + 4 <= len(data):
        length = _mp3_frame_length(struct.unpack(">I", data[pos:pos + 4])[0])
        if length is None or pos + length > len(data):
            break  # a tag (ID3v1, APE) or the cut
        count += 1
        pos += length
    return count, info.frames


class TrimmedReader:
    """A pedalboard reader that shows only ``[start, start + frames)`` of its file.

    Has the reading interface stemboard uses (``samplerate``, ``num_channels``,
    ``frames``, ``file_dtype``, ``read``, ``tell``, ``close``, context manager).
    The first ``start`` samples are read and dropped rather than seeked past:
    MP3 seeking is not sample-exact in every decoder.
    """

    def __init__(self, f, start, frames):
        self._f = f
        self.samplerate = f.samplerate
        self.num_channels = f.num_channels
        self.file_dtype = f.file_dtype
        self.frames = int(frames)
        self._pos = 0
        left = int(start)
        while left > 0:
            got = f.read(min(left, 1 << 16)).shape[1]
            if got == 0:
                break
            left -= got

    def read(self, n):
        n = max(0, min(int(n), self.frames - self._pos))
        block = self._f.read(n)
        self._pos += block.shape[1]
        return block

    def tell(self):
        return self._pos

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def trim_mp3(f, info):
    """Wrap an open MP3 reader so it shows the gapless audio only (or return it as is).

    ``info`` is ``mp3_gapless_info`` of its file (None: nothing to trim).
    """
    if info is None:
        return f
    start, length = info.window(int(f.frames))
    return TrimmedReader(f, start, length)


# -- ffmpeg ------------------------------------------------------------------------------
class MissingDecoderError(OSError):
    """A format needs ffmpeg to be read, and ffmpeg is not installed."""


_HOST_ID = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_cache = {}  # (path, mtime_ns, size) -> decoded WAV; one entry: a batch reads files in turn
_dir = None


def _decode_dir():
    """This process's folder for decoded files, removed at exit.

    Named after the process, so a run killed with SIGKILL leaves a folder the
    next run removes (same host, process gone).
    """
    global _dir
    if _dir is None:
        root = Path(tempfile.gettempdir())
        prefix = "stemboard-decode-"
        for old in root.glob(prefix + "*"):
            parts = old.name[len(prefix):].split("-")
            if len(parts) >= 2 and parts[1] == _HOST_ID and parts[0].isdigit() \
                    and not _alive(int(parts[0])):
                shutil.rmtree(old, ignore_errors=True)
        _dir = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-{_HOST_ID}-", dir=root))
        atexit.register(shutil.rmtree, _dir, True)
    return _dir


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def ffmpeg_decoded(path):
    """A float32 WAV of ``path``'s first audio stream, decoded with ffmpeg (cached).

    The first audio stream of a ``.stem.mp4`` is the mixture, the one wanted.

    Raises
    ------
    MissingDecoderError
        When ffmpeg is not on PATH.
    OSError
        When ffmpeg cannot decode the file (its first error line is quoted).
    """
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key in _cache and _cache[key].exists():
        return _cache[key]
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise MissingDecoderError(
            f"{path}: pedalboard.io cannot read {''.join(path.suffixes[-2:]) or 'this format'} "
            "files here and ffmpeg, which can, is not installed (install ffmpeg, e.g. "
            "`apt-get install ffmpeg`)")
    for old in _cache.values():
        old.unlink(missing_ok=True)
    _cache.clear()
    out = _decode_dir() / f"{len(os.listdir(_decode_dir()))}.wav"
    # -rf64 auto: past 4 GiB a plain WAV header overflows.
    cmd = [exe, "-nostdin", "-v", "error", "-y", "-i", str(path), "-map", "0:a:0",
           "-c:a", "pcm_f32le", "-rf64", "auto", "-f", "wav", str(out)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    if r.returncode != 0:
        out.unlink(missing_ok=True)
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        raise OSError(f"{path}: cannot read audio (ffmpeg: "
                      f"{lines[-1] if lines else 'exit status ' + str(r.returncode)})")
    _cache[key] = out
    return out
