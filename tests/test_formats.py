"""Input decoding (gapless MP3, ffmpeg fallback) and output format options."""
import shutil
import subprocess

import numpy as np
import pytest
from pedalboard.io import AudioFile

from stemboard.plugin import audio, decode

SR = 44100
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                  reason="ffmpeg is not installed (optional system package)")


def chirp(seconds=3.0, sr=SR, channels=2):
    """A tone sweeping 200 Hz to 4 kHz with a click every 0.5 s: easy to align exactly."""
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (200 * t + (3800 / (2 * seconds)) * t ** 2))
    x[::sr // 2] += 0.5
    return np.stack([x * (1 - 0.2 * c) for c in range(channels)]).astype(np.float32)


def lag_of(y, x, search=3000):
    """The shift ``L`` maximising the correlation of ``y[L:]`` with ``x`` (negative: y early)."""
    n = min(x.shape[1], y.shape[1]) - search
    scores = {L: float(np.dot(y[0, max(L, 0):max(L, 0) + n], x[0, max(-L, 0):max(-L, 0) + n]))
              for L in range(-search, search + 1)}
    return max(scores, key=scores.get)


def write_wav(path, x, sr=SR):
    with AudioFile(str(path), "w", sr, x.shape[0], bit_depth=32) as f:
        f.write(x)
    return path


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *map(str, args)], check=True)


def read_all(path):
    return np.concatenate(list(audio.iter_blocks(path, 5000)), axis=1)


@pytest.mark.parametrize("encoder", ["ffmpeg", "pedalboard"])
def test_mp3_input_aligns_sample_for_sample(tmp_path, encoder):
    """The LAME header's delay and padding are trimmed: same length and no lag.

    Before the trim pedalboard.io returned 1,105 samples of delay in front
    (576 encoder + 529 decoder) and the padding after.
    """
    x = chirp()
    mp3 = tmp_path / "x.mp3"
    if encoder == "ffmpeg":
        if shutil.which("ffmpeg") is None:
            pytest.skip("ffmpeg is not installed (optional system package)")
        ffmpeg("-i", write_wav(tmp_path / "x.wav", x), "-c:a", "libmp3lame", "-b:a", "256k", mp3)
    else:
        with AudioFile(str(mp3), "w", SR, 2, quality="256 kbps") as f:
            f.write(x)
    info = decode.mp3_gapless_info(mp3)
    assert info is not None and info.delay > 0 and info.padding > 0
    with AudioFile(str(mp3)) as f:  # what pedalboard.io alone returns
        raw = f.read(f.frames)
    assert raw.shape[1] > x.shape[1] and lag_of(raw, x) == info.delay + decode.DECODER_DELAY
    sr, ch, frames, _ = audio.read_info(mp3)
    assert (sr, ch, frames) == (SR, 2, x.shape[1])
    y = read_all(mp3)
    assert y.shape == x.shape and lag_of(y, x) == 0
    # Lossy, but the same waveform: aligned, the residual is far below the signal.
    assert np.sqrt(np.mean((y - x) ** 2)) < 0.05 * np.sqrt(np.mean(x ** 2))


@needs_ffmpeg
def test_mp3_without_lame_header_is_left_alone(tmp_path):
    x = chirp(seconds=1.0)
    mp3 = tmp_path / "plain.mp3"
    ffmpeg("-i", write_wav(tmp_path / "x.wav", x), "-c:a", "libmp3lame", "-write_xing", "0", mp3)
    assert decode.mp3_gapless_info(mp3) is None
    with AudioFile(str(mp3)) as f:
        assert audio.read_info(mp3)[2] == f.frames


@needs_ffmpeg
@pytest.mark.parametrize("suffix, codec", [(".m4a", "aac"), (".opus", "libopus")])
def test_ffmpeg_decodes_what_pedalboard_cannot(tmp_path, suffix, codec):
    x = chirp(seconds=1.0)
    src = tmp_path / f"x{suffix}"
    ffmpeg("-i", write_wav(tmp_path / "x.wav", x), "-c:a", codec, src)
    assert audio.needs_ffmpeg(src)
    sr, ch, frames, _ = audio.read_info(src)
    assert ch == 2 and frames > 0.9 * sr * 1.0
    y = read_all(src)
    assert y.shape == (2, frames) and np.max(np.abs(y)) > 0.1


@needs_ffmpeg
def test_stem_mp4_reads_the_mixture_stream(tmp_path):
    mix, other = chirp(seconds=1.0), np.zeros((2, SR), np.float32)
    a, b = write_wav(tmp_path / "a.wav", mix), write_wav(tmp_path / "b.wav", other)
    src = tmp_path / "song.stem.mp4"
    ffmpeg("-i", a, "-i", b, "-map", "0:a", "-map", "1:a", "-c:a", "aac", src)
    y = read_all(src)
    assert np.max(np.abs(y)) > 0.1  # the first stream (the mix), not the silent second


def test_missing_ffmpeg_names_the_tool(tmp_path, monkeypatch):
    src = tmp_path / "song.m4a"
    src.write_bytes(b"\x00" * 64)
    monkeypatch.setattr(decode.shutil, "which", lambda name: None)
    with pytest.raises(audio.AudioError, match=r"song\.m4a: .*ffmpeg.* not installed"):
        audio.read_info(src)


@needs_ffmpeg
def test_undecodable_file_through_ffmpeg_is_one_clear_error(tmp_path):
    src = tmp_path / "junk.opus"
    src.write_bytes(b"not audio at all" * 10)
    with pytest.raises(audio.AudioError, match=r"junk\.opus: cannot read audio \(ffmpeg"):
        audio.read_info(src)


@pytest.mark.parametrize("fmt, bit_depth, bitrate, message", [
    ("mp3", 16, None, "lossy and has no bit depth"),
    ("flac", None, 192, "lossless and has no bitrate"),
    ("aiff", 32, None, "supports bit depths (8, 16, 24)"),
    ("mp3", None, 999, "cannot be written at 999 kbit/s"),
])
def test_bad_write_options_are_refused_up_front(fmt, bit_depth, bitrate, message):
    with pytest.raises(audio.AudioError) as e:
        audio.check_write_options(fmt, bit_depth=bit_depth, bitrate=bitrate)
    assert message in str(e.value)


@pytest.mark.parametrize("fmt, kwargs", [("mp3", {"bitrate": 128}), ("ogg", {"bitrate": 96}),
                                         ("aiff", {"bit_depth": 24}),
                                         ("wav", {"bit_depth": 32}),
                                         ("flac", {"bit_depth": 16})])
def test_every_write_format_round_trips(tmp_path, fmt, kwargs):
    x = chirp(seconds=1.0)
    path = tmp_path / f"out.{fmt}"
    with audio.AtomicWriter(path, SR, 2, **kwargs) as w:
        w.write(x)
    y = read_all(path)
    assert y.shape[0] == 2
    if fmt == "mp3":  # our own MP3s carry a LAME header: read back aligned
        assert y.shape == x.shape and lag_of(y, x) == 0
    elif fmt != "ogg":
        assert y.shape == x.shape
        assert np.max(np.abs(y - x)) < (1e-6 if kwargs.get("bit_depth") == 32 else 1e-3)
