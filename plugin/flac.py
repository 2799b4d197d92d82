"""How far a FLAC file's audio really reaches, read from its frame headers.

pedalboard reads a FLAC file cut short (an interrupted download or copy) without
an error: the frames its STREAMINFO header promises come back, the missing ones
as silence, and here even the frames that were present came back as zeros. A
FLAC stream is a run of frames; each frame header carries the number of its
first sample (or its frame number), its block size and a CRC-8 of its own
bytes. The last header in the file therefore says where the audio stops, read
from a few kilobytes at the end and without decoding anything.

Format reference: https://xiph.org/flac/format.html (STREAMINFO, FRAME_HEADER).
"""
import os
import struct

# The tail searched for the last frame headers: a FLAC frame is at most this long
# at 8 channels x 32-bit x 65535 samples, but real frames are a few kilobytes;
# the STREAMINFO's max frame size narrows it when recorded.
_TAIL_MIN = 1 << 16
_TAIL_MAX = 1 << 22


def _crc8(data):
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _utf8_number(buf, i):
    """The "UTF-8"-coded frame or sample number at ``buf[i]``: (value, next index) or None.

    As in UTF-8, the leading one bits of the first byte count the bytes (up to 7,
    for 36-bit sample numbers); every further byte is ``10xxxxxx``.
    """
    first = buf[i]
    ones = next((k for k in range(8) if not first & (0x80 >> k)), 8)
    if ones == 0:
        return first, i + 1
    if ones == 1 or ones == 8 or i + ones > len(buf):
        return None
    value = first & (0x7F >> ones)
    for b in buf[i + 1:i + ones]:
        if b & 0xC0 != 0x80:
            return None
        value = (value << 6) | (b & 0x3F)
    return value, i + ones


def _block_size(code, buf, j):
    """(samples in the frame, next index) for block-size code ``code``, or None."""
    if code == 1:
        return 192, j
    if 2 <= code <= 5:
        return 576 << (code - 2), j
    if code == 6:
        return (buf[j] + 1, j + 1) if j + 1 <= len(buf) else None
    if code == 7:
        return (struct.unpack(">H", buf[j:j + 2])[0] + 1, j + 2) if j + 2 <= len(buf) else None
    if code >= 8:
        return 256 << (code - 8), j
    return None  # 0 is reserved


def frame_header(buf, i, fixed_block):
    """``(first sample, samples)`` of a valid frame header at ``buf[i]``, or None.

    ``fixed_block`` is the stream's block size for fixed-blocksize streams
    (whose headers count frames, not samples).
    """
    if i + 6 > len(buf) or buf[i] != 0xFF or buf[i + 1] & 0xFE != 0xF8:
        return None
    variable = buf[i + 1] & 1
    bs_code, sr_code = buf[i + 2] >> 4, buf[i + 2] & 0x0F
    channels, bits, reserved = buf[i + 3] >> 4, (buf[i + 3] >> 1) & 7, buf[i + 3] & 1
    if sr_code == 0x0F or channels > 10 or bits == 3 or reserved:
        return None
    num = _utf8_number(buf, i + 4)
    if num is None:
        return None
    number, j = num
    size = _block_size(bs_code, buf, j)
    if size is None:
        return None
    samples, j = size
    j += {12: 1, 13: 2, 14: 2}.get(sr_code, 0)
    if j >= len(buf) or _crc8(buf[i:j]) != buf[j]:
        return None
    first = number if variable else number * fixed_block
    return first, samples


def flac_frames_present(path):
    """Samples per channel that ``path``'s FLAC frames reach, or None when it cannot be told.

    Equal to the STREAMINFO total for a whole file; smaller for a file cut
    short (the first sample of the last frame header found). None for other
    formats and for streams whose header leaves the total open (0).
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if fh.read(4) != b"fLaC":
            return None
        head = fh.read(4 + 34)
        if len(head) < 38 or head[0] & 0x7F != 0:  # STREAMINFO comes first
            return None
        info = head[4:]
        fixed_block = struct.unpack(">H", info[2:4])[0]       # the maximum block size
        max_frame = int.from_bytes(info[7:10], "big")
        total = int.from_bytes(info[13:18], "big") & ((1 << 36) - 1)
        if total == 0:
            return None
        tail = min(size, max(_TAIL_MIN, min(_TAIL_MAX, 4 * max_frame)))
        fh.seek(size - tail)
        buf = fh.read(tail)
    # From the end back: the last header whose frame reaches the promised total
    # says the file is whole. A false sync inside audio data (CRC-8 passes for one
    # in 256 look-alikes) can only shadow the real last header, never replace it.
    reached = 0
    for i in range(len(buf) - 6, -1, -1):
        if buf[i] != 0xFF:
            continue
        found = frame_header(buf, i, fixed_block)
        if found is None:
            continue
        first, samples = found
        if first + samples == total:
            return total
        if first < total:
            reached = max(reached, first)
    return reached
