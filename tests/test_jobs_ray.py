"""The Ray engine of ``stemboard batch`` (issue 26) on a real local Ray runtime:
a small batch, a worker killed mid-item, and the journal afterwards."""
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from pedalboard.io import AudioFile

from conftest import music_like
from stemboard.batch import run
from stemboard.jobs import Journal

ray = pytest.importorskip("ray",
                          reason="the Ray engine needs ray (pip install \"stemboard[ray]\")")

STEMS = ("vocals", "drums", "bass", "other")


def write(path, seconds, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    with AudioFile(str(path), "w", 44100, 2, bit_depth=16) as f:
        f.write(music_like(seconds=seconds, seed=seed))
    return path


@pytest.fixture(scope="module")
def ray_runtime():
    """A 2-CPU local runtime whose workers import this checkout (PYTHONPATH), as CI's
    installed package would be imported anyway."""
    env = {k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env} if env else None)
    yield
    ray.shutdown()


def journal(out):
    return Journal.read(out)


def test_ray_batch_separates_and_journals(ray_runtime, tmp_path, model_path):
    files = [write(tmp_path / "in" / f"song{i}.wav", 1.0, i) for i in range(3)]
    out = tmp_path / "out"
    s = run(files, out, model=model_path, engine="ray", workers=2)
    assert (s["done"], s["failed"], s["engine"], s["workers"]) == (3, 0, "ray", 2)
    last = Journal.latest(journal(out))
    assert set(last) == {str(f.resolve()) for f in files}
    assert all(r["state"] == "done" and r["attempt"] == 1 for r in last.values())
    assert len({r["worker"] for r in last.values()}) >= 1
    for i in range(3):
        assert sorted(p.name for p in (out / f"song{i}").iterdir()) == sorted(
            f"{s}.wav" for s in STEMS)
    again = run(files, out, model=model_path, engine="ray", workers=2)
    assert (again["done"], again["skipped"]) == (0, 3)


def test_a_killed_worker_is_retried_on_another_and_the_batch_completes(ray_runtime, tmp_path,
                                                                      model_path):
    long = write(tmp_path / "in" / "long.wav", 60.0, 7)  # seconds of work: time to kill it
    short = [write(tmp_path / "in" / f"short{i}.wav", 1.0, i) for i in range(2)]
    out = tmp_path / "out"
    killed = []

    def kill_the_long_item():
        key = str(long.resolve())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for rec in journal(out):
                if rec.get("input") == key and rec.get("state") == "running" and rec["worker"]:
                    pid = int(rec["worker"].rsplit(":", 1)[1])
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_long_item)
    killer.start()
    s = run([long, *short], out, model=model_path, engine="ray", workers=2, retries=1)
    killer.join()
    assert killed, "the long item was never seen running"
    assert (s["done"], s["failed"]) == (3, 0)
    records = [r for r in journal(out) if r.get("input") == str(long.resolve())]
    assert [r["state"] for r in records] == ["running", "retry", "running", "done"]
    assert "worker died" in records[1]["error"]
    assert records[3]["attempt"] == 2
    assert records[3]["worker"] != records[0]["worker"]  # not the dead process
    with AudioFile(str(out / "long" / "vocals.wav")) as f:
        assert f.frames == 60 * 44100
    assert not [p for p in Path(out).rglob(".*") if p.is_file()]  # the dead writer's temps

