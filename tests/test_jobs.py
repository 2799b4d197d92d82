"""Catalog jobs (issue 26): the journal, resuming, idempotence, failure isolation, and
outputs identical to ``stemboard separate``, on the local process-pool engine."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pedalboard.io import AudioFile

from conftest import music_like
from stemboard.plugin import audio
from stemboard.batch import InputError, expand_sources, read_path_list, run
from stemboard.cli import main
from stemboard.jobs import JOURNAL_NAME, JobError, Journal, status

STEMS = ("vocals", "drums", "bass", "other")


def write(path, x, sr=44100):
    path.parent.mkdir(parents=True, exist_ok=True)
    with AudioFile(str(path), "w", sr, x.shape[0], bit_depth=16) as f:
        f.write(x)
    return path


def songs(folder, n, seconds=1.0):
    return [write(folder / f"song{i}.wav", music_like(seconds=seconds, seed=i))
            for i in range(n)]


def files_under(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != JOURNAL_NAME}


def items(out):
    return Journal.latest(Journal.read(out))


@pytest.fixture
def two_stem_model(model_factory):
    return model_factory(stems=("vocals", "accompaniment"))


@pytest.fixture
def catalog(tmp_path):
    return songs(tmp_path / "in", 3)


def test_outputs_are_identical_to_separate(catalog, tmp_path, model_path, capsys):
    song = catalog[0]
    assert main(["separate", str(song), "-o", str(tmp_path / "sep"), "--model", model_path,
                 "--format", "flac", "-q"]) == 0
    s = run([song], tmp_path / "batch", model=model_path, format="flac", workers=1)
    assert s["done"] == 1 and s["failed"] == 0
    want, got = files_under(tmp_path / "sep"), files_under(tmp_path / "batch")
    assert sorted(want) == [f"song0/{stem}.flac" for stem in sorted(STEMS)]
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], name  # bit for bit


def test_preset_outputs_are_identical_to_render(catalog, tmp_path, model_path, capsys):
    song = catalog[0]
    assert main(["render", str(song), "-o", str(tmp_path / "render"), "--preset", "karaoke",
                 "--model", model_path, "--format", "flac", "-q"]) == 0
    s = run([song], tmp_path / "batch", model=model_path, preset="karaoke", format="flac",
            workers=1)
    assert (s["done"], s["failed"]) == (1, 0)
    want, got = files_under(tmp_path / "render"), files_under(tmp_path / "batch")
    assert sorted(want) == sorted(got) == ["song0-karaoke.flac"]
    assert got == want  # bit for bit
    rec = items(tmp_path / "batch")[str(song.resolve())]
    assert rec["options"]["preset"] == "karaoke"
    assert rec["options"]["preset_settings"]["gains_db"] == {"vocals": "-inf"}
    assert rec["outputs"] == {"mix": str(tmp_path / "batch" / "song0-karaoke.flac")}


def test_preset_in_the_journal_redoes_items_when_it_changes(catalog, tmp_path, model_path,
                                                           monkeypatch, capsys):
    out = tmp_path / "out"
    presets = tmp_path / "presets"
    presets.mkdir()
    monkeypatch.setenv("STEMBOARD_PRESET_DIR", str(presets))
    mine = presets / "mine.json"
    mine.write_text(json.dumps({"name": "mine", "gains_db": {"drums": -6}}))
    code = main(["batch", str(catalog[0]), str(catalog[1]), "-o", str(out), "--model",
                 model_path, "--preset", "mine", "--filename", "{preset}/{track}.{ext}",
                 "--workers", "2", "-q", "--json"])
    s = json.loads(capsys.readouterr().out)
    assert code == 0 and s["done"] == 2
    assert sorted(files_under(out)) == ["mine/song0.wav", "mine/song1.wav"]
    first = files_under(out)
    assert run(catalog[:2], out, model=model_path, preset="mine", workers=1,
               filename="{preset}/{track}.{ext}")["skipped"] == 2
    mine.write_text(json.dumps({"name": "mine", "gains_db": {"drums": -12}}))  # edited
    s = run(catalog[:2], out, model=model_path, preset="mine", workers=1,
            filename="{preset}/{track}.{ext}")
    assert (s["done"], s["skipped"]) == (2, 0)
    assert files_under(out).keys() == first.keys() and files_under(out) != first
    s = run(catalog[:2], out, model=model_path, workers=1, preset="drumless",
            filename="{preset}/{track}.{ext}")  # another preset: other items and outputs
    assert (s["done"], s["skipped"]) == (2, 0)
    assert "drumless/song0.wav" in files_under(out)
    s = run(catalog[:2], out, model=model_path, workers=1, stems=["vocals"])
    assert (s["done"], s["skipped"]) == (2, 0)  # stems again: not the preset's job


@pytest.mark.parametrize("kwargs, message", [
    ({"preset": "karaoke", "stems": ["vocals"]}, "a preset renders one mix per input"),
    ({"preset": "karaoke", "two_stems": "vocals"}, "a preset renders one mix per input"),
    ({"preset": "nope"}, "unknown preset 'nope'"),
    ({"preset": "karaoke", "filename": "{stem}.{ext}"}, "unknown field {stem}"),
    ({"preset": "karaoke", "filename": "{preset}.{ext}"}, "would both write"),
])
def test_bad_preset_options_fail_before_any_work(catalog, tmp_path, model_path, kwargs,
                                                 message):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=re.escape(message)):
        run(catalog, out, model=model_path, workers=1, **kwargs)
    assert not out.exists()


def test_a_preset_naming_a_stem_the_model_lacks_fails_up_front(catalog, tmp_path,
                                                               two_stem_model, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(catalog[0]), "-o", str(out), "--model", two_stem_model,
                 "--preset", "drumless", "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("stemboard: error: preset 'drumless' names stem(s) drums") and \
        len(err.splitlines()) == 1
    assert not out.exists()


def test_rerun_skips_finished_items_and_changes_nothing(catalog, tmp_path, model_path):
    out = tmp_path / "out"
    first = run(catalog, out, model=model_path, workers=2)
    assert (first["done"], first["skipped"], first["failed"]) == (3, 0, 0)
    before = files_under(out)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    second = run(catalog, out, model=model_path, workers=2)
    assert (second["done"], second["skipped"], second["failed"]) == (0, 3, 0)
    assert files_under(out) == before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == stamps
    assert all(r["state"] == "done" and len(r["sha256"]) == 64 for r in items(out).values())


def test_changed_input_or_options_redo_only_what_changed(catalog, tmp_path, model_path):
    out = tmp_path / "out"
    run(catalog, out, model=model_path, workers=1)
    write(catalog[1], music_like(seconds=1.0, seed=99))  # new content under the same name
    s = run(catalog, out, model=model_path, workers=1)
    assert (s["done"], s["skipped"]) == (1, 2)
    assert [r["input"] for r in s["items"]] == [str(catalog[1].resolve())]
    os.utime(catalog[2], ns=(1, 1))  # touched, same bytes: the hash says unchanged
    assert run(catalog, out, model=model_path, workers=1)["skipped"] == 3
    s = run(catalog, out, model=model_path, workers=1, stems=["vocals"])
    assert (s["done"], s["skipped"]) == (3, 0)  # other options: another job


def test_deleted_output_is_redone(catalog, tmp_path, model_path):
    out = tmp_path / "out"
    run(catalog, out, model=model_path, workers=1)
    (out / "song0" / "bass.wav").unlink()
    s = run(catalog, out, model=model_path, workers=1)
    assert (s["done"], s["skipped"]) == (1, 2)
    assert (out / "song0" / "bass.wav").is_file()


def test_a_corrupt_input_fails_alone_and_is_recorded(catalog, tmp_path, model_path, capsys):
    bad = tmp_path / "in" / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    out = tmp_path / "out"
    code = main(["batch", *map(str, catalog), str(bad), "-o", str(out), "--model", model_path,
                 "--workers", "2", "-q", "--json"])
    cap = capsys.readouterr()
    assert code == 1
    s = json.loads(cap.out)
    assert (s["done"], s["failed"]) == (3, 1)
    assert s["failures"][0]["input"] == str(bad.resolve())
    assert "broken.wav" in s["failures"][0]["error"] and "cannot read audio" in cap.err
    rec = items(out)[str(bad.resolve())]
    assert rec["state"] == "failed" and "cannot read audio" in rec["error"]
    assert not (out / "broken").exists()
    assert sorted(files_under(out)) == sorted(f"song{i}/{s}.wav" for i in range(3)
                                              for s in STEMS)


def test_resume_after_a_crash_mid_item(catalog, tmp_path, model_path):
    """What a SIGKILL mid-item leaves: a "running" record and a dead writer's temp file."""
    out = tmp_path / "out"
    run(catalog[:1], out, model=model_path, workers=1)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    cut = out / "song1"
    cut.mkdir()
    temp = cut / f".vocals.partial-{dead}-{audio._HOST_ID}-0123abcd.wav"
    temp.write_bytes(b"RIFF half a file")
    with Journal(out) as j:
        j.append({"event": "item", "input": str(catalog[1].resolve()), "state": "running",
                  "attempt": 1})
    with open(out / JOURNAL_NAME, "ab") as f:
        f.write(b'{"v":1,"event":"item","input":"torn')  # the crash tore the last line
    s = run(catalog, out, model=model_path, workers=2)
    assert (s["done"], s["skipped"], s["failed"]) == (2, 1, 0)
    assert not temp.exists()
    assert not [p for p in out.rglob(".*") if p.is_file()]
    assert all(r["state"] == "done" for r in items(out).values())
    assert status(out)["done"] == 3


def test_killed_batch_keeps_finished_outputs_and_resumes(tmp_path, model_path):
    songs(tmp_path / "in", 6, seconds=2.0)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "stemboard", "batch", str(tmp_path / "in"), "-o", str(out),
           "--model", model_path, "--workers", "1", "-q"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        while not any(r["state"] == "done" for r in items(out).values()):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no item finished"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, no cleanup
        proc.wait()
    done = [k for k, r in items(out).items() if r["state"] == "done"]
    assert 1 <= len(done) < 6
    for wav in out.rglob("*.wav"):  # every file under a final name is complete
        if not wav.name.startswith("."):
            with AudioFile(str(wav)) as f:
                assert f.frames == 2 * 44100
    r = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300,
                       env=os.environ.copy())
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["skipped"] >= len(done) and s["done"] + s["skipped"] == 6
    assert not [p for p in out.rglob(".*") if p.is_file()]
    assert sorted(files_under(out)) == sorted(f"song{i}/{s}.wav" for i in range(6)
                                              for s in STEMS)


def test_status_summarises_the_journal(catalog, tmp_path, model_path, capsys):
    out = tmp_path / "out"
    bad = tmp_path / "in" / "missing.wav"
    run([*catalog, bad], out, model=model_path, workers=1)
    assert main(["batch", "--status", str(out), "--json"]) == 1  # one item failed
    s = json.loads(capsys.readouterr().out)
    assert (s["items"], s["done"], s["failed"], s["unfinished"], s["runs"]) == (4, 3, 1, 0, 1)
    assert s["audio_s"] == pytest.approx(3.0)
    assert "no such file" in s["failures"][0]["error"]
    assert main(["batch", "--status", str(out)]) == 1
    assert "missing.wav: no such file" in capsys.readouterr().err


def test_status_without_a_journal_is_one_line(tmp_path, capsys):
    assert main(["batch", "--status", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"stemboard: error: {tmp_path}: no batch journal here ({JOURNAL_NAME})"


def test_colliding_outputs_are_refused_before_anything_runs(tmp_path, model_path):
    a = write(tmp_path / "a" / "song.wav", music_like())
    b = write(tmp_path / "b" / "song.wav", music_like(seed=1))
    with pytest.raises(JobError, match="would both write"):
        run([a, b], tmp_path / "out", model=model_path)
    assert not (tmp_path / "out").exists()


def test_one_journal_writer_at_a_time(tmp_path):
    with Journal(tmp_path):
        with pytest.raises(JobError, match="another batch is writing"):
            with Journal(tmp_path):
                pass


def test_lists_of_paths(tmp_path, catalog):
    (tmp_path / "in" / "list.txt").write_text("# catalog\nsong0.wav\n\n" + str(catalog[2])
                                             + "\n")
    assert read_path_list(tmp_path / "in" / "list.txt") == [catalog[0], catalog[2]]
    (tmp_path / "c.csv").write_text("id,path\n1,in/song1.wav\n2,in/song0.wav\n")
    assert expand_sources([str(tmp_path / "c.csv")]) == [catalog[1], catalog[0]]
    (tmp_path / "plain.csv").write_text("in/song2.wav,x\n")
    assert read_path_list(tmp_path / "plain.csv") == [catalog[2]]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(InputError, match="empty.txt: this list names no input files"):
        read_path_list(tmp_path / "empty.txt")


def test_bad_options_fail_before_any_work(catalog, tmp_path, model_path, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(catalog[0]), "-o", str(out), "--model", model_path,
                 "--stems", "vocals,kazoo", "-q"]) == 1
    assert "unknown stem(s) kazoo" in capsys.readouterr().err
    assert main(["batch", str(catalog[0]), "-o", str(out), "--model", model_path,
                 "--workers", "0", "-q"]) == 1
    assert "workers must be 1 or more, not 0" in capsys.readouterr().err
    assert main(["batch", str(catalog[0]), "-o", str(out), "--model", model_path,
                 "--address", "10.0.0.1:6379", "-q"]) == 1
    assert "--address 10.0.0.1:6379 needs --engine ray" in capsys.readouterr().err
    assert main(["batch", "-o", str(out)]) == 1
    assert "batch needs SOURCES" in capsys.readouterr().err
    assert not out.exists()


def test_a_killed_local_worker_is_replaced_and_its_item_retried(tmp_path, model_path):
    import multiprocessing
    import threading

    long = write(tmp_path / "in" / "long.wav", music_like(seconds=40.0, seed=5))
    short = write(tmp_path / "in" / "short.wav", music_like(seconds=1.0))
    out = tmp_path / "out"
    killed = []

    def kill_the_worker():
        key = str(long.resolve())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if items(out).get(key, {}).get("state") == "running":
                for child in multiprocessing.active_children():  # the pool's one worker
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_worker)
    killer.start()
    s = run([long, short], out, model=model_path, workers=1, retries=1)
    killer.join()
    assert killed
    assert (s["done"], s["failed"]) == (2, 0)
    states = [(r["state"], r.get("attempt")) for r in Journal.read(out)
              if r.get("input") == str(long.resolve())]
    assert states == [("running", 1), ("retry", 1), ("running", 2), ("done", 2)]
    assert not [p for p in out.rglob(".*") if p.is_file()]


def test_sweep_counts_an_unreaped_killed_process_as_dead(tmp_path):
    """A killed batch's orphaned worker can linger as a zombie; its temporaries are stale."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to tell a zombie")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{child.pid}/stat")
    deadline = time.monotonic() + 30
    while stat.read_bytes().rsplit(b")", 1)[1][1:2] != b"Z":  # exited, not yet reaped
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        temp = tmp_path / f".vocals.partial-{child.pid}-{audio._HOST_ID}-0123abcd.wav"
        temp.write_bytes(b"RIFF")
        assert audio.remove_stale_temporaries(tmp_path) == [temp]
    finally:
        child.wait()
