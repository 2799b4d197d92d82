"""The bodies of the ``stemboard`` commands: separate, remix, batch, models, and the
table ``stemboard.cli.main`` dispatches through.

:mod:`stemboard.cli` builds the parser and imports this module only once a
command has been parsed, so ``stemboard --help`` and a bad option do not load
numpy, the Numba kernels, onnxruntime or pedalboard (issue 25 item 5). The
render, presets and ab bodies are in :mod:`stemboard.cli_daw`.
"""
import math
import sys
from pathlib import Path

from stemboard import __version__
from stemboard.batch import InputError, print_job_summary, read_duration, report, run, run_batch
from stemboard.cli_common import (DEVICES, EXIT_ERROR, REMIX_FILENAME, SEPARATE_FILENAME,
                                  CliError)
from stemboard.cli_daw import cmd_ab, cmd_presets, cmd_render
from stemboard.cli_inputs import (first_input_checked, input_paths, made_root, progress_for,
                                  refuse_collisions)
from stemboard.dsp.gains import check_gain_db
from stemboard.jobs import JobError, status
from stemboard.models import DEFAULT_MODEL, bundled_models, model_info
from stemboard.plugin import StemSeparator, audio
from stemboard.plugin.naming import NameTemplate, TemplateError, track_name
from stemboard.plugin.render import (_make_parents, _remove_empty, _with_ext, render, render_stems,
                                     stem_groups, two_stem_model)


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


def _check_format(args, fmt):
    try:
        audio.check_write_options(fmt, bit_depth=args.bit_depth,
                                  bitrate=getattr(args, "bitrate", None))
    except audio.AudioError as e:
        raise CliError(f"--format {fmt}: {e}") from None


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
        # Without {ext} the extension is appended, not swapped in: "a.b" stays "a.b.wav".
        return _with_ext(template.path(out, track=track_name(src), ext=fmt,
                                       model=sep.model.name), template, fmt)

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
                      bit_depth=args.bit_depth, bitrate=args.bitrate, filename=args.filename,
                      mask_mode=args.mask_mode,
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


def cmd_models(args):
    for name, path in bundled_models().items():
        m = model_info(path)
        latency = m["latency_samples"] / m["sample_rate"] * 1000
        default = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name:10s} stems={','.join(m['stems'])}  latency={latency:.1f} ms  "
              f"stereo={m['stereo']}  {m['description']}{default}")
    return 0



# Each command's name (the parser's `command`) -> its body, called with the parsed
# arguments; it returns the exit status or raises for main() to print as one line.
COMMANDS = {"separate": cmd_separate, "remix": cmd_remix, "batch": cmd_batch,
            "models": cmd_models, "render": cmd_render, "presets": cmd_presets, "ab": cmd_ab}
