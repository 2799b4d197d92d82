"""Several inputs in one command: expanding them, progress, failure isolation, summary.

One bad file does not stop the others: each input runs on its own, its
outputs published all or none (see ``stemboard.audio``), and the run ends
with a summary. Stop signals still stop the whole batch.
"""
import glob
import json
import sys
import time
from pathlib import Path

from . import audio

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
        from .render import READ_SUFFIXES as suffixes
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


def one_line(error):
    """An exception as the one line the CLI prints."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


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


def read_duration(path, outcome):
    """Record ``path``'s rate and length on ``outcome``; return ``(rate, frames)``."""
    sr, _, frames, _ = audio.read_info(path)
    outcome.sample_rate, outcome.duration_s = sr, round(frames / sr, 3)
    return sr, frames
