"""The ``stemboard`` command line."""
import argparse
import math
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from . import audio
from .gains import check_gain_db

EXIT_ERROR = 1


class CliError(Exception):
    """An error to report as one line, exiting non-zero."""


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


def _parse_stems(text, available):
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise CliError("--stems needs at least one stem name")
    unknown = [s for s in names if s not in available]
    if unknown:
        raise CliError(f"unknown stem(s) {', '.join(unknown)}; the model has "
                       f"{', '.join(available)}")
    return list(dict.fromkeys(names))


def _parse_gain(text):
    if "=" not in text:
        raise CliError(f"--gain expects STEM=DB (e.g. vocals=-inf), got {text!r}")
    stem, value = text.split("=", 1)
    value = value.strip().lower()
    if value.endswith("db"):
        value = value[:-2]
    try:
        db = -math.inf if value in ("-inf", "mute", "off") else float(value)
    except ValueError:
        raise CliError(f"--gain {text!r}: {value!r} is not a number of dB") from None
    return stem.strip(), check_gain_db(db, what=f"--gain {text!r}: the gain", error=CliError)


def _make_separator(args):
    from .plugin import StemSeparator

    return StemSeparator(args.model, mask_mode=args.mask_mode, num_threads=args.threads)


def _progress(args, total_frames, sample_rate, desc):
    bar = audio.progress_bar(total_frames / sample_rate, desc,
                             enabled=None if not args.quiet else False)
    return bar


def _bar_callback(bar, sample_rate):
    if bar is None:
        return None
    return lambda done, total: bar.update(done / sample_rate - bar.n)


def cmd_separate(args):
    from .render import render_stems

    sr, _, frames, _ = audio.read_info(args.input)  # fail on bad input before loading a model
    sep = _make_separator(args)
    stems = list(sep.stems) if args.stems is None else _parse_stems(args.stems, sep.stems)
    bar = _progress(args, frames, sr, f"separating {Path(args.input).name}")
    try:
        paths = render_stems(args.input, args.output, sep, stems=stems,
                             block_size=args.block_size, format=args.format,
                             bit_depth=args.bit_depth, progress=_bar_callback(bar, sr))
    finally:
        if bar is not None:
            bar.close()
    for path in paths.values():
        print(path)
    return 0


def cmd_remix(args):
    from .render import render

    sr, _, frames, _ = audio.read_info(args.input)
    audio.output_format(args.output)
    sep = _make_separator(args)
    for text in args.gain or []:
        stem, db = _parse_gain(text)
        if stem not in sep.stems:
            raise CliError(f"--gain {text!r}: unknown stem {stem!r}; the model has "
                           f"{', '.join(sep.stems)}")
        sep.set_gain(stem, db)
    sep.mix = args.mix
    bar = _progress(args, frames, sr, f"remixing {Path(args.input).name}")
    try:
        render(args.input, args.output, sep, block_size=args.block_size,
               bit_depth=args.bit_depth, progress=_bar_callback(bar, sr))
    finally:
        if bar is not None:
            bar.close()
    print(args.output)
    return 0


def cmd_models(args):
    from .models import DEFAULT_MODEL, bundled_models, model_info

    for name, path in bundled_models().items():
        m = model_info(path)
        latency = m["latency_samples"] / m["sample_rate"] * 1000
        default = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name:10s} stems={','.join(m['stems'])}  latency={latency:.1f} ms  "
              f"stereo={m['stereo']}  {m['description']}{default}")
    return 0


def _common(p):
    p.add_argument("--model", default=None,
                   help="bundled model name (hq, hq-vocals, offline, live; see `stemboard "
                        "models`) or path to an .onnx model or cascade .json (default: hq)")
    p.add_argument("--threads", type=int, default=None,
                   help="onnxruntime threads (default: all cores)")
    p.add_argument("--mask-mode", choices=("soft", "binary"), default="soft")
    p.add_argument("--block-size", type=int, default=audio.DEFAULT_BLOCK,
                   help="samples read per block (memory use, not results)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="stemboard",
        description="Neural stem separation as an audio effect: separate, remix, render.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("separate", help="write one file per stem")
    p.add_argument("input", help="audio file (anything pedalboard.io reads)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--stems", default=None, help="comma-separated stems (default: all)")
    p.add_argument("--format", choices=("wav", "flac"), default="wav")
    p.add_argument("--bit-depth", type=int, default=None,
                   help="output bit depth (default: keeps the input's precision)")
    _common(p)
    p.set_defaults(func=cmd_separate)

    p = sub.add_parser("remix", help="change stem levels and write one mix")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True, help="output file (.wav, .flac, ...)")
    p.add_argument("--gain", action="append", metavar="STEM=DB",
                   help="stem gain in dB, -120 to +24, or -inf to mute; repeatable")
    p.add_argument("--mix", type=float, default=1.0, help="dry/wet, 0..1 (default 1)")
    p.add_argument("--bit-depth", type=int, default=None)
    _common(p)
    p.set_defaults(func=cmd_remix)

    p = sub.add_parser("models", help="list the bundled models")
    p.set_defaults(func=cmd_models)

    try:
        from .cli_daw import add_commands
    except ImportError:
        pass
    else:
        add_commands(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with stop_signals_raise():
            return args.func(args)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"stemboard: stopped by {signal.Signals(signum).name}; no partial outputs were "
              "kept", file=sys.stderr)
        return 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    except (CliError, ValueError, TypeError, OSError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"stemboard: error: {msg}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
