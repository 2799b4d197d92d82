"""Several inputs in one command: expanding them, progress, failure isolation, summary.

One bad file does not stop the others: each input runs on its own, its
outputs published all or none (see ``stemboard.plugin.audio``), and the run ends
with a summary. Stop signals still stop the whole batch.
"""
import glob
import json
import os
import sys
import time
from pathlib import Path

from stemboard import jobs
from stemboard.cli_common import RENDER_FILENAME, SEPARATE_FILENAME, one_line
from stemboard.jobs import JobError, JobSpec
from stemboard.models import model_info
from stemboard.plugin import audio
from stemboard.plugin.defaults import SEPARATION_BUFFER_SIZE
from stemboard.plugin.naming import NameTemplate
from stemboard.plugin.render import READ_SUFFIXES, two_stem_model
from stemboard.presets import PresetError, load_preset

# Errors that belong to one input; anything else (a bug, a stop signal) ends the batch.
FILE_ERRORS = (ValueError, TypeError, OSError)


class InputError(ValueError):
    """The inputs named on the command line select no files."""


def _is_glob(text):
    return any(c in text for c in "*?[")


def expand_inputs(items, *, recursive=False, suffixes=None):
    """The files a command line names: files as given, folders and globs expanded.

    Parameters
    ----------
    items : list of str
        Files, folders, and globs (expanded here too, so quoted globs and
        shells that do not expand them work the same).
    recursive : bool
        Take the audio files of folders' subfolders too (and ``**`` in globs).
    suffixes : tuple of str, optional
        The audio suffixes taken from folders (default ``render.READ_SUFFIXES``).

    Returns
    -------
    list of Path
        In command-line order, each file once. A name that is neither a file,
        a folder nor a matching glob is kept, so that it fails on its own with
        "no such file" and the rest still run.

    Raises
    ------
    InputError
        When a folder holds no audio files or a glob matches nothing.
    """
    if suffixes is None:
        suffixes = READ_SUFFIXES
    found = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files = _folder_files(path, recursive, suffixes)
            if not files:
                raise InputError(f"{path}: no audio files in this folder"
                                 + ("" if recursive else " (--recursive looks in subfolders)"))
            found += files
        elif not path.exists() and _is_glob(item):
            files = sorted(Path(p) for p in glob.glob(item, recursive=recursive)
                           if Path(p).is_file())
            if not files:
                raise InputError(f"{item}: no file matches this pattern")
            found += files
        else:
            found.append(path)
    unique = {}
    for path in found:
        unique.setdefault(path.resolve() if path.exists() else path, path)
    return list(unique.values())


def _folder_files(folder, recursive, suffixes):
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in pattern
                  if p.is_file() and p.suffix.lower() in suffixes
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


class Outcome:
    """What happened to one input.

    Attributes
    ----------
    input : Path
    outputs : dict of str to Path, or list of Path
    error : str or None
        The one-line message when it failed.
    duration_s : float or None
        The input's length in seconds, when it could be read.
    seconds : float
        Wall-clock time spent on it.
    """

    def __init__(self, input):
        self.input = Path(input)
        self.outputs = {}
        self.error = None
        self.duration_s = None
        self.sample_rate = None
        self.seconds = 0.0

    @property
    def ok(self):
        return self.error is None

    def as_dict(self):
        outputs = ({k: str(v) for k, v in self.outputs.items()}
                   if isinstance(self.outputs, dict) else [str(p) for p in self.outputs])
        return {"input": str(self.input), "status": "ok" if self.ok else "failed",
                "outputs": outputs, "error": self.error, "duration_s": self.duration_s,
                "sample_rate": self.sample_rate, "seconds": round(self.seconds, 3),
                "realtime_factor": _rtf(self.duration_s, self.seconds)}


def _rtf(duration, seconds):
    """Seconds of audio per second of processing (higher is faster)."""
    if not duration or not seconds:
        return None
    return round(duration / seconds, 2)


class BatchProgress:
    """A bar over the batch (files) and one over the current file (seconds of audio).

    On stderr when it is a terminal (or when ``enabled``); the batch bar only
    when there is more than one file.
    """

    def __init__(self, n_files, *, enabled=None, file=None):
        self.file = file if file is not None else sys.stderr
        self.enabled = self.file.isatty() if enabled is None else enabled
        self._batch = None
        if self.enabled and n_files > 1:
            from tqdm import tqdm

            self._batch = tqdm(total=n_files, desc="files", unit="file", position=0,
                               file=self.file, leave=False)

    def start(self, path, sample_rate, frames, desc):
        """A ``progress(done_frames, total_frames)`` callback for one file, or None."""
        self.end_file()
        if not self.enabled:
            return None
        from tqdm import tqdm

        self._bar = tqdm(total=frames / sample_rate, desc=f"{desc} {Path(path).name}",
                         unit="s", position=1 if self._batch is not None else 0,
                         file=self.file, leave=False,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s "
                                    "[{elapsed}<{remaining}]")
        bar = self._bar
        return lambda done, total: bar.update(done / sample_rate - bar.n)

    def end_file(self):
        bar = getattr(self, "_bar", None)
        if bar is not None:
            bar.close()
            self._bar = None
        # Counted whether the file worked or not: the bar covers the batch.

    def advance(self):
        self.end_file()
        if self._batch is not None:
            self._batch.update(1)

    def close(self):
        self.end_file()
        if self._batch is not None:
            self._batch.close()
            self._batch = None


def run_batch(inputs, job, *, progress):
    """Run ``job(path, outcome, progress)`` for every input, isolating failures.

    ``job`` fills ``outcome.outputs`` (and may set ``duration_s``); an error
    from :data:`FILE_ERRORS` is recorded on the outcome and the next input
    runs. A stop signal (``KeyboardInterrupt``) or any other exception ends the
    batch; the file it interrupted leaves no output (the writers see to that).

    Returns
    -------
    list of Outcome
    """
    outcomes = []
    try:
        for path in inputs:
            outcome = Outcome(path)
            start = time.perf_counter()
            try:
                job(path, outcome, progress)
            except FILE_ERRORS as e:
                outcome.error = one_line(e)
                outcome.outputs = {} if isinstance(outcome.outputs, dict) else []
            finally:
                outcome.seconds = time.perf_counter() - start
                progress.advance()
            outcomes.append(outcome)
            if not outcome.ok:
                # Printed as it happens, above the bars, so a long batch shows it early.
                _print_error(outcome, progress)
    finally:
        progress.close()
    return outcomes


def _print_error(outcome, progress):
    msg = outcome.error
    if str(outcome.input) not in msg:
        msg = f"{outcome.input}: {msg}"
    outcome.error = msg
    if progress.enabled:
        from tqdm import tqdm

        tqdm.write(f"stemboard: error: {msg}", file=sys.stderr)
    else:
        print(f"stemboard: error: {msg}", file=sys.stderr)


def summary(outcomes, **fields):
    """The run as a JSON-ready dict: ``fields`` (command, model, ...) plus per-input results."""
    duration = sum(o.duration_s or 0.0 for o in outcomes if o.ok)
    seconds = sum(o.seconds for o in outcomes)
    return {**fields, "inputs": [o.as_dict() for o in outcomes],
            "ok": sum(o.ok for o in outcomes), "failed": sum(not o.ok for o in outcomes),
            "duration_s": round(duration, 3), "seconds": round(seconds, 3),
            "realtime_factor": _rtf(duration, seconds)}


def report(outcomes, *, as_json=False, **fields):
    """Print the outputs (or the JSON summary) and, for a batch, a summary line.

    Returns
    -------
    int
        The exit status: 0 when every input worked, 1 otherwise.
    """
    if as_json:
        print(json.dumps(summary(outcomes, **fields), indent=2))
    else:
        for o in outcomes:
            paths = o.outputs.values() if isinstance(o.outputs, dict) else o.outputs
            for p in paths:
                print(p)
    failed = [o for o in outcomes if not o.ok]
    if len(outcomes) > 1:
        s = summary(outcomes)
        line = (f"stemboard: {s['ok']} of {len(outcomes)} inputs done "
                f"({s['duration_s']:.1f} s of audio in {s['seconds']:.1f} s)")
        if failed:
            line += f"; {len(failed)} failed: {', '.join(str(o.input) for o in failed)}"
        print(line, file=sys.stderr)
    return 1 if failed else 0


def output_target(output, inputs, *, filename, format, default, available):
    """Where a one-mix-per-input command (``remix``, ``render``) writes.

    ``-o`` names one output file when it has an extension, is not a folder
    and does not end with a separator; then ``--filename`` is refused and
    there must be one input. Otherwise it is a folder and each input's path
    comes from the template (which must hold ``{track}`` for several inputs).

    Parameters
    ----------
    output : str
        The ``-o`` value.
    inputs : list of Path
    filename : str or None
        The ``--filename`` template.
    format : str or None
        The ``--format`` value (a file's extension is replaced by it).
    default : str
        The template when ``filename`` is None.
    available : tuple of str
        The fields the command fills.

    Returns
    -------
    (Path, None) or (None, NameTemplate)
        The one file (extension set to ``format`` if given), or the template.

    Raises
    ------
    InputError, TemplateError, AudioError
    """
    out = Path(output)
    if out.suffix and not out.is_dir() and not output.endswith(("/", "\\")):
        if filename is not None:
            raise InputError(f"--filename needs -o to be a folder, not the file {out}")
        if len(inputs) > 1:
            raise InputError(f"-o {out} names one file but there are {len(inputs)} inputs; "
                             "give a folder")
        fmt = audio.output_format(out, format)  # an unknown format fails here, up front
        return (out if format is None else out.with_suffix(f".{fmt}")), None
    return None, NameTemplate(filename or default, available=available,
                              required=("track",) if len(inputs) > 1 else ())


def read_duration(path, outcome):
    """Record ``path``'s rate and length on ``outcome``; return ``(rate, frames)``."""
    sr, _, frames, _ = audio.read_info(path)
    outcome.sample_rate, outcome.duration_s = sr, round(frames / sr, 3)
    return sr, frames


# -- catalog jobs: `stemboard batch` ------------------------------------------------------
LIST_SUFFIXES = (".txt", ".csv")


def read_path_list(path):
    """The input paths a ``.txt`` (one per line) or ``.csv`` list names.

    Blank lines and lines starting with ``#`` are skipped. A CSV's paths are
    in its ``path`` column when its first row names one, else in its first
    column. Relative paths are relative to the list's folder.

    Raises
    ------
    InputError
        When the list cannot be read or names no path.
    """
    import csv

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read this list of inputs ({e})") from None
    lines = [line for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    if path.suffix.lower() == ".csv":
        rows = [row for row in csv.reader(lines) if row]
        header = [c.strip().lower() for c in rows[0]] if rows else []
        column = header.index("path") if "path" in header else 0
        rows = rows[1:] if "path" in header else rows
        names = [row[column].strip() for row in rows if len(row) > column]
    else:
        names = [line.strip() for line in lines]
    names = [n for n in names if n]
    if not names:
        raise InputError(f"{path}: this list names no input files")
    return [p if p.is_absolute() else path.parent / p for p in map(Path, names)]


def expand_sources(items, *, recursive=False):
    """:func:`expand_inputs`, with ``.txt``/``.csv`` files read as lists of inputs."""
    expanded = []
    for item in items:
        if Path(item).suffix.lower() in LIST_SUFFIXES and Path(item).is_file():
            expanded += [str(p) for p in read_path_list(item)]
        else:
            expanded.append(item)
    return expand_inputs(expanded, recursive=recursive)


def run(sources, out, *, model=None, stems=None, two_stems=None, preset=None, format="wav",
        bit_depth=None, bitrate=None, filename=None, mask_mode=None,
        block_size=SEPARATION_BUFFER_SIZE, threads=None, providers=None, engine="local",
        workers=None, address=None, retries=2, recursive=False, rehash=False,
        progress=False):
    """Separate a catalog into ``out``, resumably: ``stemboard batch`` from Python.

    Each input is separated exactly as ``stemboard separate`` would, on a pool
    of workers that each load the model once. A journal in ``out``
    (``stemboard-batch.jsonl``) records every item; running the same call
    again skips the items that finished with the same input and options.

    The local engine starts its workers with ``spawn``: in a script, call this
    under ``if __name__ == "__main__":``.

    Parameters
    ----------
    sources : str, Path or list of them
        Audio files, folders, globs, and ``.txt``/``.csv`` lists of paths.
    out : str or Path
        The output folder; the journal lives in it.
    model, stems, two_stems, format, bit_depth, bitrate, filename, mask_mode
        As for ``stemboard separate`` (``filename`` defaults to
        ``"{track}/{stem}.{ext}"``; ``mask_mode`` to ``"soft"``).
    preset : str, Path or Preset, optional
        Render each input through this preset into one mix, as ``stemboard
        render --preset`` does, instead of writing stems (so not with ``stems``
        or ``two_stems``). ``model`` and ``mask_mode`` override the preset's.
        ``filename`` then takes ``{track}``, ``{preset}``, ``{model}`` and
        ``{ext}`` (default ``"{track}-{preset}.{ext}"``). The journal records
        the preset's name and settings: another preset, or an edited one,
        redoes the items.
    block_size, threads, providers
        Memory and speed only. ``threads`` is per worker; by default the
        machine's cores split between the local workers, 1 per Ray actor.
    engine : {"local", "ray"}
    workers : int, optional
        Default: 1 per core (local), 2 (Ray).
    address : str, optional
        Ray cluster address (default ``RAY_ADDRESS``, else a local runtime).
    retries : int
        Extra attempts for an item whose worker died.
    recursive : bool
        Folders: take their subfolders' audio files too.
    rehash : bool
        Check finished inputs by their sha256 even when size and time match.
    progress : bool
        A tqdm bar on stderr.

    Returns
    -------
    dict
        The summary: counts (``done``, ``skipped``, ``failed``), audio seconds,
        wall seconds, audio hours per hour and each processed item's record.

    Raises
    ------
    InputError, JobError, ValueError
        Before anything runs, for bad inputs or options.
    """
    jobs.check_engine(engine, address)
    if isinstance(sources, (str, Path)):
        sources = [sources]
    paths = expand_sources([str(s) for s in sources], recursive=recursive)
    if not paths:
        raise InputError("no input files")
    spec, names = job_spec(out, model=model, stems=stems, two_stems=two_stems, preset=preset,
                           format=format,
                           bit_depth=bit_depth, bitrate=bitrate, filename=filename,
                           mask_mode=mask_mode, block_size=block_size, threads=threads,
                           providers=providers, engine=engine, workers=workers)
    workers = _workers(engine, workers)
    if retries < 0:
        raise jobs.JobError(f"retries must be 0 or more, not {retries}")
    jobs.check_collisions(spec, paths, names)
    start = time.perf_counter()
    with jobs.Journal(out) as journal:
        last = jobs.Journal.latest(jobs.Journal.read(out))
        jobs.sweep_unfinished(last, spec, names)
        spec_hash = spec.options_sha256()
        todo = [p for p in paths if not jobs.is_finished(last.get(jobs.input_key(p)),
                                                         spec_hash, p, rehash=rehash)]
        journal.append({"event": "run", "engine": engine, "workers": workers,
                        "model": spec.model_name, "options": spec.options(),
                        "options_sha256": spec_hash, "inputs": len(paths), "todo": len(todo)})
        bar = JobProgress(len(todo), enabled=progress)
        records, startup, driver_cpu = [], 0.0, 0.0
        try:
            if todo:
                t0 = time.perf_counter()
                with jobs.make_engine(engine, spec, workers=workers, address=address) as eng:
                    startup = time.perf_counter() - t0
                    cpu0 = time.process_time()
                    records = jobs.drive(eng, todo, journal, spec, retries=retries,
                                         on_result=bar.update)
                    driver_cpu = time.process_time() - cpu0
        finally:
            bar.close()
    # startup_s: workers started and models loaded; driver_cpu_s: this process's CPU
    # while items ran (handing them out, journaling), what bounds a cluster's scale.
    return job_summary(records, skipped=len(paths) - len(todo), seconds=time.perf_counter()
                       - start, engine=engine, workers=workers, model=spec.model_name,
                       options=spec.options(), journal=str(journal.path),
                       startup_s=round(startup, 3), driver_cpu_s=round(driver_cpu, 3))


def _workers(engine, workers):
    if workers is None:
        return (os.cpu_count() or 1) if engine == "local" else 2
    if workers < 1:
        raise JobError(f"workers must be 1 or more, not {workers}")
    return workers


def job_spec(out, *, model=None, stems=None, two_stems=None, preset=None, format="wav",
             bit_depth=None, bitrate=None, filename=None, mask_mode=None,
             block_size=SEPARATION_BUFFER_SIZE, threads=None, providers=None, engine="local",
             workers=None):
    """A checked :class:`~stemboard.jobs.JobSpec` and its output names, from the manifests.

    No model graph is loaded here: the workers do that.

    Raises
    ------
    ValueError
        For an unknown model, stem, preset, format, bit depth, bitrate or template.
    """
    if two_stems is not None and stems is not None:
        raise ValueError("choose stems or two_stems, not both")
    settings = None
    if preset is not None:
        if stems is not None or two_stems is not None:
            raise ValueError("a preset renders one mix per input; stems and two_stems write "
                             "stems: choose one")
        preset, settings = _preset_settings(preset)
        model = preset.resolved_model(model)
        mask_mode = mask_mode or preset.mask_mode
    if two_stems is not None and model is None:
        model = two_stem_model(two_stems)
    info = model_info(model)
    fmt = audio.output_format(f"x.{format}")
    audio.check_write_options(fmt, bit_depth=bit_depth, bitrate=bitrate)
    if threads is None:
        # Cores split between local workers: more threads than cores only contend.
        threads = (max(1, (os.cpu_count() or 1) // _workers(engine, workers))
                   if engine == "local" else 1)
    spec = JobSpec(out=str(Path(out).absolute()), model=None if model is None else str(model),
                   model_name=info["name"], model_path=str(info["path"]),
                   stems=None if stems is None else tuple(stems), two_stems=two_stems,
                   format=fmt, bit_depth=bit_depth, bitrate=bitrate,
                   filename=filename or (SEPARATE_FILENAME if preset is None
                                         else RENDER_FILENAME),
                   mask_mode=mask_mode or "soft", block_size=block_size, threads=threads,
                   providers=None if providers is None else tuple(providers),
                   preset=None if preset is None else preset.name, preset_settings=settings)
    spec.template()  # a bad template fails now, naming itself
    names = spec.output_names(info["stems"])
    if preset is not None:
        # The stems it names against the model's, now rather than in every worker.
        unknown = [s for s in (*preset.solo, *preset.gains_db) if s not in info["stems"]]
        if unknown:
            raise PresetError(f"preset {preset.name!r} names stem(s) {', '.join(unknown)}, "
                              f"but the model {info['name']!r} has {', '.join(info['stems'])}")
    return spec, names


def _preset_settings(preset):
    """The loaded preset and its settings (gains, solo, mix, mask mode) as canonical JSON."""
    preset = load_preset(preset)
    settings = preset.to_dict()
    # Labels are not settings; the model is recorded by name with the other options.
    for key in ("name", "description", "model"):
        settings.pop(key)
    return preset, json.dumps(settings, sort_keys=True, separators=(",", ":"))


class JobProgress:
    """A tqdm bar over a batch's items, with audio done, throughput and ETA.

    Throughput is in audio hours per hour of wall time (the real-time factor
    of the whole batch).
    """

    def __init__(self, n_items, *, enabled=False, file=None):
        self.file = file if file is not None else sys.stderr
        self.audio_s = 0.0
        self.start = time.perf_counter()
        self._bar = None
        if enabled and n_items:
            from tqdm import tqdm

            self._bar = tqdm(total=n_items, desc="batch", unit="item", file=self.file,
                             dynamic_ncols=True)

    def update(self, record):
        if record.get("state") == "done":
            self.audio_s += record.get("duration_s") or 0.0
        if self._bar is None:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self._bar.set_postfix_str(f"{self.audio_s / 3600:.2f} h audio, "
                                  f"{self.audio_s / elapsed:.1f} h/h", refresh=False)
        self._bar.update(1)
        if record.get("state") == "failed":
            self._bar.write(f"stemboard: error: {record.get('error')}", file=self.file)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def job_summary(records, *, skipped, seconds, **fields):
    """The JSON-ready summary of one ``batch`` run."""
    done = [r for r in records if r["state"] == "done"]
    failed = [r for r in records if r["state"] == "failed"]
    audio_s = sum(r.get("duration_s") or 0.0 for r in done)
    return {"command": "batch", **fields, "done": len(done), "skipped": skipped,
            "failed": len(failed), "audio_s": round(audio_s, 3), "seconds": round(seconds, 3),
            "audio_hours_per_hour": round(audio_s / seconds, 2) if seconds and audio_s else None,
            "failures": [{"input": r["input"], "error": r.get("error")} for r in failed],
            "items": records}


def print_job_summary(summary, *, file=None):
    """The summary table of a ``batch`` run (or of ``--status``), on stderr."""
    file = file if file is not None else sys.stderr
    rows = [(k, summary[k]) for k in ("done", "skipped", "failed", "unfinished") if k in summary]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v:>8}", file=file)
    line = (f"  audio   {_audio_length(summary.get('audio_s', 0))} in "
            f"{summary.get('seconds', 0):.1f} s")
    if summary.get("audio_hours_per_hour"):
        line += f" ({summary['audio_hours_per_hour']:.1f} audio hours per hour)"
    print(line, file=file)
    for f in summary.get("failures", []):
        print(f"  failed: {f['error']}", file=file)


def _audio_length(seconds):
    """``12.0 s``, ``3.5 min`` or ``2.25 h``: audio lengths as people count them."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
