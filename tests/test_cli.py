"""The stemboard CLI: separate and remix, block-wise, atomic, clear errors."""
import subprocess
import sys

import numpy as np
import pytest
from pedalboard.io import AudioFile

from conftest import music_like
from stemboard.plugin import audio
from stemboard.cli import main


def write(path, x, sr, bit_depth=32):
    with AudioFile(str(path), "w", sr, x.shape[0], bit_depth=bit_depth) as f:
        f.write(x)
    return path


def read(path):
    with AudioFile(str(path)) as f:
        return f.read(f.frames), f.samplerate, f.num_channels


@pytest.fixture
def song(tmp_path):
    return write(tmp_path / "song.wav", music_like(seconds=1.5), 44100)


def test_separate_writes_every_stem(song, tmp_path, model_path, capsys):
    out = tmp_path / "stems"
    assert main(["separate", str(song), "-o", str(out), "--model", model_path, "-q",
                 "--buffer-size", "10000"]) == 0
    assert [p.name for p in out.iterdir()] == ["song"]  # OUT/{track}/{stem}.{ext}
    names = sorted(p.name for p in (out / "song").iterdir())
    assert names == ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]
    x, _, _ = read(song)
    stems = [read(out / "song" / n)[0] for n in names]
    assert all(s.shape == x.shape for s in stems)
    assert np.max(np.abs(sum(stems) - x)) < 1e-4  # 32-bit float files: lossless sum


def test_buffer_size_reaches_the_engine(song, tmp_path, model_path, buffer_sizes_seen, capsys):
    seen = buffer_sizes_seen
    base = ["separate", str(song), "--model", model_path, "-q"]
    assert main(base + ["-o", str(tmp_path / "a"), "--buffer-size", "3000"]) == 0
    assert seen == {3000} and "deprecated" not in capsys.readouterr().err
    seen.clear()
    assert main(base + ["-o", str(tmp_path / "b"), "--block-size", "2000"]) == 0
    assert seen == {2000}
    assert "--block-size is deprecated; use --buffer-size" in capsys.readouterr().err


def test_separate_keeps_rate_and_channels(tmp_path, model_path):
    src = write(tmp_path / "mono48k.wav", music_like(channels=1, seconds=1.0, sr=48000), 48000,
                bit_depth=16)
    out = tmp_path / "o"
    assert main(["separate", str(src), "-o", str(out), "--model", model_path,
                 "--stems", "vocals,bass", "--format", "flac", "-q"]) == 0
    assert sorted(p.name for p in (out / "mono48k").iterdir()) == ["bass.flac", "vocals.flac"]
    y, sr, ch = read(out / "mono48k" / "vocals.flac")
    assert sr == 48000 and ch == 1 and y.shape == (1, 48000)


def test_remix_mutes_a_stem(song, tmp_path, model_path):
    out_dir = tmp_path / "stems"
    main(["separate", str(song), "-o", str(out_dir), "--model", model_path, "-q",
          "--stems", "vocals"])
    karaoke = tmp_path / "karaoke.wav"
    assert main(["remix", str(song), "-o", str(karaoke), "--model", model_path, "-q",
                 "--gain", "vocals=-inf", "--gain", "drums=+0dB", "--bit-depth", "32"]) == 0
    x, _, _ = read(song)
    y, _, _ = read(karaoke)
    v, _, _ = read(out_dir / "song" / "vocals.wav")
    assert np.max(np.abs(y - (x - v))) < 1e-4


@pytest.mark.parametrize("argv, message", [
    (["separate", "{missing}", "-o", "{out}"], "no such file"),
    (["separate", "{corrupt}", "-o", "{out}"], "cannot read audio"),
    (["separate", "{song}", "-o", "{out}", "--stems", "voice"], "unknown stem(s) voice"),
    (["separate", "{song}", "-o", "{out}", "--model", "{corrupt}"], "model manifest not found"),
    (["separate", "{song}", "-o", "{out}", "--format", "flac", "--bit-depth", "12"],
     "'12' is not one of 16, 24, 32f"),
    (["separate", "{song}", "-o", "{out}", "--format", "flac", "--bit-depth", "32f"],
     "flac supports bit depths (16, 24), not 32"),
    (["remix", "{song}", "-o", "{out}/x.wav", "--gain", "vocals"], "STEM=DB"),
    (["remix", "{song}", "-o", "{out}/x.wav", "--gain", "vocals=loud"], "not a number"),
    (["remix", "{song}", "-o", "{out}/x.xyz"], "cannot write format"),
])
def test_bad_input_one_line_no_outputs(song, tmp_path, model_path, capsys, argv, message):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    out = tmp_path / "out"
    fmt = dict(missing=tmp_path / "nope.wav", corrupt=corrupt, song=song, out=out)
    args = [a.format(**fmt) for a in argv]
    if "--model" not in args:
        args += ["--model", model_path]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("stemboard: error:") and message in err
    assert len(err.splitlines()) == 1
    leftovers = list(out.rglob("*")) if out.exists() else []
    assert leftovers == []


def test_failure_midway_leaves_nothing(song, tmp_path, model_path, monkeypatch):
    out = tmp_path / "stems"
    calls = {"n": 0}
    real = audio.AtomicWriter.write

    def flaky(self, block):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError("disk full")
        real(self, block)

    monkeypatch.setattr(audio.AtomicWriter, "write", flaky)
    assert main(["separate", str(song), "-o", str(out), "--model", model_path, "-q",
                 "--block-size", "4096"]) == 1
    assert list(out.iterdir()) == []


def test_existing_output_survives_failure(song, tmp_path, model_path, monkeypatch):
    target = tmp_path / "mix.wav"
    target.write_bytes(b"precious")
    monkeypatch.setattr(audio.AtomicWriter, "write",
                        lambda self, b: (_ for _ in ()).throw(OSError("disk full")))
    assert main(["remix", str(song), "-o", str(target), "--model", model_path, "-q"]) == 1
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix.wav", "song.wav"]


def test_console_script_runs(song, tmp_path, model_path):
    r = subprocess.run([sys.executable, "-m", "stemboard", "separate", str(song), "-o",
                        str(tmp_path / "s"), "--model", model_path, "--stems", "drums"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s" / "song" / "drums.wav").exists()
    r = subprocess.run([sys.executable, "-m", "stemboard", "separate", "nope.wav", "-o",
                        str(tmp_path / "t")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "nope.wav: no such file" in r.stderr
