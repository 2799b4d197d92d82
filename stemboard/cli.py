"""The ``stemboard`` command line: the parser and :func:`main`.

This module builds the parser from light modules only (argparse, the standard
library, and constant-only modules), so ``stemboard --help``, ``--version`` and
a bad option answer without loading numpy, the Numba kernels, onnxruntime or
pedalboard (issue 25 item 5). Once a command is parsed, :func:`main` imports
:mod:`stemboard.cli_commands` and runs its body from ``COMMANDS``.
"""
import argparse
import signal
import sys
import threading
from contextlib import contextmanager

from stemboard import __version__
from stemboard.cli_common import (DEVICES, ENGINES, EXIT_ERROR, REMIX_FILENAME,
                                  RENDER_FILENAME, SEPARATE_FILENAME, CliError, one_line)
from stemboard.models.modes import MASK_MODES
from stemboard.plugin.defaults import DEFAULT_BUFFER_SIZE, SEPARATION_BUFFER_SIZE, WRITE_FORMATS


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) received while a command runs.

    A ``KeyboardInterrupt``, so it unwinds exactly like Ctrl-C: every writer's
    context removes its temporary files on the way out. Before, only SIGINT
    did; SIGTERM (what ``kill`` and ``timeout`` send) left them behind.
    """

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


@contextmanager
def stop_signals_raise():
    """While the body runs, turn the first stop signal into :class:`Stopped`.

    Later signals are ignored so they cannot cut the cleanup of the first one
    short. Signal handlers can only be set from the main thread; elsewhere the
    body runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def handler(signum, frame):
        if received:
            return
        received.append(signum)
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


BIT_DEPTHS = {"8": 8, "16": 16, "24": 24, "32": 32, "32f": 32}


def bit_depth_arg(text):
    """``--bit-depth``: 8, 16, 24 or 32f (32-bit float; ``32`` means the same)."""
    try:
        return BIT_DEPTHS[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of 16, 24, 32f (or 8)") from None


def add_buffer_size(p, default=DEFAULT_BUFFER_SIZE):
    """``--buffer-size``, and its deprecated old name ``--block-size``."""
    p.add_argument("--buffer-size", type=int, default=default,
                   help="samples per block read, processed and written (default "
                        f"{default}; speed and memory use, not results)")
    p.add_argument("--block-size", type=int, default=None, help=argparse.SUPPRESS)


def _batch_parser(sub):
    p = sub.add_parser("batch", help="separate a catalog: resumable, on local workers or Ray")
    p.add_argument("inputs", nargs="*", metavar="SOURCE",
                   help="audio files, folders, globs, or .txt/.csv lists of paths")
    p.add_argument("-o", "--output", default=None,
                   help="output folder; holds the job journal (stemboard-batch.jsonl)")
    p.add_argument("--status", default=None, metavar="OUT",
                   help="summarise the journal in OUT and exit (1 unless every item is done)")
    p.add_argument("--stems", default=None, help="comma-separated stems (default: all)")
    p.add_argument("--two-stems", default=None, metavar="STEM",
                   help="write STEM and no_STEM, as `separate --two-stems`")
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="render each input through this preset into one mix, as `stemboard "
                        "render` (default name {track}-{preset}.{ext}), instead of stems")
    p.add_argument("--format", choices=WRITE_FORMATS, default="wav")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: a process pool on this machine (default); ray: Ray actors, "
                        "on a cluster with --address or RAY_ADDRESS (pip install "
                        "\"stemboard[ray]\")")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes or actors, each with the model loaded (default: "
                        "one per core; 2 for Ray)")
    p.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="Ray cluster to join (default RAY_ADDRESS, else a local runtime)")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="extra attempts for an item whose worker died (default 2)")
    p.add_argument("--rehash", action="store_true",
                   help="check finished inputs by sha256 even when size and time match")
    _common(p, filename=SEPARATE_FILENAME)
    p.set_defaults(mask_mode=None)  # None: the preset's, else soft


def _common(p, *, filename, when=None):
    p.add_argument("--model", default=None,
                   help="bundled model name (hq, hq-vocals, offline, live; see `stemboard "
                        "models`) or path to an .onnx model or cascade .json")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="folders: also take the audio files of their subfolders")
    p.add_argument("--filename", default=None, metavar="TEMPLATE",
                   help="output path under -o, from {track}, {ext}, {model} (and {stem} for "
                        f"separate); may hold subfolders (default {filename}"
                        + (f", when {when})" if when else ")"))
    p.add_argument("--bit-depth", type=bit_depth_arg, default=None, metavar="16|24|32f",
                   help="PCM bit depth: 16, 24 or 32f float (default: keeps the input's "
                        "precision; flac 16/24, aiff up to 24)")
    p.add_argument("--bitrate", type=int, default=None, metavar="KBPS",
                   help="mp3/ogg bitrate in kbit/s (e.g. 320)")
    p.add_argument("--threads", type=int, default=None,
                   help="onnxruntime threads (default: all cores)")
    device = p.add_mutually_exclusive_group()
    device.add_argument("--device", choices=sorted(DEVICES), default=None,
                        help="where the model runs: cpu (default) or cuda (onnxruntime-gpu)")
    device.add_argument("--providers", default=None, metavar="NAME[,NAME]",
                        help="onnxruntime execution providers in order of preference, e.g. "
                             "TensorrtExecutionProvider,CUDAExecutionProvider or cuda,cpu")
    p.add_argument("--mask-mode", choices=MASK_MODES, default="soft")
    add_buffer_size(p, SEPARATION_BUFFER_SIZE)
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary (inputs, outputs, model, durations, seconds, "
                        "real-time factor) instead of the output paths")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _options(p):
    p.add_argument("--model", default=None,
                   help="model name (hq, hq-vocals, offline, live) or .onnx path; overrides "
                        "the preset's")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads")
    add_buffer_size(p)
    p.add_argument("--bit-depth", type=int, default=None,
                   help="output bit depth (default: keeps the input's precision)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _daw_parsers(subparsers):
    """``render``, ``presets`` and ``ab`` (their bodies are in :mod:`stemboard.cli_daw`)."""
    p = subparsers.add_parser("render", help="render a file through a preset "
                                             "(optionally automated by a MIDI file)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders or globs")
    p.add_argument("-o", "--output", required=True,
                   help="output file (one input) or folder (default name "
                        f"{RENDER_FILENAME})")
    p.add_argument("--preset", required=True, help="preset name or .json path "
                                                   "(see `stemboard presets`)")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="folders: also take the audio files of their subfolders")
    p.add_argument("--filename", default=None, metavar="TEMPLATE",
                   help="output path under -o, from {track}, {preset}, {model} and {ext}; may "
                        f"hold subfolders (default {RENDER_FILENAME}, when -o is a folder)")
    p.add_argument("--format", choices=WRITE_FORMATS, default=None,
                   help="output format (default: -o's extension, or wav into a folder)")
    p.add_argument("--bitrate", type=int, default=None, metavar="KBPS",
                   help="mp3/ogg bitrate in kbit/s (e.g. 320)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary (inputs, outputs, durations, seconds) instead of "
                        "the output paths")
    p.add_argument("--automation", metavar="FILE.mid", default=None,
                   help="MIDI file whose messages automate the render, sample-accurately")
    p.add_argument("--midi-map", metavar="MAP.json", default=None,
                   help="JSON map from MIDI messages to stem gains, mix, presets and A/B")
    p.add_argument("--b", metavar="PRESET", default=None,
                   help="with --automation: side B of an A/B switch whose side A is "
                        "--preset; the map's 'ab' mappings switch sides, and its gains, mix "
                        "and program changes edit the side playing")
    _options(p)

    subparsers.add_parser("presets", help="list the presets, with descriptions")

    p = subparsers.add_parser("ab", help="render two presets for an A/B comparison, "
                                         "loudness-matched")
    p.add_argument("input", help="audio file")
    p.add_argument("--a", required=True, metavar="PRESET", help="preset A")
    p.add_argument("--b", required=True, metavar="PRESET", help="preset B")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--format", choices=("wav", "flac", "aiff"), default="wav")
    p.add_argument("--no-match", action="store_true",
                   help="do not match loudness (still measure and print it)")
    _options(p)


def _old_names(args):
    """Map deprecated options to their new names, saying so once on stderr."""
    if vars(args).get("block_size") is not None:
        print("stemboard: --block-size is deprecated; use --buffer-size", file=sys.stderr)
        args.buffer_size = args.block_size
    return args


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line and exit status 1, like every other error."""

    def error(self, message):
        self.exit(EXIT_ERROR, f"stemboard: error: {message} (see `{self.prog} --help`)\n")


class _CommandParser(_Parser):
    """A subcommand's parser: inputs and options in any order.

    Plain argparse takes a ``nargs="+"`` positional in one run, so in
    ``separate a.wav -r b_dir -o out`` the ``b_dir`` after ``-r`` was refused as
    unrecognized. Intermixed parsing collects positionals wherever they are, as
    Demucs's and most tools' users expect.
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:  # the intermixed parser's own passes (Python < 3.12)
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser():
    parser = _Parser(
        prog="stemboard",
        description="Neural stem separation as an audio effect: separate, remix, render.")
    parser.add_argument("--version", action="version", version=f"stemboard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=_CommandParser)
    sub.required = True

    p = sub.add_parser("separate", help="write one file per stem, for one or many inputs")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio files, folders or globs (wav, flac, mp3, ogg, aiff; m4a, opus "
                        "and stem.mp4 through ffmpeg)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--stems", default=None, help="comma-separated stems (default: all)")
    p.add_argument("--two-stems", default=None, metavar="STEM",
                   help="write STEM and no_STEM (every other stem summed), e.g. vocals; a "
                        "bundled 2-stem model with STEM is used when --model is not given")
    p.add_argument("--format", choices=WRITE_FORMATS, default="wav")
    _common(p, filename=SEPARATE_FILENAME)

    p = sub.add_parser("remix", help="change stem levels and write one mix per input")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders or globs")
    p.add_argument("-o", "--output", required=True,
                   help="output file (one input) or folder (default name {track}.{ext})")
    p.add_argument("--gain", action="append", metavar="STEM=DB",
                   help="stem gain in dB, -120 to +24, or -inf to mute; repeatable")
    p.add_argument("--mix", type=float, default=1.0, help="dry/wet, 0..1 (default 1)")
    p.add_argument("--format", choices=WRITE_FORMATS, default=None,
                   help="output format (default: -o's extension, or wav into a folder)")
    _common(p, filename=REMIX_FILENAME, when="-o is a folder")

    _batch_parser(sub)

    sub.add_parser("models", help="list the bundled models")
    _daw_parsers(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    try:
        args = _old_names(parser.parse_args(argv))
    except SystemExit as e:  # --help, --version, or a bad option (printed already)
        return e.code
    try:
        with stop_signals_raise():
            # The one deferred import of the CLI: the command bodies load numpy, the Numba
            # kernels, onnxruntime and pedalboard, which --help and a bad option do not need.
            from stemboard.cli_commands import COMMANDS

            return COMMANDS[args.command](args)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"stemboard: stopped by {signal.Signals(signum).name}; no partial outputs were "
              "kept", file=sys.stderr)
        return 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    except (CliError, ValueError, TypeError, OSError) as e:
        msg = one_line(e)
        print(f"stemboard: error: {msg}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
