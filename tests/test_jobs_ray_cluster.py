"""``stemboard batch --engine ray --address`` joining a real cluster (issue 26): a
``ray start --head`` subprocess, as an operator starts a head node.

The cluster is stopped by signalling its own process group (``ray start --block``
in a new session), not with ``ray stop``, which stops every Ray process of the
user on the machine, other test runs' included.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from pedalboard.io import AudioFile

from conftest import music_like
from stemboard.batch import run
from stemboard.jobs import Journal

ray = pytest.importorskip("ray",
                          reason="the Ray engine needs ray (pip install \"stemboard[ray]\")")
if shutil.which("ray") is None:
    pytestmark = pytest.mark.skip(reason="the `ray` command line is not on PATH")


def write(path, seconds, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    with AudioFile(str(path), "w", 44100, 2, bit_depth=16) as f:
        f.write(music_like(seconds=seconds, seed=seed))
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc):
    """SIGTERM the cluster's process group; SIGKILL what is left of it after a grace time."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            proc.poll()  # reaps `ray start` itself once it exits
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster():
    """A 2-CPU head node on 127.0.0.1; its workers import this checkout (PYTHONPATH).

    Token authentication on, as Ray's default for new clusters: a driver joining
    it by address needs ``RAY_AUTH_MODE=token`` to present the token.
    """
    temp = tempfile.mkdtemp(prefix="sbray-", dir="/tmp")  # short: Ray's socket paths
    port = free_port()
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0")
    argv = ["ray", "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
            "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
            "--dashboard-agent-listen-port", str(free_port()),
            "--disable-usage-stats", "--temp-dir", temp]
    log_path = Path(temp) / "ray-start.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "Ray runtime started" not in log_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield {"address": f"127.0.0.1:{port}", "temp": Path(temp), "env": env}
    finally:
        _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


def batch(argv, env):
    """``stemboard batch ... --json`` in a fresh process, as a user on the cluster runs it."""
    done = subprocess.run([sys.executable, "-m", "stemboard", "batch", *map(str, argv),
                           "--json", "-q"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_batch_joins_a_ray_start_head_cluster(cluster, tmp_path, model_path):
    files = [write(tmp_path / "in" / f"song{i}.wav", 1.0, i) for i in range(3)]
    out = tmp_path / "out"
    argv = [*files, "-o", out, "--model", model_path, "--preset", "karaoke", "--engine", "ray",
            "--workers", "2", "--address", cluster["address"]]
    s = batch(argv, cluster["env"])
    assert (s["done"], s["failed"], s["engine"], s["workers"]) == (3, 0, "ray", 2)
    last = Journal.latest(Journal.read(out))
    assert set(last) == {str(f.resolve()) for f in files}
    assert all(r["state"] == "done" for r in last.values())
    # The items ran in the cluster's worker processes (Ray logs each worker by pid
    # under the head's temp dir), not in a runtime the driver started.
    logs = " ".join(p.name for p in cluster["temp"].rglob("worker-*"))
    pids = {r["worker"].rsplit(":", 1)[1] for r in last.values()}
    assert pids and all(f"-{pid}." in logs for pid in pids), (pids, logs[:500])
    # Bit for bit what the local engine writes.
    local = run(files[:1], tmp_path / "local", model=model_path, workers=1, preset="karaoke")
    assert local["done"] == 1
    name = "song0-karaoke.wav"
    assert (out / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    again = batch(argv, cluster["env"])  # the cluster is still up; nothing to redo
    assert (again["done"], again["skipped"]) == (0, 3)
