"""Scripted renders: files through any chain, streamed in blocks, written atomically.

Memory stays bounded by the buffer size: each file is read, processed with
``reset=False`` and written one block of ``buffer_size`` samples at a time, then the processor is
flushed so the output is exactly as long as the input and aligned with it.
Outputs appear under their name only when complete (see ``stemboard.plugin.audio``).
"""
import warnings
from pathlib import Path

import numpy as np

from stemboard.models.runtime import bundled_models, model_info
from stemboard.plugin import audio
from stemboard.plugin.base import DEFAULT_BUFFER_SIZE, Processor, check_sample_rate
from stemboard.plugin.chain import Chain, is_native
from stemboard.plugin.defaults import SEPARATION_BUFFER_SIZE
from stemboard.plugin.midi import MidiController, automate, midi_file_events
from stemboard.plugin.naming import NameTemplate, track_name
from stemboard.plugin.presets import separator_from_preset, stemsplit_from_preset
from stemboard.plugin.separator import StemSeparator
from stemboard.presets import Preset, load_preset

# pedalboard.io reads the first six everywhere; the rest go through ffmpeg when
# pedalboard cannot read them (see stemboard.plugin.decode).
READ_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".aiff", ".aif", ".m4a", ".aac", ".opus",
                 ".mp4", ".webm", ".wma")


def as_processor(obj, *, model=None, automated=False):
    """Turn what a script passes into something with the processor contract.

    Parameters
    ----------
    obj : processor, pedalboard plugin, list of plugins, Preset, or preset name
        A preset (name, path or ``Preset``) becomes its ``StemSeparator``; a
        native plugin or a list becomes a ``Chain``.
    model : str or Path, optional
        Overrides a preset's model.
    automated : bool
        Build presets as a ``StemSplit`` (time-domain gains), so MIDI
        automation lands on its exact sample instead of an STFT frame.
    """
    if isinstance(obj, (str, Path, Preset)):
        preset = load_preset(obj)
        if automated:
            return stemsplit_from_preset(preset, model=model)
        return separator_from_preset(preset, model)
    if isinstance(obj, Processor):
        return obj
    if is_native(obj):
        return Chain([obj])
    if isinstance(obj, (list, tuple)):
        return Chain(obj)
    raise TypeError(f"cannot render through {type(obj).__name__}; pass a processor, a "
                    "pedalboard plugin, a list of plugins, or a preset name")


def _output_path(out_path, format):
    out_path = Path(out_path)
    if format is not None:
        out_path = out_path.with_suffix("." + audio.output_format(out_path, format))
    audio.output_format(out_path)  # fail early, naming the path, for unknown formats
    return out_path


def _prime(processor, n_ch):
    # Sub-blocks split at MIDI events can be shorter than the channel count
    # (2 x 1); tell the processor our blocks are channels-first.
    if hasattr(processor, "expect_layout"):
        processor.expect_layout(n_ch)


def _buffer_size(buffer_size, block_size):
    """``buffer_size``, or the value of its deprecated old name ``block_size``."""
    if block_size is None:
        return buffer_size
    warnings.warn("block_size= is deprecated; use buffer_size=", DeprecationWarning,
                  stacklevel=3)
    return block_size


def render(in_path, out_path, processor, *, buffer_size=DEFAULT_BUFFER_SIZE, format=None,
           bit_depth=None, bitrate=None, progress=None, automation=None, midi_map=None,
           model=None, block_size=None):
    """Render one file through a processor (or chain, or preset) to another file.

    Parameters
    ----------
    in_path, out_path : str or Path
    processor : processor, pedalboard plugin, list, Preset or preset name
        See :func:`as_processor`. It is reset first and flushed at the end.
    buffer_size : int
        Samples per block read from disk, processed (the processor's
        ``buffer_size``) and written; bounds memory.
    block_size : int, optional
        Deprecated name of ``buffer_size``.
    format : str, optional
        ``"wav"``, ``"flac"``, ``"aiff"``, ``"ogg"`` or ``"mp3"``; replaces
        ``out_path``'s extension. By default the extension decides.
    bit_depth : int, optional
        PCM bit depth (wav 8/16/24/32-float, aiff 8/16/24, flac 16/24); by
        default one that keeps the input's precision.
    bitrate : int, optional
        kbit/s for mp3 and ogg (the encoder's default otherwise).
    progress : callable, optional
        ``progress(done_frames, total_frames)`` after each block.
    automation : str, Path or mido.MidiFile, optional
        A MIDI file whose messages drive the processor through ``midi_map``,
        applied at their exact sample positions (see ``stemboard.plugin.midi``).
    midi_map : str, Path, dict or MidiMap, optional
        Required with ``automation``.
    model : str or Path, optional
        Overrides a preset's model.

    Returns
    -------
    Path
        The file written.
    """
    buffer_size = _buffer_size(buffer_size, block_size)
    sr, n_ch, frames, dtype = audio.read_info(in_path)
    check_sample_rate(sr)  # before a model is loaded or anything is written
    out_path = _output_path(out_path, format)
    audio.check_write_options(audio.output_format(out_path), bit_depth=bit_depth,
                              bitrate=bitrate)
    if bit_depth is None:
        bit_depth = audio.default_bit_depth(dtype, audio.output_format(out_path))
    processor = as_processor(processor, model=model, automated=automation is not None)
    if automation is not None and midi_map is None:
        raise ValueError("automation needs a midi_map that says what the messages control")
    processor.reset()
    _prime(processor, n_ch)
    blocks = audio.iter_blocks(in_path, buffer_size)
    if automation is not None:
        controller = MidiController(processor, midi_map)
        pieces = automate(processor, blocks, sr, midi_file_events(automation, sr), controller,
                          buffer_size=buffer_size)
    else:
        pieces = _plain(processor, blocks, sr, buffer_size)
    done = 0
    with audio.AtomicWriter(out_path, sr, n_ch, bit_depth=bit_depth, bitrate=bitrate) as w:
        for y, consumed in pieces:
            w.write(np.asarray(y, np.float32).reshape(n_ch, -1))
            done += consumed
            if progress is not None and consumed:
                progress(done, frames)
    return out_path


def _plain(processor, blocks, sr, buffer_size):
    for block in blocks:
        yield processor.process(block, sr, buffer_size=buffer_size, reset=False), block.shape[1]
    yield processor.flush(), 0


def render_stems(in_path, out_dir, separator=None, *, stems=None, two_stems=None,
                 buffer_size=SEPARATION_BUFFER_SIZE, format="wav", bit_depth=None, bitrate=None,
                 progress=None, model=None, name_template=None, block_size=None):
    """Write one file per stem, all published together (or none on failure).

    Every target is checked before anything is written (a folder under a
    stem's name is refused up front), and if publishing fails part-way the
    files already published are removed or restored (see
    :class:`stemboard.plugin.audio.WriterGroup`). Subfolders the template made are
    removed again when nothing was published in them.

    Parameters
    ----------
    in_path : str or Path
    out_dir : str or Path
        Created if missing.
    separator : StemSeparator, optional
        A new one from ``model`` by default.
    stems : list of str, optional
        Which stems (all by default).
    two_stems : str, optional
        Write this stem and ``no_<stem>``, the sum of all the others, instead
        (Demucs's ``--two-stems``): the two add up to the input.
    format, bit_depth, bitrate, buffer_size, progress, block_size
        As in :func:`render`; ``buffer_size`` defaults to
        :data:`~stemboard.plugin.defaults.SEPARATION_BUFFER_SIZE` (65536), where a
        separation's fixed cost per block is spread thin.
    name_template : str or NameTemplate, optional
        Output path under ``out_dir``, with the fields ``{stem}`` (required),
        ``{track}`` (the input's name, also ``{input}``), ``{model}`` and
        ``{ext}``; default ``"{stem}"``. Without ``{ext}`` the extension is
        added. May name subfolders (``"{track}/{stem}.{ext}"``).

    Returns
    -------
    dict of str to Path
    """
    buffer_size = _buffer_size(buffer_size, block_size)
    template = stems_template(name_template)  # a bad template fails before any reading
    fmt = audio.output_format(f"x.{format}")
    audio.check_write_options(fmt, bit_depth=bit_depth, bitrate=bitrate)
    sr, n_ch, frames, dtype = audio.read_info(in_path)
    check_sample_rate(sr)
    if isinstance(separator, (str, Path, Preset)):
        separator = separator_from_preset(separator, model)  # its model; gains unused
    sep = separator if separator is not None else StemSeparator(model)
    if not isinstance(sep, StemSeparator):
        raise TypeError(f"render_stems needs a StemSeparator, got {type(sep).__name__}")
    groups = stem_groups(sep.stems, stems=stems, two_stems=two_stems)
    if bit_depth is None:
        bit_depth = audio.default_bit_depth(dtype, fmt)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise audio.AudioError(f"{out_dir}: cannot create the output folder "
                               f"({e.strerror or e})") from None
    track = track_name(in_path)
    paths = {name: _with_ext(template.path(out_dir, stem=name, track=track, input=track,
                                           model=sep.model.name, ext=fmt), template, fmt)
             for name in groups}
    made = _make_parents(paths.values(), out_dir)
    try:
        _write_groups(in_path, sep, groups, paths, sr=sr, n_ch=n_ch, frames=frames,
                      bit_depth=bit_depth, bitrate=bitrate, buffer_size=buffer_size,
                      progress=progress)
    except BaseException:
        _remove_empty(made)
        raise
    return paths


def stems_template(name_template):
    """A :class:`~stemboard.plugin.naming.NameTemplate` for per-stem outputs (default
    ``{stem}``)."""
    if isinstance(name_template, NameTemplate):
        return name_template
    return NameTemplate(name_template or "{stem}", available=STEM_FIELDS, required=("stem",),
                        option="name_template")


# {input} is the name render_stems' template used before {track}; it still works.
STEM_FIELDS = ("track", "stem", "ext", "model", "input")


def stem_groups(model_stems, *, stems=None, two_stems=None):
    """Which model stems each output sums: ``{output name: [model stems]}``.

    Parameters
    ----------
    model_stems : sequence of str
    stems : list of str, optional
        One output per stem named (all by default).
    two_stems : str, optional
        ``{two_stems: [two_stems], "no_" + two_stems: [every other stem]}``.

    Raises
    ------
    ValueError
        For an unknown stem, or both options at once.
    """
    model_stems = list(model_stems)
    if two_stems is not None:
        if stems is not None:
            raise ValueError("choose stems or two_stems, not both")
        if two_stems not in model_stems:
            raise ValueError(f"two_stems {two_stems!r}: unknown stem; the model has "
                             f"{', '.join(model_stems)}")
        return {two_stems: [two_stems],
                f"no_{two_stems}": [s for s in model_stems if s != two_stems]}
    names = model_stems if stems is None else list(stems)
    unknown = [s for s in names if s not in model_stems]
    if unknown:
        raise ValueError(f"unknown stem(s) {', '.join(unknown)}; the model has "
                         f"{', '.join(model_stems)}")
    return {s: [s] for s in names}


def two_stem_model(stem, model=None):
    """The model ``--two-stems STEM`` separates with.

    The model asked for, if any; otherwise the default model's first stage when
    the default is a cascade that starts with a 2-stem model having ``stem``
    (``hq-vocals-ft`` for vocals), else any bundled 2-stem model that has it
    (its other stem is then the complement); otherwise None, the default model,
    whose other stems are summed.
    """
    if model is not None:
        return model

    def two_stem(path):
        stems = model_info(path)["stems"]
        return len(stems) == 2 and stem in stems

    first = model_info(None).get("parts", (None,))[0]
    if first is not None and two_stem(first):
        return str(first)
    for name, path in bundled_models().items():
        if two_stem(path):
            return name
    return None


def _with_ext(path, template, fmt):
    return path if "ext" in template.fields else path.with_name(f"{path.name}.{fmt}")


def _make_parents(paths, root):
    """Create the missing folders between ``root`` and each path; return them, outermost first."""
    made = []
    for path in paths:
        missing = [p for p in reversed(path.parents) if p != root and root in p.parents
                   and not p.exists()]
        for folder in missing:
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            except OSError as e:
                _remove_empty(made)
                raise audio.AudioError(f"{folder}: cannot create the output folder "
                                       f"({e.strerror or e})") from None
            made.append(folder)
    return made


def _remove_empty(folders):
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            pass  # holds something now (not ours to remove)


def _write_groups(in_path, sep, groups, paths, *, sr, n_ch, frames, bit_depth, bitrate,
                  buffer_size, progress):
    """Stream ``in_path`` through ``sep`` and write each output group, all or none."""
    needed = list(dict.fromkeys(s for members in groups.values() for s in members))
    writers = {name: audio.AtomicWriter(paths[name], sr, n_ch, bit_depth=bit_depth,
                                        bitrate=bitrate) for name in groups}

    def write(out):
        for name, members in groups.items():
            y = out[members[0]]
            for s in members[1:]:
                y = y + out[s]
            writers[name].write(y)

    sep.reset()
    _prime(sep, n_ch)
    done = 0
    with audio.WriterGroup(writers.values()):
        for block in audio.iter_blocks(in_path, buffer_size):
            write(sep.separate(block, sr, stems=needed, buffer_size=buffer_size, reset=False))
            done += block.shape[1]
            if progress is not None:
                progress(done, frames)
        write(sep.flush_stems())


def audio_files(folder, suffixes=READ_SUFFIXES):
    """The audio files directly inside ``folder``, sorted by name (hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."))


def render_folder(in_dir, out_dir, processor, *, suffix="", format=None, stems=False,
                  progress=None, model=None, **kwargs):
    """Render every audio file of a folder through one processor (or preset).

    Parameters
    ----------
    in_dir, out_dir : str or Path
        ``out_dir`` is created if missing.
    processor : processor, plugin, list, Preset or preset name
        Reset before each file. For ``stems=True``, a ``StemSeparator``, a
        preset (for its model) or ``None``.
    suffix : str
        Appended to each output's name, e.g. ``"-karaoke"``.
    format : str, optional
        Output format; by default the input's when writable, else wav.
    stems : bool
        Write one folder of stems per input (``out_dir/NAME/STEM.ext``)
        instead of one mix.
    progress : callable, optional
        ``progress(in_path, done_frames, total_frames)``.
    **kwargs
        ``buffer_size``, ``bit_depth``, ``automation``, ``midi_map``.

    Returns
    -------
    list
        The paths written (a dict per input when ``stems=True``).
    """
    files = audio_files(in_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not stems:
        processor = as_processor(processor, model=model)
    written = []
    for f in files:
        fmt = format or (f.suffix.lstrip(".").lower() if f.suffix.lower().lstrip(".")
                         in audio.WRITE_FORMATS else "wav")
        cb = None if progress is None else (lambda d, t, f=f: progress(f, d, t))
        if stems:
            written.append(render_stems(f, out_dir / f"{f.stem}{suffix}", processor,
                                        format=fmt, progress=cb, model=model, **kwargs))
        else:
            written.append(render(f, out_dir / f"{f.stem}{suffix}.{fmt}", processor,
                                  progress=cb, **kwargs))
    return written


__all__ = ["render", "render_stems", "render_folder", "as_processor", "audio_files"]
