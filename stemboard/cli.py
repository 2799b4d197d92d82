"""The ``stemboard`` command line."""
import argparse
import math
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from stemboard import __version__
from stemboard.batch import InputError, print_job_summary, read_duration, report, run, run_batch
from stemboard.cli_common import EXIT_ERROR, CliError, one_line
from stemboard.cli_daw import add_commands
from stemboard.cli_inputs import (add_buffer_size, first_input_checked, input_paths, made_root,
                                  progress_for, refuse_collisions)
from stemboard.dsp.gains import check_gain_db
from stemboard.jobs import JobError, status
from stemboard.models import DEFAULT_MODEL, bundled_models, model_info
from stemboard.models.manifest import MASK_MODES
from stemboard.plugin import StemSeparator, audio
from stemboard.plugin.naming import NameTemplate, TemplateError, track_name
from stemboard.plugin.render import (_make_parents, _remove_empty, render, render_stems,
                                     stem_groups, two_stem_model)

# Output names as Demucs lays them out (OUT/{track}/{stem}.{ext}), one folder per song.
SEPARATE_FILENAME = "{track}/{stem}.{ext}"
REMIX_FILENAME = "{track}.{ext}"


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


BIT_DEPTHS = {"8": 8, "16": 16, "24": 24, "32": 32, "32f": 32}


def bit_depth_arg(text):
    """``--bit-depth``: 8, 16, 24 or 32f (32-bit float; ``32`` means the same)."""
    try:
        return BIT_DEPTHS[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of 16, 24, 32f (or 8)") from None


def _check_format(args, fmt):
    try:
        audio.check_write_options(fmt, bit_depth=args.bit_depth,
                                  bitrate=getattr(args, "bitrate", None))
    except audio.AudioError as e:
        raise CliError(f"--format {fmt}: {e}") from None


# -- execution providers -----------------------------------------------------------------
DEVICES = {"cpu": ["CPUExecutionProvider"],
           # CPU after CUDA: onnxruntime runs any op CUDA lacks there.
           "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def execution_providers(device=None, providers=None):
    """onnxruntime execution providers for ``--device`` or ``--providers``.

    Parameters
    ----------
    device : {"cpu", "cuda"}, optional
    providers : str, optional
        Comma-separated provider names, full (``CUDAExecutionProvider``) or
        short (``cuda``, ``tensorrt``), in order of preference.

    Returns
    -------
    list of str or None
        None when neither is given (the model's default, CPU).

    Raises
    ------
    CliError
        Naming a provider that onnxruntime does not know or has not installed.
    """
    if device is None and providers is None:
        return None
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device is not None:
        option, wanted = f"--device {device}", DEVICES[device]
    else:
        option = f"--providers {providers}"
        wanted = [_provider_name(p, ort.get_all_providers(), option)
                  for p in providers.split(",") if p.strip()]
        if not wanted:
            raise CliError(f"{option}: name at least one provider")
    missing = [p for p in wanted if p not in available]
    if missing:
        hint = " (install onnxruntime-gpu for CUDA)" if "CUDAExecutionProvider" in missing else ""
        raise CliError(f"{option}: {', '.join(missing)} is not available in this onnxruntime "
                       f"(available: {', '.join(available)}){hint}")
    return list(dict.fromkeys(wanted))


def _provider_name(text, known, option):
    text = text.strip()
    by_short = {k.lower().removesuffix("executionprovider"): k for k in known}
    name = text if text in known else by_short.get(text.lower())
    if name is None:
        raise CliError(f"{option}: unknown execution provider {text!r}; onnxruntime knows "
                       f"{', '.join(known)}")
    return name


def _make_separator(args, model=None):
    return StemSeparator(args.model if model is None else model, mask_mode=args.mask_mode,
                         num_threads=args.threads,
                         providers=execution_providers(args.device, args.providers))


def _template(text, *, available, required):
    try:
        return NameTemplate(text, available=available, required=required)
    except TemplateError as e:
        raise CliError(str(e)) from None


def _run_fields(args, sep, providers):
    """The run-wide part of the ``--json`` summary."""
    return {"stemboard": __version__, "command": args.command, "model": sep.model.name,
            "stems": list(sep.stems), "providers": providers or DEVICES["cpu"]}


def cmd_separate(args):
    if args.two_stems is not None and args.stems is not None:
        raise CliError("--two-stems and --stems do not go together; choose one")
    template = _template(args.filename or SEPARATE_FILENAME,
                         available=("track", "stem", "ext", "model"),
                         required=("stem",))
    _check_format(args, args.format)
    providers = execution_providers(args.device, args.providers)  # before any file is read
    inputs = input_paths(args)
    first_input_checked(inputs)
    model = two_stem_model(args.two_stems, args.model) if args.two_stems else args.model
    sep = _make_separator(args, model)
    if args.two_stems is not None and args.two_stems not in sep.stems:
        raise CliError(f"--two-stems {args.two_stems}: unknown stem; the model "
                       f"{sep.model.name!r} has {', '.join(sep.stems)}")
    stems = None if args.stems is None else _parse_stems(args.stems, sep.stems)
    names = list(stem_groups(sep.stems, stems=stems, two_stems=args.two_stems))
    out = Path(args.output)
    refuse_collisions((src, template.path(out, track=track_name(src), stem=name, ext=args.format,
                                 model=sep.model.name))
             for src in inputs for name in names)

    def job(path, outcome, progress):
        sr, frames = read_duration(path, outcome)
        outcome.outputs = render_stems(
            path, out, sep, stems=stems, two_stems=args.two_stems, buffer_size=args.buffer_size,
            format=args.format, bit_depth=args.bit_depth, bitrate=args.bitrate,
            name_template=template, progress=progress.start(path, sr, frames, "separating"))

    outcomes = run_batch(inputs, job, progress=progress_for(args, len(inputs)))
    return report(outcomes, as_json=args.json, **_run_fields(args, sep, providers))


def _remix_target(args, inputs):
    """``(file, None)`` when ``-o`` names one output file, else ``(None, template)``."""
    out = Path(args.output)
    is_file = bool(out.suffix) and not out.is_dir() and not args.output.endswith(("/", "\\"))
    if is_file:
        if args.filename is not None:
            raise CliError(f"--filename needs -o to be a folder, not the file {out}")
        if len(inputs) > 1:
            raise CliError(f"-o {out} names one file but there are {len(inputs)} inputs; give "
                           "a folder")
        audio.output_format(out, args.format)
        return out, None
    template = _template(args.filename or REMIX_FILENAME, available=("track", "ext", "model"),
                         required=("track",) if len(inputs) > 1 else ())
    return None, template


def cmd_remix(args):
    inputs = input_paths(args)
    target, template = _remix_target(args, inputs)
    fmt = audio.output_format(target or "x.wav", args.format)
    _check_format(args, fmt)
    providers = execution_providers(args.device, args.providers)
    first_input_checked(inputs)
    sep = _make_separator(args)
    for text in args.gain or []:
        stem, db = _parse_gain(text)
        if stem not in sep.stems:
            raise CliError(f"--gain {text!r}: unknown stem {stem!r}; the model has "
                           f"{', '.join(sep.stems)}")
        sep.set_gain(stem, db)
    sep.mix = args.mix
    out = Path(args.output)

    def path_for(src):
        if target is not None:
            return target.with_suffix(f".{fmt}")
        return template.path(out, track=track_name(src), ext=fmt, model=sep.model.name)

    refuse_collisions((src, path_for(src)) for src in inputs)

    def job(path, outcome, progress):
        sr, frames = read_duration(path, outcome)
        dest = path_for(path)
        made = [] if target is not None else _make_parents([dest], made_root(out))
        try:
            outcome.outputs = [render(path, dest, sep, buffer_size=args.buffer_size, format=fmt,
                                      bit_depth=args.bit_depth, bitrate=args.bitrate,
                                      progress=progress.start(path, sr, frames, "remixing"))]
        except BaseException:
            _remove_empty(made)
            raise

    outcomes = run_batch(inputs, job, progress=progress_for(args, len(inputs)))
    return report(outcomes, as_json=args.json, **_run_fields(args, sep, providers))


def cmd_batch(args):
    """``stemboard batch``: a resumable catalog job, or ``--status`` of one."""
    if args.status is not None:
        return _batch_status(args)
    if not args.inputs or args.output is None:
        raise CliError("batch needs SOURCES and -o OUT (or --status OUT)")
    _check_format(args, args.format)
    providers = execution_providers(args.device, args.providers)
    stems = None if args.stems is None else [s.strip() for s in args.stems.split(",")
                                             if s.strip()]
    try:
        summary = run(args.inputs, args.output, model=args.model, stems=stems,
                      two_stems=args.two_stems, preset=args.preset, format=args.format,
                      bit_depth=args.bit_depth, bitrate=args.bitrate, filename=args.filename, mask_mode=args.mask_mode,
                      block_size=args.buffer_size, threads=args.threads, providers=providers,
                      engine=args.engine, workers=args.workers, address=args.address,
                      retries=args.retries, recursive=args.recursive, rehash=args.rehash,
                      progress=not args.quiet and sys.stderr.isatty())
    except (InputError, JobError) as e:
        raise CliError(str(e)) from None
    if args.json:
        import json

        print(json.dumps(summary, indent=2))
    print(f"stemboard batch: {summary['journal']} ({summary['engine']}, "
          f"{summary['workers']} workers)", file=sys.stderr)
    print_job_summary(summary)
    return EXIT_ERROR if summary["failed"] else 0


def _batch_status(args):
    """``--status OUT``: the journal's summary; exit 1 unless every item is done."""
    import json

    if args.inputs or args.output is not None:
        raise CliError("--status OUT takes no SOURCES and no -o")
    try:
        s = status(args.status)
    except JobError as e:
        raise CliError(str(e)) from None
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(f"{s['journal']}: {s['items']} items, {s['runs']} runs", file=sys.stderr)
        print_job_summary(s)
    return 0 if s["done"] == s["items"] else EXIT_ERROR


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
    p.add_argument("--format", choices=audio.WRITE_FORMATS, default="wav")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
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
    p.set_defaults(func=cmd_batch, mask_mode=None)  # None: the preset's, else soft


def cmd_models(args):
    for name, path in bundled_models().items():
        m = model_info(path)
        latency = m["latency_samples"] / m["sample_rate"] * 1000
        default = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name:10s} stems={','.join(m['stems'])}  latency={latency:.1f} ms  "
              f"stereo={m['stereo']}  {m['description']}{default}")
    return 0


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
    add_buffer_size(p)
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary (inputs, outputs, model, durations, seconds, "
                        "real-time factor) instead of the output paths")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


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
    p.add_argument("--format", choices=audio.WRITE_FORMATS, default="wav")
    _common(p, filename=SEPARATE_FILENAME)
    p.set_defaults(func=cmd_separate)

    p = sub.add_parser("remix", help="change stem levels and write one mix per input")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders or globs")
    p.add_argument("-o", "--output", required=True,
                   help="output file (one input) or folder (default name {track}.{ext})")
    p.add_argument("--gain", action="append", metavar="STEM=DB",
                   help="stem gain in dB, -120 to +24, or -inf to mute; repeatable")
    p.add_argument("--mix", type=float, default=1.0, help="dry/wet, 0..1 (default 1)")
    p.add_argument("--format", choices=audio.WRITE_FORMATS, default=None,
                   help="output format (default: -o's extension, or wav into a folder)")
    _common(p, filename=REMIX_FILENAME, when="-o is a folder")
    p.set_defaults(func=cmd_remix)

    _batch_parser(sub)

    p = sub.add_parser("models", help="list the bundled models")
    p.set_defaults(func=cmd_models)

    add_commands(sub)  # render, presets, ab
    return parser


def main(argv=None):
    parser = build_parser()
    try:
        args = _old_names(parser.parse_args(argv))
    except SystemExit as e:  # --help, --version, or a bad option (printed already)
        return e.code
    try:
        with stop_signals_raise():
            return args.func(args)
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
