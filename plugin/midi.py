"""MIDI control with mido: a JSON map from messages to actions, offline
automation from MIDI files at exact sample positions, and live input.

A MIDI map (JSON)::

    {"version": 1,
     "channel": null,
     "mappings": [
       {"cc": 20, "param": "gain:vocals", "min": -60, "max": 6},
       {"cc": 21, "param": "mix", "min": 0, "max": 1},
       {"cc": 64, "param": "ab"},
       {"note": 60, "param": "ab", "action": "toggle"},
       {"program": 0, "preset": "karaoke"}
     ]}

* ``cc`` maps value 0..127 linearly onto ``min``..``max``. For
  ``gain:STEM`` (dB, both bounds from -120 to +24), value 0 mutes unless
  ``"zero_mutes": false``. For
  ``ab``, values >= 64 select B and lower values A.
* ``note`` (note_on with velocity > 0) drives the A/B switch:
  ``"action"`` is ``"toggle"`` (default), ``"a"`` or ``"b"``.
* ``program`` applies a preset's stem gains and mix (not its model: the
  model cannot change in the middle of a stream).
* ``channel`` (0-15), at the top or per mapping, restricts to one channel.

One map can drive an A/B switch and stem gains together: on an ``ABSwitch``
whose sides each hold one ``StemSeparator`` or ``StemSplit`` (presets do),
``ab`` switches and gains, mix and program changes edit the side selected at
that moment, like the A/B slots of a plugin. A ``Chain`` target routes each
mapping to its one part that can take it. :class:`MidiController` checks all
of this, and every stem and preset named, before the first message.

Effects get no MIDI from pedalboard, so our code applies these actions
between blocks. Offline, :func:`automate` splits blocks at each event's sample
so a change lands on its exact sample; on a ``StemSplit`` or ``ABSwitch`` the
change then starts at that sample, with their short de-click ramp. (On a plain
``StemSeparator``, gains act per STFT frame, so changes are smeared over one
window.)
"""
import json
import math
import queue
from pathlib import Path

import mido

from stemboard.dsp.gains import check_gain_db
from stemboard.models.versioning import check_version
from stemboard.plugin.ab import has_stem_gains
from stemboard.plugin.base import DEFAULT_BUFFER_SIZE
from stemboard.plugin.chain import flat_parts
from stemboard.presets import load_preset

MAP_VERSION = 1
_MAPPING_KEYS = {"cc", "note", "program", "param", "preset", "min", "max", "action",
                 "zero_mutes", "channel"}


class MidiMapError(ValueError):
    """A MIDI map that cannot be read or validated."""


def _int_in(value, lo, hi, where):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise MidiMapError(f"{where} must be an integer from {lo} to {hi}, got {value!r}")
    return value


class MidiMap:
    """A validated list of MIDI mappings (see the module docstring).

    Parameters
    ----------
    mappings : list of dict
    channel : int, optional
        Only messages on this channel (0-15) are used.
    """

    def __init__(self, mappings, *, channel=None, source="midi map"):
        if channel is not None:
            _int_in(channel, 0, 15, f"{source}: 'channel'")
        if not isinstance(mappings, list):
            raise MidiMapError(f"{source}: 'mappings' must be a list, got {mappings!r}")
        self.channel = channel
        self.mappings = [self._check(m, f"{source}: mappings[{i}]")
                         for i, m in enumerate(mappings)]

    @staticmethod
    def _check(m, where):
        if not isinstance(m, dict):
            raise MidiMapError(f"{where} must be an object, got {m!r}")
        for key in m:
            if key not in _MAPPING_KEYS:
                raise MidiMapError(f"{where}: unknown key {key!r}; allowed: "
                                   f"{', '.join(sorted(_MAPPING_KEYS))}")
        kinds = [k for k in ("cc", "note", "program") if k in m]
        if len(kinds) != 1:
            raise MidiMapError(f"{where} needs exactly one of 'cc', 'note', 'program'")
        kind = kinds[0]
        m = dict(m, kind=kind, number=_int_in(m[kind], 0, 127, f"{where}: {kind!r}"))
        if "channel" in m:
            _int_in(m["channel"], 0, 15, f"{where}: 'channel'")
        if kind == "program":
            if not isinstance(m.get("preset"), str):
                raise MidiMapError(f"{where}: a program mapping needs 'preset' (a preset name)")
            return m
        param = m.get("param")
        if not isinstance(param, str):
            raise MidiMapError(f"{where}: missing 'param' (\"gain:STEM\", \"mix\" or \"ab\")")
        if kind == "note" and param != "ab":
            raise MidiMapError(f"{where}: notes can only drive 'ab', got param {param!r}")
        if param == "ab":
            action = m.setdefault("action", "toggle" if kind == "note" else "value")
            if action not in ("toggle", "a", "b", "value"):
                raise MidiMapError(f"{where}: 'action' must be 'toggle', 'a' or 'b', "
                                   f"got {action!r}")
        elif param == "mix":
            m.setdefault("min", 0.0)
            m.setdefault("max", 1.0)
            for k in ("min", "max"):
                if isinstance(m[k], bool) or not isinstance(m[k], (int, float)) \
                        or not 0 <= m[k] <= 1:
                    raise MidiMapError(f"{where}: {k!r} for mix must be from 0 to 1, "
                                       f"got {m[k]!r}")
        elif param.startswith("gain:") and param[5:]:
            m.setdefault("min", -60.0)
            m.setdefault("max", 0.0)
            m.setdefault("zero_mutes", True)
            for k in ("min", "max"):
                v = m[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise MidiMapError(f"{where}: {k!r} must be a finite number of dB, got {v!r}")
                # Every CC value maps between min and max, so checking both bounds the gains.
                check_gain_db(v, what=f"{where}: {k!r}", error=MidiMapError)
        else:
            raise MidiMapError(f"{where}: unknown param {param!r}; use \"gain:STEM\", "
                               "\"mix\" or \"ab\"")
        return m

    @classmethod
    def from_dict(cls, data, *, source="midi map"):
        if not isinstance(data, dict):
            raise MidiMapError(f"{source}: a MIDI map must be a JSON object")
        for key in data:
            if key not in ("version", "channel", "mappings"):
                raise MidiMapError(f"{source}: unknown key {key!r}; allowed: version, "
                                   "channel, mappings")
        check_version(data.get("version", 1), MAP_VERSION, what="MIDI map", source=source,
                      error=MidiMapError)
        return cls(data.get("mappings", []), channel=data.get("channel"), source=source)

    @classmethod
    def load(cls, path_or_map):
        """A ``MidiMap`` from a JSON path, a dict, or a ``MidiMap`` (returned as is)."""
        if isinstance(path_or_map, cls):
            return path_or_map
        if isinstance(path_or_map, dict):
            return cls.from_dict(path_or_map)
        path = Path(path_or_map)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise MidiMapError(f"{path}: cannot read MIDI map ({e.strerror or e})") from None
        except UnicodeDecodeError as e:
            raise MidiMapError(f"{path}: not a UTF-8 text file (byte {e.object[e.start]:#04x} "
                               f"at offset {e.start}); a MIDI map is a JSON file") from None
        except json.JSONDecodeError as e:
            raise MidiMapError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
        return cls.from_dict(data, source=str(path))

    def matches(self, msg):
        """The mappings ``msg`` triggers, with the value each one carries."""
        channel = getattr(msg, "channel", None)
        if self.channel is not None and channel != self.channel:
            return []
        out = []
        for m in self.mappings:
            if "channel" in m and channel != m["channel"]:
                continue
            kind = m["kind"]
            if kind == "cc" and msg.type == "control_change" and msg.control == m["number"]:
                out.append((m, msg.value))
            elif kind == "note" and msg.type == "note_on" and msg.velocity > 0 \
                    and msg.note == m["number"]:
                out.append((m, msg.velocity))
            elif kind == "program" and msg.type == "program_change" \
                    and msg.program == m["number"]:
                out.append((m, msg.program))
        return out


def _is_switch(obj):
    return hasattr(obj, "toggle") and hasattr(obj, "select")


def _is_stem_target(obj):
    # An A/B switch counts when both its sides have stem controls to hand over.
    if has_stem_gains(obj):
        return True
    try:
        obj.stem_controls("a"), obj.stem_controls("b")
    except (AttributeError, ValueError):
        return False
    return True


def _find_part(target, wanted, what, where):
    """The one part of ``target`` (itself, or a part of a Chain) that ``wanted`` accepts."""
    if wanted(target):
        return target
    found = [p for p in flat_parts(target) if wanted(p)]
    if len(found) == 1:
        return found[0]
    name = type(target).__name__
    if not found:
        raise MidiMapError(f"{where} needs {what}, but the target ({name}) has none")
    names = ", ".join(type(p).__name__ for p in found)
    raise MidiMapError(f"{where} needs {what}, and the target ({name}) has {len(found)} "
                       f"({names}); a map drives one, so give each its own MidiController")


def _stem_sets(part, where):
    """The stem controls ``part`` edits, as a list (both sides of an A/B switch)."""
    if has_stem_gains(part):
        return [part]
    try:
        return [part.stem_controls(side) for side in ("a", "b")]
    except ValueError as e:
        raise MidiMapError(f"{where}: {e}") from None


class MidiController:
    """Apply MIDI messages to a processor through a :class:`MidiMap`.

    Parameters
    ----------
    target : StemSplit, StemSeparator, ABSwitch or Chain
        Gains and mix go to ``set_gain``/``mix``; ``ab`` goes to
        ``select``/``toggle``; presets go to ``Preset.apply``. On an
        ``ABSwitch`` whose sides each hold one ``StemSeparator`` or
        ``StemSplit``, gains, mix and presets edit the side that is selected
        when the message arrives (like a plugin's A/B slots), so one map both
        switches and mixes. On a ``Chain``, each mapping goes to the one part
        (nested chains included) that has what it drives. What the target
        lacks is refused up front.
    midi_map : MidiMap, dict, str or Path

    Raises
    ------
    MidiMapError
        When the map drives something the target lacks or has twice (naming
        the mapping), or names an unknown stem or preset.
    """

    def __init__(self, target, midi_map):
        self.target = target
        self.map = MidiMap.load(midi_map)
        self._presets = {}
        self._switch = self._stem_target = None
        for i, m in enumerate(self.map.mappings):
            self._bind(m, f"MIDI map mappings[{i}]")
        self.handled = 0

    def _bind(self, m, where):
        """Check one mapping against the target and find the part it drives."""
        if m.get("param") == "ab":
            self._switch = _find_part(self.target, _is_switch, "an A/B switch (param 'ab')",
                                      where)
            return
        if hasattr(self.target, "stem_controls"):
            part = self.target  # a switch: _stem_sets says which side lacks controls
        else:
            part = _find_part(self.target, _is_stem_target, "stem gains and a mix", where)
        controls = _stem_sets(part, where)
        # A switch's controls are looked up per message: they follow the selected side.
        self._stem_target = (lambda: part) if has_stem_gains(part) else part.stem_controls
        if m["kind"] == "program":
            try:
                preset = self._presets[m["preset"]] = load_preset(m["preset"])
            except ValueError as e:
                raise MidiMapError(f"{where}: {e}") from None
            stems = list(preset.solo) + list(preset.gains_db)
        else:
            stems = [m["param"][5:]] if m["param"].startswith("gain:") else []
        for c in controls:
            for stem in stems:
                if stem not in c.stems:
                    raise MidiMapError(f"{where}: unknown stem {stem!r}; the target has "
                                       f"{list(c.stems)}")

    def handle(self, msg):
        """Apply one message (meta messages and unmapped ones are ignored)."""
        if msg.is_meta:
            return
        for m, value in self.map.matches(msg):
            self._apply(m, value)
            self.handled += 1

    def _apply(self, m, value):
        if m["kind"] == "program":
            self._presets[m["preset"]].apply(self._stem_target())
            return
        param = m["param"]
        if param == "ab":
            action = m["action"]
            if action == "toggle":
                self._switch.toggle()
            elif action == "value":
                self._switch.select("b" if value >= 64 else "a")
            else:
                self._switch.select(action)
        elif param == "mix":
            self._stem_target().mix = m["min"] + (m["max"] - m["min"]) * value / 127.0
        else:
            db = m["min"] + (m["max"] - m["min"]) * value / 127.0
            if value == 0 and m["zero_mutes"]:
                db = -math.inf
            # set_gain re-checks the range (stemboard.dsp.gains), as for any other caller.
            self._stem_target().set_gain(param[5:], db)


# -- offline automation ----------------------------------------------------------
def midi_file_events(midi_file, sample_rate):
    """The channel messages of a MIDI file with their sample positions.

    Parameters
    ----------
    midi_file : str, Path or mido.MidiFile
        Type 0 or 1 (type 2 holds independent songs, so it has no single timeline).
    sample_rate : float

    Returns
    -------
    list of (int, mido.Message)
        Sorted by position; ``round(seconds * sample_rate)``, where seconds
        come from ``mido.tick2second`` with the file's ``ticks_per_beat`` and
        the tempo in force (``set_tempo`` changes included; 120 bpm before the
        first one).
    """
    mf = midi_file if isinstance(midi_file, mido.MidiFile) else _open_midi(midi_file)
    if mf.type == 2:
        raise ValueError(f"{mf.filename or 'MIDI file'}: type 2 MIDI files have no single "
                         "timeline; use type 0 or 1")
    tempo = 500000  # 120 bpm, the MIDI default
    seconds = 0.0
    events = []
    for msg in mido.merge_tracks(mf.tracks):
        # A message's delta is counted at the tempo in force before it.
        seconds += mido.tick2second(msg.time, mf.ticks_per_beat, tempo)
        if msg.type == "set_tempo":
            tempo = msg.tempo
        elif not msg.is_meta and msg.type != "sysex":
            events.append((int(round(seconds * sample_rate)), msg))
    return events


def _open_midi(path):
    try:
        return mido.MidiFile(str(path))
    except OSError as e:
        raise OSError(f"{path}: cannot read MIDI file ({e.strerror or e})") from None
    except (EOFError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: not a valid MIDI file ({e})") from None


def automate(processor, blocks, sample_rate, events, controller, *,
             buffer_size=DEFAULT_BUFFER_SIZE):
    """Stream blocks through ``processor``, applying events at their exact samples.

    Blocks are split at every event position, and the controller handles the
    event between the two pieces, so the change applies from that sample on.

    Parameters
    ----------
    processor : processor
        Fed with ``reset=False`` and flushed at the end (reset it first).
    blocks : iterable of ndarray, shape (channels, n)
    sample_rate : float
    events : list of (int, mido.Message)
        Sorted by sample position (as from :func:`midi_file_events`).
    controller : MidiController
    buffer_size : int
        Passed to every ``process`` call (the render's buffer size).

    Yields
    ------
    (ndarray, int)
        Output piece, shape (channels, m), and the input samples it consumed;
        the flush tail comes last with 0.

    Notes
    -----
    Events at or before sample 0 are applied before the first block (as
    settings, with no ramp); events past the end of the input are not applied.
    """
    pos, i = 0, 0
    for block in blocks:
        n = block.shape[1]
        start = 0
        while start < n:
            while i < len(events) and events[i][0] <= pos + start:
                controller.handle(events[i][1])
                i += 1
            end = n if i == len(events) else min(n, events[i][0] - pos)
            yield (processor.process(block[:, start:end], sample_rate, buffer_size=buffer_size,
                                    reset=False), end - start)
            start = end
        pos += n
    yield processor.flush(), 0


# -- live control -------------------------------------------------------------------
class LiveMidi:
    """Poll a MIDI source between streaming blocks and apply what arrived.

    Parameters
    ----------
    controller : MidiController
    port : mido input port, queue.Queue, or any object with ``iter_pending()``
        Tests and scripts can push ``mido.Message`` objects into a queue.
    """

    def __init__(self, controller, port):
        self.controller = controller
        self.port = port

    def pending(self):
        if isinstance(self.port, queue.Queue):
            while True:
                try:
                    yield self.port.get_nowait()
                except queue.Empty:
                    return
        else:
            yield from self.port.iter_pending()

    def poll(self):
        """Apply every message waiting now; return how many were read."""
        n = 0
        for msg in self.pending():
            self.controller.handle(msg)
            n += 1
        return n

    def stream(self, processor, blocks, sample_rate, *, flush=True):
        """Yield processed blocks, polling the port before each one."""
        for block in blocks:
            self.poll()
            yield processor.process(block, sample_rate, reset=False)
        if flush:
            yield processor.flush()


def open_input(name=None, *, virtual=False):
    """Open a mido input port (needs a backend: ``pip install stemboard[midi]``)."""
    try:
        return mido.open_input(name, virtual=virtual)
    except ImportError as e:
        raise OSError(f"no MIDI backend ({e}); install python-rtmidi: "
                      "pip install 'stemboard[midi]'") from None
    except (OSError, IOError) as e:
        names = ", ".join(mido.get_input_names()) or "none"
        raise OSError(f"cannot open MIDI input {name!r} ({e}); inputs: {names}") from None


def load_midi_map(path_or_map):
    """Load and validate a MIDI map (JSON path or dict)."""
    return MidiMap.load(path_or_map)


__all__ = ["MidiMap", "MidiMapError", "MidiController", "midi_file_events", "automate",
           "LiveMidi", "open_input", "load_midi_map"]
