"""``ABSwitch``: compare two presets or chains with a click-free switch.

Both sides run all the time, so either one is ready the moment it is chosen,
and their outputs are aligned like pedalboard's ``Mix`` (the faster side is
delayed). A switch is an equal-power crossfade (``cos``/``sin`` of a linear
ramp) over ``crossfade_ms``: no step appears in the output, and two
uncorrelated sides keep a constant power through the fade.

Loudness matching (ITU-R BS.1770 integrated loudness, via ``pyloudnorm``)
measures each side on the same input and attenuates the louder side to the
quieter one's loudness, so the comparison is not won by level and nothing
is boosted into clipping.
"""
import math
from pathlib import Path

import numpy as np

from stemboard.dsp.gains import check_gain_db, db_to_gain
from stemboard.plugin.base import DEFAULT_BUFFER_SIZE, StreamedProcessor
from stemboard.plugin.chain import flat_parts
from stemboard.plugin.presets import separator_from_preset
from stemboard.plugin.stemsplit import LaneAligner, ScheduledValue, as_branch
from stemboard.presets import Preset, load_preset

SIDES = ("a", "b")


def _side(obj, name, model):
    if isinstance(obj, (str, Path, Preset)):
        preset = load_preset(obj)
        return preset.name, separator_from_preset(preset, model)
    label = getattr(obj, "name", None) or type(obj).__name__
    return label, as_branch(name, obj)


def has_stem_gains(obj):
    """Whether ``obj`` has per-stem gains and a mix (``StemSeparator``, ``StemSplit``)."""
    return all(hasattr(obj, a) for a in ("stems", "set_gain", "mix"))


def integrated_lufs(x, sample_rate):
    """Integrated loudness (LUFS, ITU-R BS.1770-4) of (channels, samples) audio.

    Returns ``-inf`` for silence. Needs at least 0.4 s of audio (one gating block).
    """
    import pyloudnorm

    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.shape[1] < int(0.4 * sample_rate):
        raise ValueError(f"loudness needs at least 0.4 s of audio, got {x.shape[1]} samples")
    with np.errstate(divide="ignore"):
        return float(pyloudnorm.Meter(sample_rate).integrated_loudness(x.T))


def matching_gains(lufs_a, lufs_b):
    """dB gains (a, b) that bring both to the quieter loudness; 0 dB for silent sides."""
    finite = [v for v in (lufs_a, lufs_b) if math.isfinite(v)]
    if len(finite) < 2:
        return 0.0, 0.0
    target = min(finite)
    return target - lufs_a, target - lufs_b


class ABSwitch(StreamedProcessor):
    """Hold two presets or chains and switch between them without clicks.

    Parameters
    ----------
    a, b : preset name, Preset, processor, pedalboard plugin, list, Chain or None
        Presets become ``StemSeparator`` instances (with ``model``); ``None``
        is the untouched input.
    model : str or Path, optional
        Model for preset sides (overrides the presets' own).
    crossfade_ms : float
        Length of the equal-power crossfade.
    selected : {"a", "b"}
    gains_db : tuple of float
        Level trim per side in dB, e.g. from :meth:`match_loudness`: -120 to
        +24 dB or ``-inf`` (``stemboard.dsp.gains``).

    Notes
    -----
    Latency is the larger side's; the other side is delayed to match. A switch
    requested between ``reset=False`` blocks starts at the next input sample;
    one made before a stream's first block applies from its first sample.
    """

    def __init__(self, a, b, *, model=None, crossfade_ms=10.0, selected="a",
                 gains_db=(0.0, 0.0)):
        super().__init__()
        if a is not None and a is b:
            raise ValueError("a and b must be different instances")
        crossfade_ms = float(crossfade_ms)
        if not crossfade_ms >= 0:
            raise ValueError(f"crossfade_ms must be >= 0, got {crossfade_ms}")
        (self.label_a, self.side_a), (self.label_b, self.side_b) = (
            _side(a, "a", model), _side(b, "b", model))
        self.crossfade_ms = crossfade_ms
        self._in_pos = 0
        self._pos = ScheduledValue(0.0, 0)  # 0 = A, 1 = B
        self._trims = [ScheduledValue(1.0, 0), ScheduledValue(1.0, 0)]
        self._aligner = LaneAligner(2)
        self.select(selected)
        self.gains_db = gains_db

    # -- switching -----------------------------------------------------------------
    @property
    def sides(self):
        return self.side_a, self.side_b

    @property
    def selected(self):
        """``"a"`` or ``"b"`` (where the switch is going, if a fade is running)."""
        return "b" if self._pos.target >= 0.5 else "a"

    def _schedule(self, param, value):
        if self._in_pos == 0:
            param.set_now(value)
        else:
            param.schedule(value, self._in_pos)

    def select(self, side):
        """Switch to ``"a"`` or ``"b"`` from the next input sample."""
        side = str(side).lower()
        if side not in SIDES:
            raise ValueError(f"side must be 'a' or 'b', got {side!r}")
        self._schedule(self._pos, 1.0 if side == "b" else 0.0)

    def toggle(self):
        self.select("a" if self.selected == "b" else "b")

    # -- the stem controls of a side -------------------------------------------------
    def stem_controls(self, side=None):
        """The processor holding a side's stem gains and mix.

        Parameters
        ----------
        side : {"a", "b"}, optional
            Default: the selected side, so edits go to the version being heard
            (like the A/B slots of a plugin).

        Returns
        -------
        StemSeparator or StemSplit
            The side itself, or the one part of its chain with ``stems``,
            ``set_gain`` and ``mix``.

        Raises
        ------
        ValueError
            When the side has no such part, or more than one (so which to edit
            is ambiguous), naming the side.
        """
        side = self.selected if side is None else str(side).lower()
        if side not in SIDES:
            raise ValueError(f"side must be 'a' or 'b', got {side!r}")
        chain = self.side_a if side == "a" else self.side_b
        label = self.label_a if side == "a" else self.label_b
        found = [] if chain is None else [p for p in flat_parts(chain) if has_stem_gains(p)]
        if len(found) != 1:
            what = "no part" if not found else f"{len(found)} parts"
            raise ValueError(f"A/B side {side!r} ({label}) has {what} with stem gains; "
                             "stem controls need exactly one StemSeparator or StemSplit "
                             "per side")
        return found[0]

    @property
    def gains_db(self):
        """Level trims (a, b) in dB."""
        return tuple(20 * math.log10(t.target) if t.target > 0 else -math.inf
                     for t in self._trims)

    @gains_db.setter
    def gains_db(self, value):
        if len(value) != 2:
            raise ValueError(f"gains_db must be two dB values (a, b), got {value!r}")
        dbs = [check_gain_db(v, what=f"gains_db[{side!r}]") for side, v in zip(SIDES, value)]
        # Both are checked before either changes, so a bad pair leaves both trims as they were.
        for t, db in zip(self._trims, dbs):
            self._schedule(t, db_to_gain(db))

    def match_loudness(self, x, sample_rate, *, buffer_size=DEFAULT_BUFFER_SIZE):
        """Measure both sides on ``x`` and set trims so they are equally loud.

        Parameters
        ----------
        x : ndarray, shape (samples,) or (channels, samples)
            At least 0.4 s.
        sample_rate : float

        Returns
        -------
        dict
            ``{"a": (lufs, gain_db), "b": (lufs, gain_db)}``, loudness before
            the trim.
        """
        x = np.asarray(x, np.float32)
        x = x[None] if x.ndim == 1 else x
        lufs = []
        for side in self.sides:
            y = x if side is None else side.process(x, sample_rate, buffer_size=buffer_size)
            lufs.append(integrated_lufs(y, sample_rate))
        gains = matching_gains(*lufs)
        self.gains_db = gains
        return {"a": (lufs[0], gains[0]), "b": (lufs[1], gains[1])}

    # -- processing ------------------------------------------------------------------
    @property
    def latency_samples(self):
        return max(0 if s is None else s.latency_samples for s in self.sides)

    def _run_side(self, side, x, sample_rate, buffer_size):
        if side is None:
            return x
        return side.process_channels_first(x, sample_rate, buffer_size, False)

    def _push(self, x, sample_rate, buffer_size):
        if self._in_pos == 0:
            ramp = int(round(self.crossfade_ms * 1e-3 * sample_rate))
            for p in [self._pos] + self._trims:
                p.ramp = ramp
        self._in_pos += x.shape[1]
        for i, side in enumerate(self.sides):
            self._aligner.push(i, self._run_side(side, x, sample_rate, buffer_size))

    def _emit(self, n_ch, n=None):
        n = self._aligner.available() if n is None else n
        a, b = self._aligner.pop(n, n_ch)
        theta = self._pos.render(n) * (np.pi / 2)
        ga = (np.cos(theta) * self._trims[0].render(n)).astype(np.float32)
        gb = (np.sin(theta) * self._trims[1].render(n)).astype(np.float32)
        # cos(pi/2) is 6e-17, not 0: zero it so a settled side is truly silent.
        ga[theta >= np.pi / 2] = 0.0
        return ga * a + gb * b

    def _drain(self):
        for i, side in enumerate(self.sides):
            if side is not None:
                self._aligner.push(i, side.flush_channels_first())

    def _samples_emitted(self):
        return self._pos._pos

    def _reset(self):
        for s in self.sides:
            if s is not None:
                s.reset()
        self._in_pos = 0
        self._aligner.reset()
        for p in [self._pos] + self._trims:
            p.restart()

    def __repr__(self):
        return (f"ABSwitch(a={self.label_a!r}, b={self.label_b!r}, "
                f"selected={self.selected!r}, crossfade_ms={self.crossfade_ms})")
