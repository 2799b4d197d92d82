"""Every code block in README.md runs, so the README cannot rot (issue 25).

What runs, in a temporary folder holding a 2 s synthetic ``song.wav`` and the
other files the blocks name (``song.mp3``, ``song.flac``, ``album/``,
``live/*.flac``, ``songs/``, ``moves.mid``; the ```json block is ``map.json``):

* ```python blocks, in document order, in one namespace: the README is read top
  to bottom and later examples use ``audio``, ``sr`` and ``block`` from earlier
  ones. A ``>>>`` block is a transcript: each line runs, and a line followed by
  ``Error: message`` must raise that error with that message.
* Each ``stemboard ...`` line of the ```bash blocks, as a subprocess through a
  ``stemboard`` script on ``PATH`` (globs and quotes as bash reads them), which
  must exit 0 and write the paths its comment promises
  (``stems/song/{vocals,drums,bass,other}.wav``).

What is skipped, and why:

* ``pip install ...``: installs packages (network, and the tests already run
  in an installed environment);
* ``python -m pytest``: the test suite itself;
* ``bash .ci/run``: sets up a fresh machine;
* the untagged blocks: training and ablation commands (an hour of CPU and the
  MUSDB18 data);
* the live-MIDI block's port: ``open_input()`` needs python-rtmidi and a MIDI
  device, so the block runs with the port replaced by a queue of messages
  (``LiveMidi`` accepts one), and every message must be consumed.

Speed: the ``hq`` models run 11.9 s segments, so even a 2 s file costs 3-7 s a
call and the README makes about twenty. By default the bundled ``hq*`` names
therefore load the ``offline`` model (same stems, same API; their quality and
speed are tested elsewhere): about 25 s on 2 cores. Set
``STEMBOARD_README_MODELS=real`` to run the README with the real models (about
70 s; it passed so when this test was written).
"""
import json
import os
import queue
import re
import stat
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
from pedalboard.io import AudioFile

from conftest import SR, music_like

README = Path(__file__).resolve().parent.parent / "README.md"
REAL_MODELS = os.environ.get("STEMBOARD_README_MODELS") == "real"

# Command lines not run, each with the reason (see the module docstring).
SKIPPED_LINES = {
    "pip install": "installs packages: needs the network, and the tests run installed",
    "python -m pytest": "the test suite itself",
    "bash .ci/run": "sets up a fresh machine",
    "stemboard batch tracks.txt -o /shared/stems --engine ray":
        "needs a Ray cluster at head:6379 (tests/test_jobs_ray.py runs a local one)",
}
# Untagged blocks are only allowed to hold these (not run: hours of CPU and MUSDB18).
TRAINING_COMMANDS = ("pip install", "python -m stemboard.train")


# -- reading the README -----------------------------------------------------------------------
class Block:
    """A fenced code block: its language, text, first line number and heading."""

    def __init__(self, lang, lines, line, heading):
        self.lang, self.lines, self.line, self.heading = lang, lines, line, heading

    @property
    def text(self):
        return "\n".join(self.lines) + "\n"

    def __repr__(self):
        return f"README.md:{self.line} ({self.lang or 'untagged'}, {self.heading!r})"


def readme_blocks(text=None):
    """The fenced code blocks of the README, in order."""
    text = README.read_text(encoding="utf-8") if text is None else text
    blocks, heading, current = [], None, None
    for n, line in enumerate(text.splitlines(), 1):
        if current is not None:
            if line.startswith("```"):
                blocks.append(current)
                current = None
            else:
                current.lines.append(line)
        elif line.startswith("```"):
            current = Block(line[3:].strip(), [], n + 1, heading)
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
    assert current is None, f"README.md:{current.line}: code block never closed"
    return blocks


def command_lines(block):
    """A bash block's commands, continuation lines joined, as (line number, text)."""
    out, pending = [], None
    for i, line in enumerate(block.lines):
        if pending is not None:
            pending = (pending[0], pending[1] + " " + line.strip())
        elif line.strip():
            pending = (block.line + i, line.strip())
        if pending is not None and not pending[1].endswith("\\"):
            out.append(pending)
            pending = None
        elif pending is not None:
            pending = (pending[0], pending[1][:-1].rstrip())
    assert pending is None, f"README.md:{block.line}: a command ends in a continuation"
    return out


def skip_reason(command):
    """Why a bash line is not run, or None to run it."""
    for prefix, why in SKIPPED_LINES.items():
        if command.startswith(prefix):
            return why
    return None


def expand_braces(token):
    """``a/{x,y}.wav`` -> ``["a/x.wav", "a/y.wav"]`` (one level, like bash)."""
    m = re.search(r"\{([^{}]*,[^{}]*)\}", token)
    if m is None:
        return [token]
    return [token[:m.start()] + part + token[m.end():] for part in m.group(1).split(",")]


def promised_paths(command):
    """Output paths a command's comment names: tokens with a folder and an extension,
    after brace expansion; placeholders such as ``{track}`` are not paths."""
    comment = command.partition(" #")[2]
    paths = []
    for token in comment.split():
        token = token.rstrip(",;:)")
        for path in expand_braces(token):
            if "/" in path and re.search(r"\.\w+$", path) and "{" not in path:
                paths.append(path)
    return paths


def test_readers_on_a_sample():
    """The block, command and comment readers (so a README change cannot fool them)."""
    text = ("# T\n## Sec\n```bash\nstemboard a \\\n    -o x  # x/{p,q}.wav, y/{track}.wav\n"
            "pip install foo\n```\ntext\n```\nuntagged\n```\n")
    bash, untagged = readme_blocks(text)
    assert (bash.lang, bash.line, bash.heading, untagged.lang) == ("bash", 4, "Sec", "")
    (n1, c1), (n2, c2) = command_lines(bash)
    assert (n1, n2) == (4, 6) and c1.startswith("stemboard a -o x")
    assert promised_paths(c1) == ["x/p.wav", "x/q.wav"]
    assert skip_reason(c2) and skip_reason(c1) is None


# -- the folder the blocks run in --------------------------------------------------------------
def write_audio(path, x, sr=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    with AudioFile(str(path), "w", sr, x.shape[0]) as f:
        f.write(x)


def moves_mid(path):
    """A MIDI file touching every mapping of the README's map, at 120 bpm (480 ticks a beat)."""
    mf = mido.MidiFile(ticks_per_beat=480)
    mf.tracks.append(mido.MidiTrack([
        mido.Message("control_change", control=20, value=100, time=240),  # 0.25 s
        mido.Message("note_on", note=60, velocity=100, time=240),         # 0.5 s: to B
        mido.Message("note_off", note=60, time=120),
        mido.Message("control_change", control=21, value=90, time=120),   # 1.0 s
        mido.Message("program_change", program=0, time=240),              # 1.25 s
    ]))
    mf.save(str(path))


def fast_bundled_models(real):
    """``bundled_models`` with the hq names loading the ``offline`` model."""
    def bundled_models():
        found = real()
        return {name: found["offline"] if name.startswith("hq") else path
                for name, path in found.items()}
    return bundled_models


def use_fast_models(setattr_=setattr):
    """Point the hq names at ``offline`` in this process (``setattr_``: monkeypatch's)."""
    import stemboard  # noqa: F401  (loads every module that binds the registry)
    import stemboard.cli_commands  # noqa: F401  (the CLI's bodies load only on a command)
    from stemboard.models import runtime

    real = runtime.bundled_models
    fast = fast_bundled_models(real)
    # Every module that imported the registry by name: runtime (what loading resolves
    # names with), models, and the presets, render and CLI modules that list and pick.
    for name, module in list(sys.modules.items()):
        if name.startswith("stemboard") and getattr(module, "bundled_models", None) is real:
            setattr_(module, "bundled_models", fast)


def stemboard_script(folder):
    """A ``stemboard`` command for the bash lines: this Python, this test's models."""
    tests = str(Path(__file__).resolve().parent)
    body = ["import sys"]
    if not REAL_MODELS:
        body += [f"sys.path.insert(0, {tests!r})", "from test_readme import use_fast_models",
                 "use_fast_models()"]
    # The guard: `stemboard batch` starts its workers with spawn, which imports this
    # script again in each worker; only the parent may run the command.
    body += ["from stemboard.cli import main", "if __name__ == '__main__':",
             "    sys.exit(main())"]
    path = folder / "stemboard"
    path.write_text(f"#!{sys.executable}\n" + "\n".join(body) + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The folder every block runs in, with the files the README's blocks name."""
    root = tmp_path_factory.mktemp("readme")
    x = music_like(channels=2, seconds=2.0)
    for name in ("song.wav", "song.mp3", "song.flac", "album/track.wav", "live/set.flac",
                 "songs/one.wav", "catalog/a/one.wav", "catalog/two.flac"):
        write_audio(root / name, x)
    # The batch lines' path lists.
    (root / "tracks.csv").write_text("path,artist\nsongs/one.wav,someone\n")
    (root / "more.txt").write_text("song.flac\n")
    (root / "tracks.txt").write_text("song.wav\n")
    moves_mid(root / "moves.mid")
    maps = [b for b in readme_blocks() if b.lang == "json"]
    assert len(maps) == 1, f"expected one JSON block (the MIDI map), got {maps}"
    assert "map.json" in README.read_text(encoding="utf-8")
    json.loads(maps[0].text)  # valid JSON, so errors below are about its meaning
    (root / "map.json").write_text(maps[0].text)
    bin_dir = root / ".bin"
    bin_dir.mkdir()
    stemboard_script(bin_dir)
    return root


# -- the blocks ---------------------------------------------------------------------------------
def test_every_block_is_run_or_listed():
    """A new block is run or its kind is listed here with a reason, never silently left out."""
    for block in readme_blocks():
        if block.lang in ("python", "json"):
            continue
        if block.lang == "bash":
            for n, command in command_lines(block):
                assert command.startswith("stemboard ") or skip_reason(command), (
                    f"README.md:{n}: {command!r} is neither a stemboard command nor listed in "
                    "SKIPPED_LINES")
        elif block.lang == "":
            for line in block.lines:
                assert line.startswith(TRAINING_COMMANDS) or line.startswith(" "), (
                    f"{block}: untagged blocks hold only training commands; tag it "
                    f"(```python or ```bash) so it runs: {line!r}")
        else:
            pytest.fail(f"{block}: unknown block language {block.lang!r}")


def bash_commands():
    out = []
    for block in readme_blocks():
        if block.lang == "bash":
            out += [pytest.param(command, id=f"README.md:{n}")
                    for n, command in command_lines(block) if not skip_reason(command)]
    return out


@pytest.mark.parametrize("command", bash_commands())
def test_bash_line(workdir, command):
    env = dict(os.environ, PATH=f"{workdir / '.bin'}{os.pathsep}{os.environ['PATH']}")
    r = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, f"{command}\nexit {r.returncode}\n{r.stderr}"
    for path in promised_paths(command):
        assert (workdir / path).is_file(), f"{command}: the comment promises {path}"


def run_transcript(block, ns):
    """Run a ``>>>`` block: a line followed by ``Name: message`` must raise just that."""
    lines = block.lines
    for i, line in enumerate(lines):
        if not line.startswith(">>> "):
            continue
        source = line[4:]
        expected = lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].startswith(">>>") \
            else None
        if expected is None:
            exec(compile(source, f"README.md:{block.line + i}", "exec"), ns)
            continue
        name, _, message = expected.partition(": ")
        with pytest.raises(Exception) as info:
            exec(compile(source, f"README.md:{block.line + i}", "exec"), ns)
        assert type(info.value).__name__ == name, f"README.md:{block.line + i}: {info.value!r}"
        assert str(info.value).startswith(message.rstrip(". ")), (
            f"README.md:{block.line + i}: the README shows {expected!r}, got {info.value}")


def test_python_blocks(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("STEMBOARD_PRESET_DIR", str(workdir / "presets"))  # save_preset
    if not REAL_MODELS:
        use_fast_models(monkeypatch.setattr)
    # No MIDI device here: the live block reads its messages from a queue instead.
    port = queue.Queue()
    for msg in (mido.Message("note_on", note=60, velocity=100),
                mido.Message("control_change", control=20, value=0),
                mido.Message("program_change", program=0)):
        port.put(msg)
    monkeypatch.setattr("stemboard.plugin.midi.open_input", lambda *a, **k: port)
    ns = {"__name__": "readme"}
    ran = 0
    for block in readme_blocks():
        if block.lang != "python":
            continue
        if block.lines and block.lines[0].startswith(">>>"):
            run_transcript(block, ns)
        else:
            exec(compile(block.text, f"README.md:{block.line}", "exec"), ns)
        ran += 1
    assert ran >= 8, f"only {ran} python blocks found; did the README's fences change?"
    assert port.empty(), "the live MIDI block did not read its port"
    # What the README says the blocks produce.
    audio = ns["audio"]
    assert ns["karaoke"].shape == audio.shape and ns["y"].shape == audio.shape
    assert sorted(p.name for p in (workdir / "out" / "karaoke").iterdir()) == \
        ["one-karaoke.flac"]
    assert (workdir / "presets" / "my-mix.json").is_file()
    board = ns["board"]
    assert board.selected == "b"  # the note toggled it
    assert board.stem_controls("b").gains_db["vocals"] == -np.inf  # the preset's, on B
