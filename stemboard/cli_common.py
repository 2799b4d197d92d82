"""What every module of the ``stemboard`` command line shares.

``cli`` (the parser and the separation commands), ``cli_daw`` (render,
presets, ab) and ``batch`` import these; none of them imports another
CLI module back for them.
"""
EXIT_ERROR = 1


class CliError(Exception):
    """An error to report as one line, exiting non-zero."""


def one_line(error):
    """An exception as the one line the CLI prints."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
