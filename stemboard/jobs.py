"""Resumable catalog jobs: a journal, a local process pool, and Ray actors.

``stemboard batch`` (and :func:`stemboard.batch.run`) separate many inputs the
way ``stemboard separate`` separates one: each item goes through the same
:func:`~stemboard.plugin.render.render_stems` call, so its outputs are bit for bit
the same and are published all or none (see ``stemboard.plugin.audio``).

What this module adds is the job around them:

- a **journal** in the output folder (``stemboard-batch.jsonl``), one JSON
  record appended per event, so a rerun skips the items that finished with
  the same input and options and redoes the rest;
- **engines** that keep a model loaded per worker: a local process pool (the
  default, no extra install) and Ray actors for clusters;
- **retries** of an item whose worker died, on the next free worker.

Only the driver writes the journal; workers return a result record.
"""
import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from stemboard.cli_common import ENGINES, SEPARATE_FILENAME, one_line
from stemboard.plugin import StemSeparator, audio
from stemboard.plugin.defaults import SEPARATION_BUFFER_SIZE
from stemboard.plugin.naming import NameTemplate, track_name
from stemboard.plugin.render import (_make_parents, _remove_empty, _with_ext, render, render_stems,
                                     stem_groups)
from stemboard.presets import Preset

JOURNAL_NAME = "stemboard-batch.jsonl"
JOURNAL_VERSION = 1
# Default names (stemboard.batch picks them): SEPARATE_FILENAME; with a preset each input
# renders to one mix, named as `stemboard render` names it (cli_common.RENDER_FILENAME).
# The fields `stemboard separate --filename` takes; `render`'s has {preset} for {stem}.
TEMPLATE_FIELDS = ("track", "stem", "ext", "model")
RENDER_FIELDS = ("track", "preset", "ext", "model")
# The one output of an item rendered through a preset, in its record's "outputs".
MIX = "mix"
FINAL_STATES = ("done", "failed")


class JobError(ValueError):
    """A batch cannot run as asked: a bad engine or option, a journal in use, Ray missing."""


class WorkerDied(RuntimeError):
    """The worker running an item died (killed, out of memory) before it returned."""


# -- what one item is separated with ------------------------------------------------------
@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to separate an item, as ``stemboard separate`` would.

    Picklable (it travels to pool processes and Ray actors). Only the fields in
    :meth:`options` change the outputs; ``block_size``, ``threads`` and
    ``providers`` change speed and memory, so they do not invalidate finished
    items.

    With ``preset`` each item is rendered through the preset into one mix (as
    ``stemboard render --preset`` does) instead of being split into stems.
    ``preset_settings`` is the preset's content as canonical JSON, read once by
    the driver: workers on other machines need not find the preset file, and
    an edited preset is another set of options (its items are redone).
    """

    out: str
    model: str | None
    model_name: str
    model_path: str
    stems: tuple | None = None
    two_stems: str | None = None
    format: str = "wav"
    bit_depth: int | None = None
    bitrate: int | None = None
    filename: str = SEPARATE_FILENAME
    mask_mode: str = "soft"
    block_size: int = SEPARATION_BUFFER_SIZE   # the render's buffer_size
    threads: int | None = None
    providers: tuple | None = None
    preset: str | None = None
    preset_settings: str | None = None

    def options(self):
        """The options that decide the outputs (recorded in the journal)."""
        d = asdict(self)
        for key in ("out", "model", "block_size", "threads", "providers"):
            d.pop(key)
        d["stems"] = None if self.stems is None else list(self.stems)
        if self.preset is None:
            # Absent rather than null: journals written before presets keep their hash.
            del d["preset"], d["preset_settings"]
        else:
            d["preset_settings"] = json.loads(self.preset_settings)
        return d

    def options_sha256(self):
        text = json.dumps(self.options(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def template(self):
        if self.preset is not None:
            return NameTemplate(self.filename, available=RENDER_FIELDS)
        return NameTemplate(self.filename, available=TEMPLATE_FIELDS, required=("stem",))

    def separator(self):
        """A new ``StemSeparator`` for this spec (what each worker loads once).

        With a preset, its gains and mix are set (``Preset.apply``).
        """
        sep = StemSeparator(self.model, mask_mode=self.mask_mode, num_threads=self.threads,
                            providers=None if self.providers is None else list(self.providers))
        if self.preset is not None:
            Preset.from_dict(json.loads(self.preset_settings), source=self.preset).apply(sep)
        return sep

    def output_names(self, model_stems):
        """The keys of an item's outputs: its stems, or :data:`MIX` with a preset."""
        if self.preset is not None:
            return [MIX]
        return list(stem_groups(model_stems, stems=self.stems, two_stems=self.two_stems))

    def output_paths(self, path, names):
        """Where ``path``'s outputs go: the paths ``render_stems`` (or ``render``) writes."""
        template = self.template()
        return [_with_ext(template.path(Path(self.out), track=track_name(path), stem=name,
                                        ext=self.format, model=self.model_name,
                                        preset=self.preset), template, self.format)
                for name in names]


def worker_id():
    """``host:pid`` of this process, as recorded in the journal."""
    return f"{socket.gethostname()}:{os.getpid()}"


def file_sha256(path, chunk=1 << 20):
    """The sha256 of a file's bytes, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def error_line(path, error):
    """One line naming the input and what went wrong with it."""
    msg = one_line(error)
    if not isinstance(error, (OSError, ValueError, TypeError)):
        msg = f"{type(error).__name__}: {msg}"  # not a file problem: say what kind
    return msg if str(path) in msg else f"{path}: {msg}"


def process_item(spec, sep, path):
    """Separate one input with a loaded separator; a bad input becomes a failed record.

    The separation is the call ``stemboard separate`` makes, so both write the
    same bytes.

    Returns
    -------
    dict
        ``state`` ("done" or "failed"), ``worker``, ``started``, ``seconds``,
        and when known ``sha256``, ``size``, ``mtime_ns``, ``duration_s``,
        ``sample_rate``, ``outputs`` (stem -> path) and ``error``.
    """
    result = {"worker": worker_id(), "started": round(time.time(), 3)}
    start = time.perf_counter()
    try:
        sr, _, frames, _ = audio.read_info(path)  # first: its errors name the problem
        result.update(sample_rate=sr, duration_s=round(frames / sr, 3))
        st = os.stat(path)
        result.update(size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=file_sha256(path))
        outputs = _render_item(spec, sep, path)
        result.update(state="done", outputs={k: str(v) for k, v in outputs.items()})
    except Exception as e:  # one item's problem, whatever it is, must not end a catalog
        result.update(state="failed", error=error_line(path, e))
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def _render_item(spec, sep, path):
    """The outputs of one item: its stems, or with a preset the one mix ``render`` writes."""
    if spec.preset is None:
        return render_stems(path, spec.out, sep, stems=None if spec.stems is None
                            else list(spec.stems), two_stems=spec.two_stems,
                            buffer_size=spec.block_size, format=spec.format,
                            bit_depth=spec.bit_depth, bitrate=spec.bitrate,
                            name_template=spec.template())
    (dest,) = spec.output_paths(path, [MIX])
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    made = _make_parents([dest], out)
    try:
        return {MIX: render(path, dest, sep, buffer_size=spec.block_size, format=spec.format,
                            bit_depth=spec.bit_depth, bitrate=spec.bitrate)}
    except BaseException:
        _remove_empty(made)
        raise


# -- the journal ---------------------------------------------------------------------------
class Journal:
    """The append-only JSONL record of a batch in its output folder.

    Each record is one line written with a single ``write`` to a file opened
    with ``O_APPEND``: a crash can tear at most the last line, which readers
    skip (and the next writer starts on a fresh line). Records are not
    fsynced one by one: a record lost to a power cut only makes its item run
    again, and outputs are published atomically whatever the journal says.
    One batch at a time may write it (an exclusive ``flock``).

    Parameters
    ----------
    folder : str or Path
        The batch's output folder.
    """

    def __init__(self, folder):
        self.path = Path(folder) / JOURNAL_NAME
        self._fd = None

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JobError(f"{self.path}: another batch is writing this journal") from None
        self._fd = fd
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")  # a torn last line stays alone (and is skipped)
        return self

    def __exit__(self, *exc):
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        return False

    def append(self, record):
        line = json.dumps({"v": JOURNAL_VERSION, "t": round(time.time(), 3), **record},
                          separators=(",", ":")) + "\n"
        os.write(self._fd, line.encode())

    @staticmethod
    def read(folder):
        """The records of the journal in ``folder`` (torn or foreign lines skipped)."""
        path = Path(folder) / JOURNAL_NAME
        records = []
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return records
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "event" in rec:
                records.append(rec)
        return records

    @staticmethod
    def latest(records):
        """The last item record of each input, by input path."""
        last = {}
        for rec in records:
            if rec["event"] == "item":
                last[rec["input"]] = rec
        return last


def input_key(path):
    """The journal's name for an input: its absolute path (resolved when it exists)."""
    path = Path(path)
    return str(path.resolve() if path.exists() else path.absolute())


def is_finished(last, spec_hash, path, *, rehash=False):
    """Whether the journal's last record says ``path`` is done with these options.

    The input counts as unchanged when its size and modification time match
    the record (no reading, so reruns over a large catalog stay cheap), or,
    if they differ or ``rehash`` is set, when its sha256 matches. Outputs that
    were deleted since make the item run again.
    """
    if last is None or last.get("state") != "done" or last.get("options_sha256") != spec_hash:
        return False
    if not all(Path(p).is_file() for p in (last.get("outputs") or {}).values()):
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    if not rehash and (st.st_size, st.st_mtime_ns) == (last.get("size"), last.get("mtime_ns")):
        return True
    return file_sha256(path) == last.get("sha256")


# -- engines -------------------------------------------------------------------------------
# One per worker process: the spec and its loaded separator (or why it failed to load).
_WORKER = {}


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt  # unwinds the writers: no temporary file is left behind


def _init_local_worker(spec):
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    _WORKER.clear()
    try:
        _WORKER.update(spec=spec, sep=spec.separator())
    except Exception as e:
        _WORKER["setup_error"] = f"cannot load the model {spec.model_name!r}: {e}"


def _local_item(path):
    if "setup_error" in _WORKER:
        return {"state": "setup-failed", "error": _WORKER["setup_error"]}
    return process_item(_WORKER["spec"], _WORKER["sep"], path)


# numpy's BLAS, OpenMP and numba size their thread pools from these when a process
# starts. Left alone, every worker takes all cores; Ray sets them per actor the same way.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS")


@contextlib.contextmanager
def _thread_limits(threads):
    """Set :data:`THREAD_VARS` to ``threads`` while worker processes are started."""
    if not threads:
        yield
        return
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: str(threads) for k in THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class LocalEngine:
    """A process pool on this machine, one loaded model per worker process.

    Parameters
    ----------
    spec : JobSpec
    workers : int
        Processes; each item runs in one of them.
    """

    name = "local"

    def __init__(self, spec, *, workers):
        self.spec = spec
        self.workers = workers
        self._pool = None
        self._running = {}

    def __enter__(self):
        self._start()
        return self

    def _start(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: the driver runs threads (tqdm), which fork would copy mid-lock.
        self._pool = ProcessPoolExecutor(self.workers,
                                         mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_local_worker, initargs=(self.spec,))

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            # Stop the items in progress now; SIGTERM makes their writers clean up.
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)
        return False

    def has_capacity(self):
        # One item per worker in flight, so "running" in the journal means running.
        return len(self._running) < self.workers

    def submit(self, path):
        """Start ``path``; return ``(handle, worker or None)``."""
        if self._pool is None:
            self._start()
        # The pool spawns its processes inside submit, with this environment.
        with _thread_limits(self.spec.threads):
            future = self._pool.submit(_local_item, str(path))
        self._running[future] = path
        return future, None

    def wait(self, handles):
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        return list(done)

    def result(self, handle):
        """The item's result record; :class:`WorkerDied` if its process died."""
        from concurrent.futures.process import BrokenProcessPool

        self._running.pop(handle, None)
        try:
            return handle.result()
        except BrokenProcessPool as e:
            # A dead worker breaks the whole pool: every item in flight is lost
            # with it. Start a fresh pool for the retries.
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
            raise WorkerDied(f"a worker process died ({e})") from None


@contextlib.contextmanager
def _local_ray_priority(address):
    """Start a local Ray runtime whose workers run at the driver's priority.

    Ray starts workers at nice 15 so that its own daemons stay responsive on a
    saturated node. For a batch on a shared machine that means every other
    process comes first (measured beside another benchmark: 1.5 s per item
    against the local pool's 1.1 s). The batch is the foreground job, so
    a runtime started for it uses nice 0, unless ``RAY_worker_niceness`` says
    otherwise. A cluster (``address``) keeps its operator's setting.
    """
    if address or "RAY_worker_niceness" in os.environ:
        yield
        return
    os.environ["RAY_worker_niceness"] = "0"  # read by the raylet as it starts
    try:
        yield
    finally:
        os.environ.pop("RAY_worker_niceness", None)


class _RayWorker:
    """A Ray actor: one loaded separator, items one after another."""

    def __init__(self, spec):
        self.spec = spec
        self.sep = spec.separator()

    def where(self):
        return worker_id()

    def separate(self, path):
        return process_item(self.spec, self.sep, path)


class RayEngine:
    """Ray actors that each keep a model loaded; inputs and outputs on a shared filesystem.

    Parameters
    ----------
    spec : JobSpec
    workers : int
        Actors, each reserving ``spec.threads`` (default 1) CPUs.
    address : str, optional
        A running cluster (``HOST:PORT`` or ``auto``); by default ``RAY_ADDRESS``,
        else a local runtime with ``workers`` CPUs started for this batch.
    """

    name = "ray"

    def __init__(self, spec, *, workers, address=None):
        self.spec = spec
        self.workers = workers
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self._started_ray = False
        self._busy = {}
        self._free = deque()
        self._where = {}
        self._probes = {}

    def __enter__(self):
        try:
            import ray
        except ImportError:
            raise JobError("--engine ray needs Ray: pip install \"stemboard[ray]\"") from None
        self.ray = ray
        self._died = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError)
        # Ray prints a dead worker's notice on stdout, which holds --json's output.
        self._stdout = contextlib.redirect_stdout(sys.stderr)
        self._stdout.__enter__()
        try:
            where = self._start_actors()
        except BaseException:
            self._stop()
            raise
        self._where = dict(zip(self._actors, where))
        self._free.extend(self._actors)
        return self

    def _start_actors(self):
        """Join or start Ray, start the actors; return where each runs once its model loaded."""
        ray = self.ray
        if not ray.is_initialized():
            import logging

            kw = {} if self.address else {"num_cpus": self.workers * (self.spec.threads or 1)}
            with _local_ray_priority(self.address):
                ray.init(address=self.address, log_to_driver=False, include_dashboard=False,
                         logging_level=logging.WARNING, **kw)
            self._started_ray = True
        actor = ray.remote(num_cpus=self.spec.threads or 1, max_restarts=-1,
                           max_task_retries=0)(_RayWorker)
        self._actors = [actor.remote(self.spec) for _ in range(self.workers)]
        try:
            # Waits for every actor's model: a model that cannot load fails here, once.
            return ray.get([a.where.remote() for a in self._actors])
        except ray.exceptions.RayError as e:
            raise JobError(f"Ray workers could not start: {str(e).strip().splitlines()[-1]}") \
                from None

    def __exit__(self, exc_type, exc, tb):
        self._stop()
        return False

    def _stop(self):
        try:
            for a in getattr(self, "_actors", []):
                self.ray.kill(a)
            if self._started_ray:
                self.ray.shutdown()
        finally:
            self._stdout.__exit__(None, None, None)

    def has_capacity(self):
        return bool(self._free)

    def submit(self, path):
        actor = self._free.popleft()
        ref = actor.separate.remote(str(path))
        self._busy[ref] = actor
        return ref, self._where.get(actor)

    def wait(self, handles):
        """The finished ones among ``handles``; may be none when a restarted actor came back."""
        ready, _ = self.ray.wait(list(handles) + list(self._probes), num_returns=1)
        for ref in ready:
            if ref in self._probes:
                self._probed(ref)
        return [ref for ref in ready if ref not in self._probes and ref in self._busy]

    def _probed(self, ref):
        actor = self._probes.pop(ref)
        try:
            self._where[actor] = self.ray.get(ref)
        except self._died:
            time.sleep(0.1)  # still restarting: ask again shortly
            self._probes[actor.where.remote()] = actor
            return
        self._free.append(actor)

    def result(self, handle):
        """The item's result record; :class:`WorkerDied` if its actor died."""
        actor = self._busy.pop(handle)
        try:
            result = self.ray.get(handle)
        except self._died as e:
            # Ray restarts the actor (max_restarts). It takes items again once it
            # answers, so the retry goes to another actor if one is free.
            self._where.pop(actor, None)
            self._probes[actor.where.remote()] = actor
            raise WorkerDied(f"Ray worker died ({type(e).__name__})") from None
        self._where[actor] = result.get("worker")
        self._free.append(actor)
        return result


def check_engine(engine, address=None):
    """Refuse an unknown engine, or a cluster address for the local one."""
    if engine not in ENGINES:
        raise JobError(f"unknown engine {engine!r}; use {' or '.join(ENGINES)}")
    if engine == "local" and address:
        raise JobError(f"--address {address} needs --engine ray")


def make_engine(engine, spec, *, workers, address=None):
    """The engine named ``engine`` ("local" or "ray") for ``spec``."""
    check_engine(engine, address)
    if engine == "local":
        return LocalEngine(spec, workers=workers)
    return RayEngine(spec, workers=workers, address=address)


# -- driving a batch -------------------------------------------------------------------------
def drive(engine, paths, journal, spec, *, retries, on_result=None):
    """Run ``paths`` on ``engine``, journaling each, retrying items whose worker died.

    Parameters
    ----------
    engine : LocalEngine or RayEngine
        Entered already.
    paths : list of Path
    journal : Journal
        Entered already.
    spec : JobSpec
    retries : int
        Extra attempts for an item whose worker died (a failed input is not retried:
        it would fail the same way).
    on_result : callable, optional
        ``on_result(record)`` after each final record (progress).

    Returns
    -------
    list of dict
        The final record of each item, in completion order.
    """
    base = {"event": "item", "model": spec.model_name, "options": spec.options(),
            "options_sha256": spec.options_sha256()}
    queue = deque((Path(p), 1) for p in paths)
    running = {}
    finished = []
    while queue or running:
        while queue and engine.has_capacity():
            path, attempt = queue.popleft()
            handle, worker = engine.submit(path)
            running[handle] = (path, attempt)
            journal.append({**base, "input": input_key(path), "state": "running",
                            "attempt": attempt, "worker": worker,
                            "started": round(time.time(), 3)})
        for handle in engine.wait(list(running)):
            path, attempt = running.pop(handle)
            try:
                result = engine.result(handle)
            except WorkerDied as e:
                error = error_line(path, e)
                if attempt <= retries:
                    journal.append({**base, "input": input_key(path), "state": "retry",
                                    "attempt": attempt, "error": error})
                    queue.appendleft((path, attempt + 1))
                    continue
                result = {"state": "failed", "error": f"{error}; gave up after {attempt} "
                                                      "attempts"}
            if result["state"] == "setup-failed":
                raise JobError(result["error"])
            record = {**base, "input": input_key(path), **result, "attempt": attempt}
            journal.append(record)
            finished.append(record)
            if on_result is not None:
                on_result(record)
    return finished


def sweep_unfinished(last, spec, names):
    """Remove dead writers' temporary files where the journal says an item was cut off.

    A crash (or kill) mid-item leaves ``.STEM.partial-PID-...`` files in that
    item's output folder; their final names were never written.

    Returns
    -------
    list of Path
        The temporary files removed.
    """
    removed = []
    folders = set()
    for key, rec in last.items():
        if rec.get("state") in ("running", "retry"):
            folders.update(p.parent for p in spec.output_paths(key, names))
    for folder in sorted(folders):
        removed += audio.remove_stale_temporaries(folder)
    return removed


def check_collisions(spec, paths, names):
    """Refuse inputs whose outputs would land on the same file, before anything runs."""
    seen = {}
    for path in paths:
        for target in spec.output_paths(path, names):
            key = os.path.abspath(target)
            if seen.setdefault(key, path) != path:
                raise JobError(f"{seen[key]} and {path} would both write {target}; put "
                               "{track} in --filename, or more of the path")


# -- the journal's summary -------------------------------------------------------------------
def status(folder):
    """What the journal in ``folder`` says: counts by state, audio done, failures.

    Returns
    -------
    dict
        ``journal``, ``items``, ``done``, ``failed``, ``unfinished`` (running when
        a run stopped), ``audio_s`` (of the done items), ``seconds`` (their
        processing time), ``runs``, ``last_run`` and ``failures`` (input, error).

    Raises
    ------
    JobError
        When ``folder`` holds no journal.
    """
    path = Path(folder) / JOURNAL_NAME
    if not path.is_file():
        raise JobError(f"{folder}: no batch journal here ({JOURNAL_NAME})")
    records = Journal.read(folder)
    last = Journal.latest(records)
    runs = [r for r in records if r["event"] == "run"]
    done = [r for r in last.values() if r.get("state") == "done"]
    failed = [r for r in last.values() if r.get("state") == "failed"]
    return {"journal": str(path), "items": len(last), "done": len(done), "failed": len(failed),
            "unfinished": len(last) - len(done) - len(failed),
            "audio_s": round(sum(r.get("duration_s") or 0 for r in done), 3),
            "seconds": round(sum(r.get("seconds") or 0 for r in done), 3),
            "runs": len(runs), "last_run": runs[-1] if runs else None,
            "failures": [{"input": r["input"], "error": r.get("error")} for r in failed]}
