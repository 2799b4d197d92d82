"""What every module of the ``stemboard`` command line shares.

``cli`` (the parser and ``main``), ``cli_commands`` (the separate, remix,
batch and models bodies), ``cli_daw`` (render, presets, ab), ``batch`` and
``jobs`` import these; none of them imports another CLI module back for them.
Like ``cli``, this module imports nothing heavy: ``stemboard --help`` reads it.
"""
EXIT_ERROR = 1

# Output names as Demucs lays them out (OUT/{track}/{stem}.{ext}), one folder per song.
SEPARATE_FILENAME = "{track}/{stem}.{ext}"
REMIX_FILENAME = "{track}.{ext}"
# One mix per input into a folder; {preset} keeps renders of several presets apart.
RENDER_FILENAME = "{track}-{preset}.{ext}"

# Where `stemboard batch` runs its items (stemboard.jobs); here so the parser need not
# import jobs to list them.
ENGINES = ("local", "ray")

# -- execution providers: --device NAME -> onnxruntime providers, in order of preference.
DEVICES = {"cpu": ["CPUExecutionProvider"],
           # CPU after CUDA: onnxruntime runs any op CUDA lacks there.
           "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


class CliError(Exception):
    """An error to report as one line, exiting non-zero."""


def one_line(error):
    """An exception as the one line the CLI prints."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
