"""DAW-workflow commands for the ``stemboard`` CLI: ``render``, ``presets``, ``ab``.

Their parsers are in :mod:`stemboard.cli` (which imports nothing heavy); these
are the bodies, ``cmd_*(args) -> int``, which :mod:`stemboard.cli_commands`
lists for ``main`` to dispatch to. Errors are raised (``CliError``,
``ValueError``, ``OSError``) for the main CLI to print as one line.
"""
import math
from pathlib import Path

import numpy as np
from pedalboard import Gain

from stemboard import __version__
from stemboard.batch import InputError, output_target, read_duration, report, run_batch
from stemboard.cli_common import RENDER_FILENAME, CliError
from stemboard.cli_inputs import (first_input_checked, input_paths, made_root, progress_for,
                                  refuse_collisions)
from stemboard.models import model_info
from stemboard.plugin import audio
from stemboard.plugin.ab import ABSwitch, integrated_lufs, matching_gains
from stemboard.plugin.midi import MidiController, MidiMap, midi_file_events
from stemboard.plugin.presets import separator_from_preset
from stemboard.plugin.naming import TemplateError, track_name
from stemboard.plugin.render import _make_parents, _remove_empty, _with_ext, render
from stemboard.plugin.separator import StemSeparator
from stemboard.plugin.stemsplit import StemSplit
from stemboard.presets import list_presets, load_preset, user_preset_dir

RENDER_FIELDS = ("track", "preset", "model", "ext")


def _bar(args, path, desc):
    sr, _, frames, _ = audio.read_info(path)
    bar = audio.progress_bar(frames / sr, desc, enabled=False if args.quiet else None)
    if bar is None:
        return None, None
    return bar, (lambda done, total: bar.update(done / sr - bar.n))


def _separator_for(preset, args, *, automated=False):
    kw = {} if args.threads is None else {"num_threads": args.threads}
    if automated:
        # Time-domain gains: automation lands on its exact sample.
        sep = StemSeparator(preset.resolved_model(args.model), mask_mode=preset.mask_mode, **kw)
        return preset.apply(StemSplit(separator=sep))
    return separator_from_preset(preset, args.model, **kw)


def cmd_render(args):
    if args.automation and not args.midi_map:
        raise CliError("--automation needs --midi-map to say what the MIDI messages control")
    if args.midi_map and not args.automation:
        raise CliError("--midi-map is only used with --automation FILE.mid")
    if args.b is not None and not args.automation:
        raise CliError("--b is only used with --automation FILE.mid (a MIDI map switches A/B)")
    if args.automation:
        _check_ab_sides(args)
    preset = load_preset(args.preset)
    inputs = input_paths(args)
    try:
        target, template = output_target(args.output, inputs, filename=args.filename,
                                         format=args.format, default=RENDER_FILENAME,
                                         available=RENDER_FIELDS)
    except (InputError, TemplateError) as e:
        raise CliError(str(e)) from None
    fmt = audio.output_format(target or "x.wav", args.format)
    try:
        audio.check_write_options(fmt, bit_depth=args.bit_depth, bitrate=args.bitrate)
    except audio.AudioError as e:
        raise CliError(f"--format {fmt}: {e}") from None
    first_input_checked(inputs)

    def make_processor():
        proc = _separator_for(preset, args, automated=bool(args.automation))
        if args.b is not None:
            proc = ABSwitch(proc, _separator_for(load_preset(args.b), args, automated=True))
        return proc

    unused = [make_processor()]
    if args.automation:
        _check_automation(args, unused[0])  # once, before any input: the same for all
    model = _model_name(preset, args.model)
    out = Path(args.output)

    def path_for(src):
        if target is not None:
            return target
        return _with_ext(template.path(out, track=track_name(src), preset=preset.name,
                                       model=model, ext=fmt), template, fmt)

    refuse_collisions((src, path_for(src)) for src in inputs)

    def job(path, outcome, progress):
        sr, frames = read_duration(path, outcome)
        dest = path_for(path)
        made = [] if target is not None else _make_parents([dest], made_root(out))
        # Automation leaves the gains, mix and A/B side where the file ended, which a
        # reset does not undo: each automated input starts from a fresh processor.
        proc = unused.pop() if unused else make_processor()
        if not args.automation:
            unused.append(proc)
        try:
            outcome.outputs = [render(path, dest, proc, buffer_size=args.buffer_size, format=fmt,
                                      bit_depth=args.bit_depth, bitrate=args.bitrate,
                                      progress=progress.start(path, sr, frames, "rendering"),
                                      automation=args.automation, midi_map=args.midi_map)]
        except BaseException:
            _remove_empty(made)
            raise

    outcomes = run_batch(inputs, job, progress=progress_for(args, len(inputs)))
    return report(outcomes, as_json=args.json, stemboard=__version__, command="render",
                  preset=preset.name, b=args.b, model=model)


def _model_name(preset, model):
    """The model's name for ``{model}``: the one side A (``--preset``) runs."""
    return model_info(preset.resolved_model(model))["name"]


def _check_automation(args, proc):
    """Read the MIDI file and bind the map to ``proc`` now, so a bad one fails once, up front."""
    midi_file_events(args.automation, 44100)
    MidiController(proc, args.midi_map)


def _check_ab_sides(args):
    """Refuse a map that switches A/B when there is no side B, saying how to give one.

    Without this the render fails on "needs an A/B switch, but the target
    (StemSplit) has none", which does not name the option that fixes it.
    """
    midi_map = MidiMap.load(args.midi_map)
    for i, m in enumerate(midi_map.mappings):
        if m.get("param") == "ab" and args.b is None:
            raise CliError(f"{args.midi_map}: mappings[{i}] switches A/B (param 'ab'); "
                         "give side B with --b PRESET (side A is --preset)")


def cmd_presets(args):
    presets = list_presets()
    width = max(map(len, presets), default=0)
    for name, desc in presets.items():
        print(f"{name:{width}s}  {desc}")
    print(f"(user presets: {user_preset_dir()})")
    return 0


def file_lufs(path):
    """Integrated loudness of an audio file (the whole file is read; BS.1770 needs it)."""
    sr, _, _, _ = audio.read_info(path)
    x = np.concatenate(list(audio.iter_blocks(path)), axis=1)
    return integrated_lufs(x, sr)


def cmd_ab(args):
    presets = [load_preset(args.a), load_preset(args.b)]
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(args.input).stem
    paths = [out_dir / f"{stem}.{side}-{preset.name}.{args.format}"
             for side, preset in zip("AB", presets)]
    for path in paths:
        audio.check_target(path)  # both, before either is rendered
    new = [path for path in paths if not path.exists()]
    try:
        _render_sides(args, presets, paths)
    except BaseException:
        # All or nothing: a failed B must not leave a lone A from this run.
        for path in new:
            path.unlink(missing_ok=True)
        raise
    return 0


def _render_sides(args, presets, paths):
    """Render both sides, measure them, and (unless --no-match) level-match them."""
    for side, preset, path in zip("AB", presets, paths):
        bar, cb = _bar(args, args.input, f"{side}: {preset.name}")
        try:
            render(args.input, path, _separator_for(preset, args),
                   buffer_size=args.buffer_size, bit_depth=args.bit_depth, progress=cb)
        finally:
            if bar is not None:
                bar.close()
    lufs = [file_lufs(p) for p in paths]
    gains = (0.0, 0.0) if args.no_match else matching_gains(*lufs)
    for side, preset, path, level, gain in zip("AB", presets, paths, lufs, gains):
        if gain != 0.0:
            # Rewritten atomically in place: read fully before the rename.
            render(path, path, [Gain(gain)], buffer_size=args.buffer_size,
                   bit_depth=args.bit_depth)
        shown = "-inf" if level == -math.inf else f"{level:.1f}"
        print(f"{side} {preset.name}: {shown} LUFS, gain {gain:+.1f} dB -> {path}")
