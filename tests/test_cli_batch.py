"""The CLI options users of Demucs, Spleeter and audio-separator expect (issue 25):
--two-stems, several inputs, templates, formats, devices, --json, --version."""
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from pedalboard.io import AudioFile

from conftest import music_like
from stemboard import cli_commands
from stemboard.plugin import audio
from stemboard.batch import BatchProgress, expand_inputs
from stemboard.cli import main
from stemboard.models import bundled_models, model_info
from stemboard.plugin.naming import NameTemplate, TemplateError, track_name
from stemboard.plugin.render import two_stem_model


def write(path, x, sr=44100, bit_depth=32):
    path.parent.mkdir(parents=True, exist_ok=True)
    with AudioFile(str(path), "w", sr, x.shape[0], bit_depth=bit_depth) as f:
        f.write(x)
    return path


def read(path):
    with AudioFile(str(path)) as f:
        return f.read(f.frames)


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def song(tmp_path):
    return write(tmp_path / "song.wav", music_like(seconds=1.0))


@pytest.fixture
def two_stem_path(model_factory):
    return model_factory(stems=("vocals", "accompaniment"))


def run(argv, model_path, capsys):
    code = main([*map(str, argv), "--model", model_path, "-q"])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stemboard: error:"), err
    return lines[0]


# -- --two-stems -----------------------------------------------------------------------------
@pytest.mark.parametrize("stem", ["vocals", "drums"])
def test_two_stems_write_stem_and_complement_that_sum_to_the_mix(song, tmp_path, model_path,
                                                                capsys, stem):
    out = tmp_path / "out"
    code, _, err = run(["separate", song, "-o", out, "--two-stems", stem], model_path, capsys)
    assert code == 0, err
    assert set(files_under(out)) == {"song", f"song/no_{stem}.wav", f"song/{stem}.wav"}
    x = read(song)
    a, b = read(out / "song" / f"{stem}.wav"), read(out / "song" / f"no_{stem}.wav")
    assert a.shape == b.shape == x.shape
    assert np.max(np.abs(a + b - x)) < 1e-4
    assert np.max(np.abs(a)) > 1e-3 and np.max(np.abs(b)) > 1e-3  # a real split


def test_two_stems_with_a_two_stem_model_uses_its_other_stem(song, tmp_path, two_stem_path,
                                                             capsys):
    out = tmp_path / "out"
    code, _, err = run(["separate", song, "-o", out, "--two-stems", "vocals"], two_stem_path,
                       capsys)
    assert code == 0, err
    x = read(song)
    a, b = read(out / "song" / "vocals.wav"), read(out / "song" / "no_vocals.wav")
    assert np.max(np.abs(a + b - x)) < 1e-4


def test_two_stem_model_choice_follows_the_bundled_models():
    """A bundled 2-stem model with the stem is chosen; otherwise the default; and an
    explicit --model always wins."""
    two_stem = {name: model_info(path)["stems"] for name, path in bundled_models().items()
                if len(model_info(path)["stems"]) == 2}
    for stems in two_stem.values():
        for stem in stems:
            chosen = model_info(two_stem_model(stem))["stems"]
            assert len(chosen) == 2 and stem in chosen
    # The default cascade's own first stage wins over other 2-stem models.
    parts = model_info(None).get("parts")
    if parts and "vocals" in model_info(parts[0])["stems"]:
        assert two_stem_model("vocals") == str(parts[0])
    assert two_stem_model("a-stem-no-model-has") is None  # the default model
    assert two_stem_model("vocals", "my.onnx") == "my.onnx"


def test_two_stem_model_choice_reads_stems_not_names(monkeypatch, tmp_path):
    import stemboard.plugin.render as models  # where two_stem_model looks the registry up

    fake = {"a": tmp_path / "a.onnx", "b": tmp_path / "b.onnx"}
    stems = {"a": ("x", "y", "z"), "b": ("piano", "rest")}
    monkeypatch.setattr(models, "bundled_models", lambda: fake)
    monkeypatch.setattr(models, "model_info",
                        lambda p: {"stems": stems["a" if p is None else p.stem]})
    assert two_stem_model("piano") == "b" and two_stem_model("rest") == "b"
    assert two_stem_model("x") is None


@pytest.mark.parametrize("extra, message", [
    (["--two-stems", "voice"], "--two-stems voice: unknown stem; the model"),
    (["--two-stems", "vocals", "--stems", "vocals"], "--two-stems and --stems do not go"),
])
def test_two_stems_bad_values(song, tmp_path, model_path, capsys, extra, message):
    out = tmp_path / "out"
    code, _, err = run(["separate", song, "-o", out, *extra], model_path, capsys)
    assert code == 1 and message in one_error_line(err)
    assert files_under(out) == []


# -- several inputs ---------------------------------------------------------------------------
def test_batch_isolates_a_corrupt_file(tmp_path, model_path, capsys):
    a = write(tmp_path / "in" / "a.wav", music_like(seconds=0.5, seed=1))
    bad = tmp_path / "in" / "b.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    c = write(tmp_path / "in" / "c.flac", music_like(seconds=0.5, seed=2), bit_depth=24)
    out = tmp_path / "out"
    code, stdout, err = run(["separate", a, bad, c, "-o", out, "--stems", "vocals,bass"],
                            model_path, capsys)
    assert code == 1
    assert files_under(out) == ["a", "a/bass.wav", "a/vocals.wav",
                                "c", "c/bass.wav", "c/vocals.wav"]  # nothing of b, no temps
    lines = err.strip().splitlines()
    assert lines[0].startswith("stemboard: error:") and "b.wav: cannot read audio" in lines[0]
    assert lines[-1].startswith("stemboard: 2 of 3 inputs done") and "1 failed" in lines[-1]
    assert str(bad) in lines[-1]
    assert len(stdout.strip().splitlines()) == 4


def test_folders_recursive_and_globs(tmp_path, model_path, capsys):
    src = tmp_path / "in"
    write(src / "one.wav", music_like(seconds=0.3))
    write(src / "sub" / "two.wav", music_like(seconds=0.3, seed=3))
    (src / "notes.txt").write_text("not audio")
    assert [p.name for p in expand_inputs([str(src)])] == ["one.wav"]
    assert [p.name for p in expand_inputs([str(src)], recursive=True)] == ["one.wav", "two.wav"]
    assert [p.name for p in expand_inputs([str(src / "*.wav"), str(src / "one.wav")])] \
        == ["one.wav"]  # each file once
    out = tmp_path / "out"
    code, _, err = run(["separate", src, "-r", "-o", out, "--stems", "vocals"], model_path,
                       capsys)
    assert code == 0, err
    assert files_under(out) == ["one", "one/vocals.wav", "two", "two/vocals.wav"]
    assert "2 of 2 inputs done" in err


@pytest.mark.parametrize("pattern, message", [("*.nothing", "no file matches this pattern"),
                                              ("empty", "no audio files in this folder")])
def test_inputs_that_select_nothing(tmp_path, model_path, capsys, pattern, message):
    (tmp_path / "empty").mkdir()
    code, _, err = run(["separate", tmp_path / pattern, "-o", tmp_path / "out"], model_path,
                       capsys)
    assert code == 1 and message in one_error_line(err)


def test_filename_template(song, tmp_path, model_path, capsys):
    out = tmp_path / "out"
    code, _, err = run(["separate", song, "-o", out, "--stems", "drums", "--filename",
                        "{model}/{track}-{stem}.{ext}", "--format", "flac"], model_path, capsys)
    assert code == 0, err
    name = model_info(model_path)["name"]
    assert files_under(out) == [name, f"{name}/song-drums.flac"]


@pytest.mark.parametrize("template, message", [
    ("{track}/{stme}.{ext}", "unknown field {stme}; use {track}, {stem}, {ext}, {model}"),
    ("{track}.{ext}", "needs {stem}"),
    ("{track}/{stem", "expected '}'"),
    ("/abs/{stem}.{ext}", "must be a path relative"),
    ("../{stem}.{ext}", "must be a path relative"),
    ("{stem:>10}.{ext}", "takes no format spec"),
])
def test_bad_template_is_one_line_and_writes_nothing(song, tmp_path, model_path, capsys,
                                                     template, message):
    out = tmp_path / "out"
    code, _, err = run(["separate", song, "-o", out, "--filename", template], model_path,
                       capsys)
    assert code == 1 and message in one_error_line(err)
    assert files_under(out) == []


def test_template_collision_across_inputs_is_refused_up_front(tmp_path, model_path, capsys):
    a = write(tmp_path / "a" / "song.wav", music_like(seconds=0.3))
    b = write(tmp_path / "b" / "song.wav", music_like(seconds=0.3, seed=4))
    out = tmp_path / "out"
    code, _, err = run(["separate", a, b, "-o", out], model_path, capsys)
    assert code == 1 and "would both write" in one_error_line(err)
    assert files_under(out) == []


def test_render_stems_takes_track_in_templates(song, tmp_path, model_path):
    from stemboard.plugin.render import render_stems

    paths = render_stems(song, tmp_path / "o", model=model_path, stems=["bass"],
                         name_template="{track}_{stem}")
    assert paths["bass"].name == "song_bass.wav"
    with pytest.raises(TemplateError, match="unknown field {trak}"):
        render_stems(song, tmp_path / "o", model=model_path, name_template="{trak}_{stem}")


def test_track_names_and_templates():
    assert track_name("x/Song One.stem.mp4") == "Song One"
    assert track_name("a.b.flac") == "a.b"
    t = NameTemplate("{track}/{stem}.{ext}", available=("track", "stem", "ext"),
                     required=("stem",))
    assert str(t.path("out", track="a", stem="v", ext="wav")) == "out/a/v.wav"
    with pytest.raises(TemplateError, match="cannot be part of a file name"):
        t.path("out", track="..", stem="v", ext="wav")


def test_remix_several_inputs_into_a_folder(tmp_path, model_path, capsys):
    a = write(tmp_path / "a.wav", music_like(seconds=0.4))
    b = write(tmp_path / "b.wav", music_like(seconds=0.4, seed=5))
    out = tmp_path / "mixes"
    code, _, err = run(["remix", a, b, "-o", out, "--gain", "vocals=-inf", "--format", "flac"],
                       model_path, capsys)
    assert code == 0, err
    assert files_under(out) == ["a.flac", "b.flac"]
    code, _, err = run(["remix", a, b, "-o", tmp_path / "one.wav"], model_path, capsys)
    assert code == 1 and "names one file but there are 2 inputs" in one_error_line(err)


def test_remix_template_without_ext_keeps_dotted_track_names(tmp_path, model_path, capsys):
    """A --filename without {ext} gets the format's extension appended: "v1.2" stays whole."""
    a = write(tmp_path / "take.v1.2.wav", music_like(seconds=0.4))
    out = tmp_path / "mixes"
    code, _, err = run(["remix", a, "-o", out, "--filename", "{track}", "--format", "flac"],
                       model_path, capsys)
    assert code == 0, err
    assert files_under(out) == ["take.v1.2.flac"]


@pytest.mark.parametrize("order", [["-r", "{src}", "{extra}", "-o", "{out}"],
                                   ["{src}", "-r", "{extra}", "-o", "{out}"],
                                   ["-o", "{out}", "{src}", "-r", "{extra}"]])
def test_inputs_before_and_after_options(tmp_path, model_path, capsys, order):
    """Inputs anywhere among the options (argparse's intermixed parsing): `separate -r dir
    -o out`, `separate dir -r -o out` and inputs after -r all take every input."""
    src = tmp_path / "in"
    write(src / "one.wav", music_like(seconds=0.3))
    write(src / "sub" / "two.wav", music_like(seconds=0.3, seed=3))
    extra = write(tmp_path / "extra.wav", music_like(seconds=0.3, seed=4))
    out = tmp_path / "out"
    argv = [a.format(src=src, extra=extra, out=out) for a in order]
    code, _, err = run(["separate", *argv, "--stems", "vocals"], model_path, capsys)
    assert code == 0, err
    assert files_under(out) == ["extra", "extra/vocals.wav", "one", "one/vocals.wav", "two",
                                "two/vocals.wav"]


def test_render_several_inputs_with_preset_template(tmp_path, model_path, capsys):
    from stemboard.presets import load_preset

    src = tmp_path / "in"
    a = write(src / "a.wav", music_like(seconds=0.4))
    write(src / "sub" / "b.wav", music_like(seconds=0.4, seed=5))
    c = write(tmp_path / "c.flac", music_like(seconds=0.4, seed=6), bit_depth=24)
    out = tmp_path / "renders"
    code, stdout, err = run(["render", src, "--preset", "karaoke", "-r", c, "-o", out],
                            model_path, capsys)
    assert code == 0, err
    assert files_under(out) == ["a-karaoke.wav", "b-karaoke.wav", "c-karaoke.wav"]
    assert len(stdout.strip().splitlines()) == 3 and "3 of 3 inputs done" in err
    want = load_preset("karaoke").make_separator(model_path)(read(a), 44100)
    assert np.abs(read(out / "a-karaoke.wav") - want).max() < 1e-5
    # {preset}, {model} and subfolders; another preset into the same folder
    code, _, err = run(["render", a, c, "--preset", "drumless", "-o", out, "--format", "flac",
                        "--filename", "{preset}/{track}.{model}.{ext}"], model_path, capsys)
    assert code == 0, err
    name = model_info(model_path)["name"]
    assert {f"drumless/a.{name}.flac", f"drumless/c.{name}.flac"} <= set(files_under(out))


def test_render_automation_starts_each_input_afresh(tmp_path, model_path, capsys):
    import mido

    a = write(tmp_path / "a.wav", music_like(seconds=0.6, seed=1))
    b = write(tmp_path / "b.wav", music_like(seconds=0.6, seed=2))
    mf = mido.MidiFile(ticks_per_beat=100)  # program change at 0.25 s: another preset
    mf.tracks.append(mido.MidiTrack([mido.Message("program_change", program=1, time=50)]))
    mf.save(str(tmp_path / "a.mid"))
    (tmp_path / "m.json").write_text(json.dumps(
        {"mappings": [{"program": 1, "preset": "bass-only"}]}))
    auto = ["--preset", "drumless", "--automation", tmp_path / "a.mid", "--midi-map",
            tmp_path / "m.json"]
    code, _, err = run(["render", a, b, "-o", tmp_path / "both", *auto], model_path, capsys)
    assert code == 0, err
    code, _, err = run(["render", b, "-o", tmp_path / "b-alone.wav", *auto], model_path, capsys)
    assert code == 0, err
    assert np.array_equal(read(tmp_path / "both" / "b-drumless.wav"),
                          read(tmp_path / "b-alone.wav"))


def test_render_one_input_to_a_file_and_failures(tmp_path, model_path, capsys):
    a = write(tmp_path / "a.wav", music_like(seconds=0.4))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    out = tmp_path / "out"
    code, stdout, err = run(["render", a, "--preset", "karaoke", "-o", tmp_path / "k.ogg"],
                            model_path, capsys)
    assert code == 0 and stdout.strip() == str(tmp_path / "k.ogg"), err
    code, _, err = run(["render", a, bad, "--preset", "karaoke", "-o", out], model_path, capsys)
    assert code == 1 and files_under(out) == ["a-karaoke.wav"]
    assert "bad.wav: cannot read audio" in err and "1 of 2 inputs done" in err
    for extra, message in [(["-o", tmp_path / "one.wav"], "names one file but there are 2"),
                           (["-o", out, "--filename", "{preset}.{ext}"], "needs {track}"),
                           (["-o", out, "--filename", "{stem}.{ext}"], "unknown field {stem}"),
                           (["-o", out, "--format", "mp3", "--bit-depth", "24"], "mp3")]:
        before = files_under(tmp_path)
        code, _, err = run(["render", a, bad, "--preset", "karaoke", *extra], model_path, capsys)
        assert code == 1 and message in one_error_line(err)
        assert files_under(tmp_path) == before


# -- formats ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, extra", [("mp3", ["--bitrate", "192"]), ("ogg", []),
                                        ("aiff", ["--bit-depth", "24"]),
                                        ("wav", ["--bit-depth", "32f"])])
def test_output_formats(song, tmp_path, model_path, capsys, fmt, extra):
    out = tmp_path / "out"
    code, _, err = run(["separate", song, "-o", out, "--stems", "vocals", "--format", fmt,
                        *extra], model_path, capsys)
    assert code == 0, err
    y = np.concatenate(list(audio.iter_blocks(out / "song" / f"vocals.{fmt}")), axis=1)
    if fmt != "ogg":  # mp3 reads back aligned (LAME header), others exactly as long
        assert y.shape == read(song).shape


@pytest.mark.parametrize("extra, message", [
    (["--format", "wma"], "argument --format: invalid choice: 'wma'"),
    (["--format", "mp3", "--bit-depth", "24"], "mp3 is lossy and has no bit depth"),
    (["--format", "mp3", "--bitrate", "1000"], "cannot be written at 1000 kbit/s"),
    (["--bitrate", "320"], "wav is lossless and has no bitrate"),
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
])
def test_bad_format_options_are_one_line(song, tmp_path, model_path, capsys, extra, message):
    out = tmp_path / "out"
    code, _, err = run(["separate", song, "-o", out, *extra], model_path, capsys)
    assert code == 1 and message in one_error_line(err)
    assert files_under(out) == []


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="ffmpeg is not installed (optional system package)")
def test_m4a_input_through_ffmpeg(tmp_path, model_path, capsys):
    wav = write(tmp_path / "x.wav", music_like(seconds=0.5))
    m4a = tmp_path / "tune.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(wav), "-c:a", "aac",
                    str(m4a)], check=True)
    out = tmp_path / "out"
    code, _, err = run(["separate", m4a, "-o", out, "--stems", "bass"], model_path, capsys)
    assert code == 0, err
    assert files_under(out) == ["tune", "tune/bass.wav"]


# -- devices, --json, --version -----------------------------------------------------------
def test_unavailable_device_is_one_clear_line(song, tmp_path, model_path, capsys, monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    out = tmp_path / "out"
    code, _, err = run(["separate", song, "-o", out, "--device", "cuda"], model_path, capsys)
    line = one_error_line(err)
    assert code == 1 and "--device cuda: CUDAExecutionProvider is not available" in line
    assert "onnxruntime-gpu" in line and files_under(out) == []
    code, _, err = run(["separate", song, "-o", out, "--providers", "warp"], model_path, capsys)
    assert code == 1 and "unknown execution provider 'warp'" in one_error_line(err)


def test_execution_providers_mapping():
    assert cli_commands.execution_providers() is None
    assert cli_commands.execution_providers("cpu") == ["CPUExecutionProvider"]
    assert cli_commands.execution_providers(providers="cpu") == ["CPUExecutionProvider"]
    assert cli_commands.execution_providers(providers="CPUExecutionProvider,cpu") == \
        ["CPUExecutionProvider"]


def test_device_cpu_and_threads_run(song, tmp_path, model_path, capsys):
    out = tmp_path / "out"
    code, _, err = run(["separate", song, "-o", out, "--device", "cpu", "--threads", "1",
                        "--stems", "other"], model_path, capsys)
    assert code == 0, err
    assert files_under(out) == ["song", "song/other.wav"]


def test_json_summary(tmp_path, model_path, capsys):
    a = write(tmp_path / "a.wav", music_like(seconds=0.5))
    missing = tmp_path / "gone.wav"
    out = tmp_path / "out"
    code, stdout, _ = run(["separate", a, missing, "-o", out, "--two-stems", "vocals",
                           "--json"], model_path, capsys)
    assert code == 1
    s = json.loads(stdout)
    assert s["command"] == "separate" and s["model"] and s["ok"] == 1 and s["failed"] == 1
    assert s["providers"] == ["CPUExecutionProvider"]
    ok, bad = s["inputs"]
    assert ok["status"] == "ok" and set(ok["outputs"]) == {"vocals", "no_vocals"}
    assert ok["duration_s"] == 0.5 and ok["sample_rate"] == 44100
    assert ok["seconds"] > 0 and ok["realtime_factor"] > 0
    assert bad["status"] == "failed" and "no such file" in bad["error"]
    assert bad["outputs"] == {}
    assert s["duration_s"] == 0.5 and s["realtime_factor"] > 0


def test_version(capsys):
    from stemboard import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"stemboard {__version__}"
    r = subprocess.run([sys.executable, "-m", "stemboard", "--version"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f"stemboard {__version__}"


def test_missing_required_option_is_one_line(capsys):
    assert main(["separate", "x.wav"]) == 1
    assert "the following arguments are required: -o" in one_error_line(capsys.readouterr().err)


def test_progress_bars_cover_the_batch_and_each_file():
    buf = io.StringIO()
    p = BatchProgress(2, enabled=True, file=buf)
    for name in ("a.wav", "b.wav"):
        cb = p.start(name, 10.0, 100, "separating")
        cb(50, 100)
        cb(100, 100)
        p.advance()
    assert p._batch.n == 2  # the batch bar counted both files
    p.close()
    text = buf.getvalue()
    assert "files" in text and "separating a.wav" in text and "separating b.wav" in text
    assert BatchProgress(3, enabled=False).start("a.wav", 10.0, 100, "x") is None
