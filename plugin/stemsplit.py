"""``StemSplit``: separate, run each stem through its own chain, and sum.

The separator's streaming stems (``StemSeparator.separate(..., reset=False)``)
feed one branch per stem. Every branch trims its own latency (pedalboard's
streaming semantics), so branch outputs are already aligned with the input but
arrive with different delays; a FIFO per branch holds the early ones back until
all branches have produced a sample, which is what pedalboard's ``Mix`` does.

Per-stem gains and dry/wet are applied here, in the time domain, after the
branches (like a mixing desk's post-insert faders). A change requested between
blocks takes effect at the exact input sample where it was requested, with a
short linear de-click ramp, so MIDI automation is sample-accurate.
"""

import numpy as np

from stemboard.plugin.base import StreamedProcessor
from stemboard.plugin.chain import Chain, is_native, is_processor
from stemboard.plugin.separator import StemSeparator, db_to_gain
from stemboard.plugin.stem_controls import StemGainControls

DEFAULT_RAMP_MS = 5.0


class ScheduledValue:
    """A parameter that changes at exact sample positions, with a linear ramp.

    A change to ``target`` scheduled at sample ``t0`` makes samples
    ``t0 .. t0 + ramp - 1`` a linear blend (weights ``k / (ramp + 1)``,
    ``k = 1 .. ramp``) from the value the curve had at ``t0`` to ``target``;
    from ``t0 + ramp`` on the value is exactly ``target``. ``ramp=0`` switches
    at ``t0``.

    Parameters
    ----------
    value : float
        The initial value.
    ramp : int
        Ramp length in samples.
    """

    def __init__(self, value, ramp):
        self.ramp = int(ramp)
        self._from = self._to = float(value)
        self._t0 = 0
        self._events = []  # (position, target), in order of scheduling
        self._pos = 0

    @property
    def target(self):
        """The value the curve settles at once every scheduled change has run."""
        return self._events[-1][1] if self._events else self._to

    def set_now(self, value):
        """Jump to ``value`` with no ramp and drop pending changes (before a stream starts)."""
        self._from = self._to = float(value)
        self._events.clear()

    def schedule(self, value, at):
        """Ramp to ``value`` starting at absolute sample ``at`` (clamped to the present)."""
        at = max(int(at), self._pos)
        if self._events and at < self._events[-1][0]:
            at = self._events[-1][0]
        self._events.append((at, float(value)))

    def restart(self):
        """Settle every pending change and restart the sample clock at 0."""
        self.set_now(self.target)
        self._pos = 0
        self._t0 = 0

    def _curve(self, t):
        if self.ramp == 0 or self._from == self._to:
            return np.full(t.shape, self._to, np.float64)
        w = np.clip((t - self._t0 + 1) / (self.ramp + 1), 0.0, 1.0)
        w[t >= self._t0 + self.ramp] = 1.0
        return self._from + (self._to - self._from) * w

    def render(self, n):
        """Return the next ``n`` values, shape (n,) float64, and advance the clock."""
        start, end = self._pos, self._pos + n
        t = np.arange(start, end, dtype=np.int64)
        out = np.empty(n, np.float64)
        done = start
        while self._events and self._events[0][0] < end:
            at, value = self._events.pop(0)
            out[done - start:at - start] = self._curve(t[done - start:at - start])
            current = float(self._curve(np.array([at]))[0])
            self._from, self._to, self._t0 = current, value, at
            done = at
        out[done - start:] = self._curve(t[done - start:])
        self._pos = end
        return out

    def is_constant(self):
        """True when no change is pending and any ramp has finished."""
        return not self._events and (self._from == self._to or self._pos >= self._t0 + self.ramp)


class LaneAligner:
    """FIFOs that line up lanes (branches) produced with different delays.

    Each lane's output sample ``j`` belongs to input sample ``j``; lanes that
    are ahead are held back until every lane has produced a sample.
    """

    def __init__(self, n_lanes):
        self.n_lanes = n_lanes
        self.reset()

    def reset(self):
        self._queues = [[] for _ in range(self.n_lanes)]
        self._sizes = [0] * self.n_lanes

    def push(self, lane, y):
        if y.shape[1]:
            self._queues[lane].append(y)
            self._sizes[lane] += y.shape[1]

    def available(self):
        return min(self._sizes) if self._sizes else 0

    def pop(self, n, n_ch):
        """Remove and return ``n`` samples of every lane, shape (lanes, channels, n)."""
        out = np.zeros((self.n_lanes, n_ch, n), np.float32)
        for i, q in enumerate(self._queues):
            got = 0
            while got < n and q:
                head = q[0]
                take = min(n - got, head.shape[1])
                out[i, :, got:got + take] = head[:, :take]
                got += take
                if take == head.shape[1]:
                    q.pop(0)
                else:
                    q[0] = head[:, take:]
            self._sizes[i] -= got
        return out


def as_branch(stem, chain):
    """Normalize a branch spec to a ``Chain`` or ``None`` (untouched)."""
    if chain is None:
        return None
    if isinstance(chain, Chain):
        # An empty Chain is an identity (and Chain([]) cannot reset itself yet).
        return chain if len(chain) else None
    if isinstance(chain, (list, tuple)):
        return Chain(chain) if len(chain) else None
    if is_native(chain) or is_processor(chain):
        return Chain([chain])
    raise TypeError(
        f"branch for stem {stem!r} must be None, a list of plugins, a Chain, a pedalboard "
        f"plugin or a stemboard processor, got {type(chain).__name__}")


class StemSplit(StemGainControls, StreamedProcessor):
    """Separate the input, run each stem through its own effect chain, and sum.

    Parameters
    ----------
    branches : dict of str to chain, optional
        Stem name to effect chain: a list of plugins (native pedalboard plugins
        and stemboard processors, mixed freely), a ``Chain``, a single plugin,
        or ``None`` for an untouched stem.
    separator : StemSeparator, optional
        The separator to use. It only splits: its stem gains and ``mix`` are
        copied as this processor's initial values when ``gains_db`` / ``mix``
        are not given, and are not applied by it afterwards.
    model : str or Path, optional
        Model for a new ``StemSeparator`` when ``separator`` is not given.
    unlisted : {"keep", "mute"}
        What happens to stems not named in ``branches``: ``"keep"`` (default)
        passes them through untouched, ``"mute"`` drops them.
    gains_db : dict of str to float, optional
        Post-chain gain per stem in dB (``-inf`` mutes).
    mix : float
        Dry/wet, 0 (the input, delayed to line up) to 1 (the processed sum).
    ramp_ms : float
        De-click ramp for gain and mix changes made during a stream.

    Notes
    -----
    Latency is the separator's plus the largest branch latency; shorter
    branches are delayed to line up, as pedalboard's ``Mix`` does. Native
    plugins report no latency to Python (only VST3 does), so a native plugin
    with hidden latency is not compensated. With every branch ``None`` (or
    empty) and all gains at 0 dB the output equals the input, because the stems
    sum to the input.

    Gain and mix changes made before a stream's first block apply from its
    first sample; changes made between ``reset=False`` blocks apply from the
    next input sample, ramped over ``ramp_ms`` (see :class:`ScheduledValue`).
    """

    def __init__(self, branches=None, *, separator=None, model=None, unlisted="keep",
                 gains_db=None, mix=None, ramp_ms=DEFAULT_RAMP_MS):
        super().__init__()
        if separator is not None and model is not None:
            raise ValueError("pass either separator= or model=, not both")
        if separator is None:
            separator = StemSeparator(model)
        elif not isinstance(separator, StemSeparator):
            raise TypeError(f"separator must be a StemSeparator, got {type(separator).__name__}")
        if unlisted not in ("keep", "mute"):
            raise ValueError(f"unlisted must be 'keep' or 'mute', got {unlisted!r}")
        ramp_ms = float(ramp_ms)
        if not ramp_ms >= 0:
            raise ValueError(f"ramp_ms must be >= 0, got {ramp_ms}")
        self.separator = separator
        self.unlisted = unlisted
        self.ramp_ms = ramp_ms
        branches = dict(branches or {})
        for stem in branches:
            if stem not in separator.stems:
                raise ValueError(f"unknown stem {stem!r} in branches; this model has "
                                 f"{list(separator.stems)}")
        self._branches = {s: as_branch(s, c) for s, c in branches.items()}
        seen = {}
        for s, c in self._branches.items():
            if c is not None:
                if id(c) in seen:
                    raise ValueError(f"stems {seen[id(c)]!r} and {s!r} share one chain "
                                     "instance; give each branch its own")
                seen[id(c)] = s
        # Lanes: the stems that reach the output, in model order.
        self._lanes = [s for s in separator.stems if s in branches or unlisted == "keep"]
        self._in_pos = 0
        self._gains = {s: ScheduledValue(1.0, 0) for s in separator.stems}
        self._gains_db = {s: 0.0 for s in separator.stems}
        self._mix = ScheduledValue(1.0, 0)
        init_gains = separator.gains_db if gains_db is None else dict(gains_db)
        for s, db in init_gains.items():
            self.set_gain(s, db)
        self.mix = separator.mix if mix is None else mix
        self._aligner = LaneAligner(len(self._lanes) + 1)  # + the dry lane
        self._start_stream()

    # -- parameters -------------------------------------------------------------
    @property
    def stems(self):
        return self.separator.stems

    @property
    def branches(self):
        """Stem name to ``Chain`` (or ``None``), as normalized."""
        return dict(self._branches)

    def _schedule(self, param, value):
        # Before the first block of a stream, a change is a plain setting.
        if self._in_pos == 0:
            param.set_now(value)
        else:
            param.schedule(value, self._in_pos)

    def _gain_changed(self, stem, db):
        # Post-chain gains change from the next input sample, with a ramp.
        self._schedule(self._gains[stem], db_to_gain(db))

    @property
    def mix(self):
        return self._mix.target

    @mix.setter
    def mix(self, value):
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"mix must be between 0 and 1, got {value}")
        self._schedule(self._mix, value)

    @property
    def latency_samples(self):
        """Separator latency plus the largest branch latency, in samples."""
        branch = max([c.latency_samples for c in self._branches.values() if c is not None],
                     default=0)
        return self.separator.latency_samples + branch

    # -- processing ---------------------------------------------------------------
    def _start_stream(self):
        self._in_pos = 0
        self._aligner.reset()
        for p in list(self._gains.values()) + [self._mix]:
            p.restart()

    def _set_ramp(self, sample_rate):
        ramp = int(round(self.ramp_ms * 1e-3 * sample_rate))
        for p in list(self._gains.values()) + [self._mix]:
            p.ramp = ramp

    def _feed_stems(self, stems, sample_rate, buffer_size, tail=False):
        """Push separated stems through their branches into the lanes."""
        # The dry lane: the stems' sum, which is the input delayed by the separator.
        self._aligner.push(len(self._lanes), sum(stems.values()))
        for i, s in enumerate(self._lanes):
            chain = self._branches.get(s)
            y = stems[s]
            if chain is not None:
                y = chain.process_channels_first(y, sample_rate, buffer_size, False)
                if tail:
                    y = np.concatenate([y, chain.flush_channels_first()], axis=1)
            self._aligner.push(i, y)

    def _emit(self, n_ch, n=None):
        n = self._aligner.available() if n is None else n
        lanes = self._aligner.pop(n, n_ch)
        wet = np.zeros((n_ch, n), np.float32)
        for i, s in enumerate(self._lanes):
            g = self._gains[s]
            if g.is_constant():
                g.render(n)
                if g.target != 0.0:
                    wet += lanes[i] if g.target == 1.0 else np.float32(g.target) * lanes[i]
            else:
                wet += (g.render(n).astype(np.float32) * lanes[i])
        mix = self._mix
        if mix.is_constant() and mix.target == 1.0:
            mix.render(n)
            return wet
        m = mix.render(n).astype(np.float32)
        return m * wet + (1.0 - m) * lanes[-1]

    def _push(self, x, sample_rate, buffer_size):
        sep = self.separator
        # Our blocks are channels-first; tell the separator so tiny blocks
        # (2 x 1) are not taken for channels-last.
        sep.expect_layout(x.shape[0])
        if self._in_pos == 0:
            self._set_ramp(sample_rate)
        self._in_pos += x.shape[1]
        stems = sep.separate(x, sample_rate, buffer_size=buffer_size, reset=False)
        self._feed_stems(stems, sample_rate, buffer_size)

    def _drain(self):
        self._feed_stems(self.separator.flush_stems(), self._rate, self._buffer_size, tail=True)

    def _samples_emitted(self):
        return self._mix._pos

    def _reset(self):
        self.separator.reset()
        for c in self._branches.values():
            if c is not None:
                c.reset()
        self._start_stream()

    def __repr__(self):
        parts = ", ".join(f"{s}={c!r}" for s, c in self._branches.items())
        return f"StemSplit({{{parts}}}, unlisted={self.unlisted!r}, mix={self.mix})"
