"""Scripted renders: file to file through chains and presets, atomic, in blocks."""
import json

import mido
import numpy as np
import pytest
from pedalboard import Gain
from pedalboard.io import AudioFile

from conftest import SR, music_like
from stemboard.plugin.base import Processor
from stemboard.plugin.presets import separator_from_preset, stemsplit_from_preset
from stemboard.presets import load_preset
from stemboard.plugin.render import render, render_folder, render_stems


def write_wav(path, x, bit_depth=32):
    with AudioFile(str(path), "w", SR, x.shape[0], bit_depth=bit_depth) as f:
        f.write(x)
    return path


def read(path):
    with AudioFile(str(path)) as f:
        return f.read(f.frames), f.file_dtype


class Recorder(Processor):
    """Identity that records its block sizes, and can fail on request."""

    def __init__(self, fail_after=None):
        super().__init__()
        self.sizes, self.buffer_sizes, self.fail_after = [], set(), fail_after

    def _process(self, x, sample_rate, buffer_size, reset):
        self.sizes.append(x.shape[1])
        self.buffer_sizes.add(buffer_size)
        if self.fail_after is not None and len(self.sizes) > self.fail_after:
            raise RuntimeError("boom")
        return x

    def _flush(self):
        return np.zeros((1, 0), np.float32)

    def _reset(self):
        pass

    latency_samples = 0


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    d = tmp_path_factory.mktemp("songs")
    x = music_like(channels=2, seconds=0.5)
    return write_wav(d / "song.wav", x), x


def test_render_preset_matches_offline_processing(tmp_path, song, model_path):
    path, x = song
    seen = []
    out = render(path, tmp_path / "k.wav", "karaoke", model=model_path, buffer_size=3000,
                 progress=lambda d, t: seen.append((d, t)))
    y, dtype = read(out)
    want = separator_from_preset(load_preset("karaoke"), model_path)(x, SR)
    assert dtype == "float32" and y.shape == x.shape
    assert np.abs(y - want).max() < 1e-6
    assert seen[-1] == (x.shape[1], x.shape[1])
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) == 8


def test_blocks_are_bounded_and_format_selectable(tmp_path, song):
    path, x = song
    rec = Recorder()
    out = render(path, tmp_path / "o.wav", [Gain(0.0), rec], buffer_size=1024,
                 format="flac", bit_depth=16)
    assert out.suffix == ".flac" and max(rec.sizes) <= 1024 and sum(rec.sizes) == x.shape[1]
    y, dtype = read(out)
    assert dtype == "int16" and np.abs(y - x).max() < 2 / 32768


def test_buffer_size_reaches_the_processor_and_block_size_still_works(tmp_path, song):
    path, x = song
    rec = Recorder()
    render(path, tmp_path / "o.wav", rec, buffer_size=700)
    assert rec.buffer_sizes == {700} and max(rec.sizes) <= 700
    old = Recorder()
    with pytest.warns(DeprecationWarning, match="buffer_size"):
        render(path, tmp_path / "p.wav", old, block_size=900)
    assert old.buffer_sizes == {900} and max(old.sizes) <= 900


def test_failed_render_leaves_nothing(tmp_path, song):
    path, _ = song
    with pytest.raises(RuntimeError, match="boom"):
        render(path, tmp_path / "o.wav", Recorder(fail_after=2), buffer_size=1024)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError, match="format"):
        render(path, tmp_path / "o.xyz", Gain(0.0))


def test_render_stems_sum_to_input(tmp_path, song, model_path):
    from stemboard.plugin import StemSeparator

    path, x = song
    paths = render_stems(path, tmp_path / "stems", StemSeparator(model_path),
                         stems=["vocals", "drums", "bass", "other"], buffer_size=5000)
    total = sum(read(p)[0] for p in paths.values())
    assert sorted(p.name for p in paths.values()) == ["bass.wav", "drums.wav", "other.wav",
                                                      "vocals.wav"]
    assert np.abs(total - x).max() < 1e-5


def test_separation_renders_default_to_larger_blocks_with_the_same_output(tmp_path,
                                                                          model_path):
    """Stem renders (and ``separate``/``remix``/``batch``) default to
    SEPARATION_BUFFER_SIZE blocks, for speed; the stems are the same bits as in
    render's smaller default blocks, whose size stays for effect chains."""
    import inspect

    from stemboard.cli import build_parser
    from stemboard.plugin import StemSeparator
    from stemboard.plugin.defaults import DEFAULT_BUFFER_SIZE, SEPARATION_BUFFER_SIZE

    assert SEPARATION_BUFFER_SIZE > DEFAULT_BUFFER_SIZE
    default = inspect.signature(render_stems).parameters["buffer_size"].default
    assert default == SEPARATION_BUFFER_SIZE
    assert inspect.signature(render).parameters["buffer_size"].default == DEFAULT_BUFFER_SIZE
    parser = build_parser()
    for argv in (["separate", "x.wav", "-o", "o"], ["remix", "x.wav", "-o", "o.wav"],
                 ["batch", "x.wav", "-o", "o"]):
        assert parser.parse_args(argv).buffer_size == SEPARATION_BUFFER_SIZE, argv[0]
    assert parser.parse_args(["render", "x.wav", "-o", "o.wav", "--preset", "p"]
                             ).buffer_size == DEFAULT_BUFFER_SIZE

    x = music_like(channels=2, seconds=3.5)          # more than two default blocks
    path = write_wav(tmp_path / "long.wav", x)
    sep = StemSeparator(model_path)
    big = render_stems(path, tmp_path / "big", sep)
    small = render_stems(path, tmp_path / "small", sep, buffer_size=DEFAULT_BUFFER_SIZE)
    for stem in big:
        np.testing.assert_array_equal(read(big[stem])[0], read(small[stem])[0])


def test_render_folder_with_presets(tmp_path, model_path):
    songs = tmp_path / "songs"
    songs.mkdir()
    xs = [music_like(channels=1, seconds=0.3, seed=s) for s in range(2)]
    for i, x in enumerate(xs):
        write_wav(songs / f"s{i}.wav", x)
    (songs / "notes.txt").write_text("not audio")
    done = []
    for preset in ("karaoke", "drumless"):
        outs = render_folder(songs, tmp_path / preset, preset, suffix=f"-{preset}",
                             model=model_path, progress=lambda f, d, t: done.append(f.name))
        assert [p.name for p in outs] == [f"s0-{preset}.wav", f"s1-{preset}.wav"]
    sep = separator_from_preset(load_preset("drumless"), model_path)
    assert np.abs(read(tmp_path / "drumless" / "s1-drumless.wav")[0] - sep(xs[1], SR)).max() \
        < 1e-6
    assert set(done) == {"s0.wav", "s1.wav"}


def test_render_with_midi_automation_file(tmp_path, song, model_path):
    path, x = song
    mf = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: 240 ticks = 0.25 s
    mf.tracks.append(mido.MidiTrack([mido.Message("control_change", control=7, value=0,
                                                  time=240)]))
    mf.save(str(tmp_path / "a.mid"))
    (tmp_path / "map.json").write_text(json.dumps(
        {"mappings": [{"cc": 7, "param": "gain:vocals"}]}))
    proc = stemsplit_from_preset(load_preset("vocals-up-3db"), model=model_path)
    out = render(path, tmp_path / "auto.wav", proc, automation=tmp_path / "a.mid",
                 midi_map=tmp_path / "map.json", buffer_size=4000)
    y = read(out)[0]
    up = separator_from_preset(load_preset("vocals-up-3db"), model_path)(x, SR)
    kar = separator_from_preset(load_preset("karaoke"), model_path)(x, SR)
    t0 = SR // 4
    ramp = int(round(0.005 * SR))
    assert np.abs(y[:, :t0] - up[:, :t0]).max() < 1e-5
    assert np.abs(y[:, t0 + ramp:] - kar[:, t0 + ramp:]).max() < 1e-5
    # A preset name with automation renders through a StemSplit the same way.
    again = render(path, tmp_path / "auto2.wav", "vocals-up-3db", model=model_path,
                   automation=tmp_path / "a.mid", midi_map=tmp_path / "map.json")
    assert np.abs(read(again)[0] - y).max() < 1e-6
    with pytest.raises(ValueError, match="midi_map"):
        render(path, tmp_path / "x.wav", proc, automation=tmp_path / "a.mid")


def test_render_with_automation_passes_its_buffer_size(tmp_path, song, model_path,
                                                       buffer_sizes_seen):
    path, _ = song
    mido.MidiFile(ticks_per_beat=480).save(str(tmp_path / "a.mid"))
    (tmp_path / "map.json").write_text(json.dumps(
        {"mappings": [{"cc": 7, "param": "gain:vocals"}]}))
    proc = separator_from_preset(load_preset("vocals-up-3db"), model_path)
    render(path, tmp_path / "auto.wav", proc, automation=tmp_path / "a.mid",
           midi_map=tmp_path / "map.json", buffer_size=3000)
    assert buffer_sizes_seen == {3000}
