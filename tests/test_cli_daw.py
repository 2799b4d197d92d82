"""The render / presets / ab commands on a synthesized file."""
import json
import re

import mido
import numpy as np
import pytest
from pedalboard.io import AudioFile

from conftest import SR, music_like
from stemboard.cli import main
from stemboard.cli_daw import file_lufs
from stemboard.plugin.presets import separator_from_preset
from stemboard.presets import load_preset


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "in.wav"
    x = music_like(channels=2, seconds=1.0)
    with AudioFile(str(path), "w", SR, 2, bit_depth=32) as f:
        f.write(x)
    return path, x


def read(path):
    with AudioFile(str(path)) as f:
        return f.read(f.frames)


def test_daw_commands_are_always_registered():
    """render, presets and ab come with the parser: no import error can drop them unseen."""
    import ast
    import inspect

    from stemboard import cli

    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    assert {"separate", "remix", "batch", "models", "render", "presets", "ab"} <= set(sub.choices)
    # ... and nothing in the CLI swallows an ImportError to carry on without them.
    for node in ast.walk(ast.parse(inspect.getsource(cli))):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            names = {n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)}
            assert not names & {"ImportError", "ModuleNotFoundError"}, ast.unparse(node.type)


def test_presets_command_lists_descriptions(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^karaoke\s+Karaoke: the vocals muted", out, re.M)
    assert re.search(r"^vocals-up-3db-live\s+\S", out, re.M)


def test_render_with_preset(tmp_path, wav, model_path, capsys):
    path, x = wav
    out = tmp_path / "k.flac"
    assert main(["render", str(path), "-o", str(out), "--preset", "karaoke",
                 "--model", model_path, "--bit-depth", "24", "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    want = separator_from_preset(load_preset("karaoke"), model_path)(x, SR)
    assert np.abs(read(out) - want).max() < 1e-5


def test_render_with_automation(tmp_path, wav, model_path):
    path, x = wav
    mf = mido.MidiFile(ticks_per_beat=100)
    mf.tracks.append(mido.MidiTrack([mido.Message("program_change", program=1, time=50)]))
    mf.save(str(tmp_path / "a.mid"))
    (tmp_path / "m.json").write_text(json.dumps(
        {"mappings": [{"program": 1, "preset": "bass-only"}]}))
    out = tmp_path / "a.wav"
    assert main(["render", str(path), "-o", str(out), "--preset", "drumless", "--model",
                 model_path, "--automation", str(tmp_path / "a.mid"), "--midi-map",
                 str(tmp_path / "m.json"), "-q"]) == 0
    y = read(out)
    t0 = SR // 4  # 50 ticks at 100 per beat, 120 bpm
    ramp = int(round(0.005 * SR))
    a = separator_from_preset(load_preset("drumless"), model_path)(x, SR)
    b = separator_from_preset(load_preset("bass-only"), model_path)(x, SR)
    assert np.abs(y[:, :t0] - a[:, :t0]).max() < 1e-5
    assert np.abs(y[:, t0 + ramp:] - b[:, t0 + ramp:]).max() < 1e-5


def test_ab_renders_both_and_matches_loudness(tmp_path, wav, model_path, capsys):
    path, _ = wav
    assert main(["ab", str(path), "--a", "karaoke", "--b", "vocals-only", "-o",
                 str(tmp_path), "--model", model_path, "-q"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    pat = r"^([AB]) (\S+): (-?\d+\.\d) LUFS, gain ([+-]\d+\.\d) dB -> (.+)$"
    parsed = [re.match(pat, line).groups() for line in lines]
    assert [(p[0], p[1]) for p in parsed] == [("A", "karaoke"), ("B", "vocals-only")]
    # One side is attenuated to the other's loudness; the files now agree.
    gains = [float(p[3]) for p in parsed]
    assert max(gains) == 0.0 and min(gains) < 0.0
    after = [file_lufs(p[4]) for p in parsed]
    assert after[0] == pytest.approx(after[1], abs=0.1)
    before = [float(p[2]) for p in parsed]
    assert abs(before[0] - before[1]) == pytest.approx(-min(gains), abs=0.11)


@pytest.mark.parametrize("argv, words", [
    (["render", "IN", "-o", "OUT.wav", "--preset", "nope"], "unknown preset 'nope'"),
    (["render", "IN", "-o", "OUT.wav", "--preset", "karaoke", "--automation", "a.mid"],
     "--midi-map"),
    (["ab", "IN", "--a", "karaoke", "--b", "nope", "-o", "D"], "unknown preset 'nope'"),
])
def test_errors_are_one_line(tmp_path, wav, model_path, capsys, argv, words):
    argv = [str(wav[0]) if a == "IN" else str(tmp_path / a) if a in ("OUT.wav", "D") else a
            for a in argv]
    assert main(argv + ["--model", model_path]) == 1
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
