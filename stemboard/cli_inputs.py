"""What the ``stemboard`` commands that take many inputs share: the inputs, their
output paths and progress.

``cli_commands`` (separate, remix, batch) and ``cli_daw`` (render) import these; neither
imports the other for them.
"""
from pathlib import Path

from stemboard.batch import BatchProgress, InputError, expand_inputs
from stemboard.cli_common import CliError
from stemboard.plugin import audio


def input_paths(args):
    try:
        inputs = expand_inputs(args.inputs, recursive=args.recursive)
    except InputError as e:
        raise CliError(str(e)) from None
    if not inputs:
        raise CliError("no input files")
    return inputs


def refuse_collisions(paths):
    """Refuse a batch whose outputs collide, before anything is written."""
    seen = {}
    for src, path in paths:
        key = str(Path(path).resolve())
        if key in seen and seen[key] != src:
            raise CliError(f"{seen[key]} and {src} would both write {path}; put {{track}} in "
                           "--filename")
        seen[key] = src


def first_input_checked(inputs):
    # With one input, a bad file fails before a model is loaded (seconds saved);
    # in a batch it fails on its own and the others run.
    if len(inputs) == 1:
        audio.read_info(inputs[0])


def progress_for(args, n):
    return BatchProgress(n, enabled=False if args.quiet else None)


def made_root(out):
    """The output folder, created (it stays, like ``separate``'s), for template subfolders."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise audio.AudioError(f"{out}: cannot create the output folder "
                               f"({e.strerror or e})") from None
    return out
