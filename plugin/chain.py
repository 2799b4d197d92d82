"""``Chain``: a hybrid effect chain of native pedalboard plugins and our processors.

pedalboard's own containers reject Python objects, so this container runs
them itself. Consecutive native plugins are grouped into one persistent
``pedalboard.Pedalboard`` segment: native code keeps its GIL-free path, and
its state (reverb tails, filter memory) survives ``reset=False`` calls.
"""
import numpy as np
import pedalboard

from stemboard.plugin.base import Processor


def is_native(plugin):
    return isinstance(plugin, pedalboard.Plugin)


def is_processor(plugin):
    return isinstance(plugin, Processor)


def native_latency(plugin):
    """The latency pedalboard exposes for a native plugin (only VST3 reports one)."""
    if isinstance(plugin, pedalboard.Pedalboard):
        return sum(native_latency(p) for p in plugin)
    return int(getattr(plugin, "reported_latency_samples", 0) or 0)


class _NativeSegment:
    """Consecutive native plugins run as one persistent ``Pedalboard``.

    pedalboard re-prepares (and so resets) its plugins whenever a
    ``reset=False`` block is longer than any block it was prepared for, and our
    processors emit blocks of varying length. So before a stream starts, the
    board is prepared once with a full block of silence and reset, and stream
    blocks are then fed in chunks no longer than that. This also teaches
    pedalboard the channels-first layout, so tiny blocks (2x1) are read right.
    """

    def __init__(self, plugins):
        self.plugins = list(plugins)
        self.board = pedalboard.Pedalboard(self.plugins)
        self._chunk = None

    def run(self, x, sample_rate, buffer_size, reset):
        n_ch = x.shape[0]
        if reset:
            self._chunk = None
            if x.shape[1] <= n_ch:  # too short for pedalboard to read the layout
                self._prepare(n_ch, sample_rate, buffer_size)
            y = self.board(x, sample_rate, buffer_size=buffer_size, reset=True)
            return np.asarray(y, np.float32).reshape(n_ch, -1)
        if self._chunk is None:
            self._prepare(n_ch, sample_rate, buffer_size)
            self._chunk = buffer_size
        pieces = [self.board(x[:, i:i + self._chunk], sample_rate, reset=False)
                  for i in range(0, x.shape[1], self._chunk)]
        if not pieces:
            return np.zeros((n_ch, 0), np.float32)
        return np.concatenate([np.asarray(p, np.float32).reshape(n_ch, -1) for p in pieces],
                              axis=1)

    def _prepare(self, n_ch, sample_rate, buffer_size):
        silence = np.zeros((n_ch, max(buffer_size, n_ch + 1)), np.float32)
        self.board(silence, sample_rate, buffer_size=buffer_size, reset=True)
        self.board.reset()

    def flush(self, n_ch):
        return np.zeros((n_ch, 0), np.float32)

    def reset(self):
        self.board.reset()
        self._chunk = None

    @property
    def latency_samples(self):
        return sum(native_latency(p) for p in self.plugins)


class _ProcessorSegment:
    def __init__(self, processor):
        self.processor = processor

    def run(self, x, sample_rate, buffer_size, reset):
        return self.processor.process_channels_first(x, sample_rate, buffer_size, reset)

    def flush(self, n_ch):
        y = self.processor.flush_channels_first()
        return y if y.shape[0] == n_ch else np.zeros((n_ch, 0), np.float32)

    def reset(self):
        self.processor.reset()

    @property
    def latency_samples(self):
        return self.processor.latency_samples


def flat_parts(plugin):
    """The plugins ``plugin`` runs, in order: a ``Chain``'s parts with nested
    chains expanded, or ``[plugin]`` for anything else.

    Used to address one part of a chain (a MIDI controller finding its A/B
    switch or its stem gains) without the caller knowing how it is nested.
    """
    if isinstance(plugin, Chain):
        return [q for p in plugin for q in flat_parts(p)]
    return [plugin]


class Chain(Processor):
    """Run plugins in series: native pedalboard plugins, stemboard processors,
    and nested chains, in any order.

    Parameters
    ----------
    plugins : iterable
        ``pedalboard.Plugin`` instances (including ``Pedalboard``/``Mix``),
        stemboard processors (``StemSeparator``, ``Chain``, ...).

    Notes
    -----
    With ``reset=True`` each part is latency-compensated, so the output is
    aligned with the input. With ``reset=False`` every part trims its own
    latency (pedalboard's semantics); :meth:`flush` drains each of our
    processors in order and passes its tail through the rest of the chain.
    Native plugins report no latency to Python (only VST3 does), so a native
    plugin with hidden latency is not compensated; see the README.
    """

    def __init__(self, plugins=()):
        super().__init__()
        self._plugins = []
        self._segments = None
        self._channels = None
        for p in plugins:
            self.append(p)

    # -- list-like ----------------------------------------------------------
    @property
    def plugins(self):
        return list(self._plugins)

    def append(self, plugin):
        if not (is_native(plugin) or is_processor(plugin)):
            raise TypeError(
                f"Chain accepts pedalboard plugins and stemboard processors, "
                f"got {type(plugin).__name__}")
        if plugin is self:
            raise ValueError("a Chain cannot contain itself")
        if any(plugin is p for p in self._plugins):
            raise ValueError(f"{plugin!r} is already in this chain; use a second instance")
        self._plugins.append(plugin)
        self._segments = None

    def __len__(self):
        return len(self._plugins)

    def __getitem__(self, i):
        return self._plugins[i]

    def __iter__(self):
        return iter(self._plugins)

    def __repr__(self):
        return f"Chain({self._plugins!r})"

    # -- segments --------------------------------------------------------------
    @property
    def segments(self):
        if self._segments is None:
            segs, natives = [], []
            for p in self._plugins:
                if is_native(p):
                    natives.append(p)
                    continue
                if natives:
                    segs.append(_NativeSegment(natives))
                    natives = []
                segs.append(_ProcessorSegment(p))
            if natives:
                segs.append(_NativeSegment(natives))
            self._segments = segs
        return self._segments

    @property
    def latency_samples(self):
        """Total latency in samples: the sum over the parts."""
        return sum(s.latency_samples for s in self.segments)

    # -- processing ------------------------------------------------------------
    def _process(self, x, sample_rate, buffer_size, reset):
        self._channels = x.shape[0]
        self._rate = sample_rate
        self._buffer_size = buffer_size
        for seg in self.segments:
            x = seg.run(x, sample_rate, buffer_size, reset)
        return x

    def _flush(self):
        n_ch = self._channels
        if n_ch is None:  # nothing was streamed
            return np.zeros((1, 0), np.float32)
        segs = self.segments
        pieces = []
        for i, seg in enumerate(segs):
            tail = seg.flush(n_ch)
            for later in segs[i + 1:]:
                tail = later.run(tail, self._rate, self._buffer_size, False)
            pieces.append(tail)
        self._reset()
        return np.concatenate(pieces, axis=1) if pieces else np.zeros((n_ch, 0), np.float32)

    def _reset(self):
        for seg in self.segments:
            seg.reset()
        self._channels = None
