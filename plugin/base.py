"""The pedalboard call contract, by duck typing.

pedalboard cannot host Python subclasses of ``Plugin`` (see docs), so our
processors copy its contract instead: ``process(input_array, sample_rate,
buffer_size=8192, reset=True)``, ``__call__``, ``reset()``, ``is_effect``,
``is_instrument`` and a reported latency. Layout handling follows pedalboard:
1-D is mono, for 2-D the smaller dimension is channels, and the detected layout
is cached so later square or tiny blocks are read the same way.

Every check runs before any state changes, so a rejected call leaves the
processor exactly as it was. One processor holds one stream's state, so it
refuses to be entered from a second thread while it is busy (see
:meth:`Processor.process`).
"""
import math
import threading
import warnings
from contextlib import contextmanager

import numpy as np

from stemboard.plugin.defaults import DEFAULT_BUFFER_SIZE

# The sample rates every processor accepts, in Hz: from telephone audio to the
# highest rate interfaces and formats commonly use. Unbounded, a rate of 1 Hz
# was resampled with filters for an absurd ratio (issue 24: a minute and 1.8 GB
# for one call).
MIN_SAMPLE_RATE = 8000.0
MAX_SAMPLE_RATE = 384000.0

# Offline work is done with a buffer size of at least this: models re-read
# their context at every block edge, so tiny blocks would only cost time. The
# result does not depend on it.
MIN_OFFLINE_BUFFER_SIZE = 1 << 18

#: :meth:`Processor.prepare` streams at most this much silence (hq's latency is 12.1 s).
PREPARE_MAX_SECONDS = 30.0


def __getattr__(name):
    # The old name of MIN_OFFLINE_BUFFER_SIZE (one name per concept: buffer_size).
    if name == "MIN_OFFLINE_BLOCK":
        warnings.warn("MIN_OFFLINE_BLOCK is deprecated; use MIN_OFFLINE_BUFFER_SIZE",
                      DeprecationWarning, stacklevel=2)
        return MIN_OFFLINE_BUFFER_SIZE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ChannelLayout:
    """Detects and remembers how a caller lays out its audio."""

    def __init__(self):
        self.channels_first = None
        self.num_channels = None

    def reset(self):
        self.channels_first = None
        self.num_channels = None

    def to_internal(self, x):
        """Validate ``x`` and return ``(channels, samples)`` float32 plus its layout tag.

        Nothing is remembered here: the caller calls :meth:`remember` once the
        block has been accepted, so a rejected block cannot change how later
        blocks are read.

        Raises
        ------
        TypeError
            For anything but a real floating-point array.
        ValueError
            For arrays that are not 1-D or 2-D, and square arrays whose layout
            is not known yet.
        """
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            hint = ""
            if np.issubdtype(x.dtype, np.integer):
                hint = " (convert integer PCM first, e.g. x.astype(np.float32) / 32768)"
            elif np.issubdtype(x.dtype, np.complexfloating):
                hint = " (audio is real: pass x.real, or undo the transform first)"
            raise TypeError(
                f"stemboard only processes float32 or float64 audio, got {x.dtype}{hint}")
        if x.ndim == 1:
            return np.ascontiguousarray(x[None, :], dtype=np.float32), "mono"
        if x.ndim != 2:
            raise ValueError(
                f"audio must be 1-D (mono) or 2-D (channels x samples), got shape {x.shape}")
        rows, cols = x.shape
        channels_first = self._detect(rows, cols, x.shape)
        cf = x if channels_first else x.T
        return np.ascontiguousarray(cf, dtype=np.float32), ("first" if channels_first else "last")

    def remember(self, tag, num_channels):
        """Keep the layout of an accepted block (``tag`` from :meth:`to_internal`)."""
        if tag == "mono":
            return
        self.channels_first = tag == "first"
        self.num_channels = int(num_channels)

    def _detect(self, rows, cols, shape):
        if self.num_channels is not None:
            # Prefer the reading that keeps the channel count seen before, so that
            # tiny streaming blocks (e.g. 2x1) keep their meaning.
            if self.channels_first and rows == self.num_channels:
                return True
            if not self.channels_first and cols == self.num_channels:
                return False
        if rows == 0 or cols == 0:
            # An empty block: the empty dimension is samples (pedalboard reads it so),
            # which lets a caller announce its layout with e.g. a (2, 0) array.
            return cols == 0
        if rows == cols:
            raise ValueError(
                f"cannot tell channels from samples in a square array of shape {shape}; "
                "pass a non-square array first so the layout can be detected")
        return rows < cols

    @staticmethod
    def restore(y, tag):
        """Return (channels, samples) float32 ``y`` in the layout described by ``tag``."""
        if tag == "mono":
            return y[0]
        if tag == "last":
            return np.ascontiguousarray(y.T)
        return y


def check_finite(x):
    """Raise ``ValueError`` naming the first NaN/inf sample of (channels, samples) ``x``."""
    if x.size and not np.isfinite(x).all():
        c, i = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(
            f"input contains NaN or infinite values (first at channel {c}, sample {i}); "
            "refusing to process so the model state is not poisoned")


def check_sample_rate(sample_rate):
    """Return ``sample_rate`` as a float, or raise ``ValueError`` naming it.

    Rates from :data:`MIN_SAMPLE_RATE` to :data:`MAX_SAMPLE_RATE` (8 to
    384 kHz) are accepted.
    """
    try:
        sr = float(sample_rate)
    except (TypeError, ValueError):
        raise ValueError(f"sample_rate must be a number, got {sample_rate!r}") from None
    if not math.isfinite(sr) or sr <= 0:
        raise ValueError(f"sample_rate must be a positive number, got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate {sample_rate!r} Hz is outside the supported range "
                         f"{MIN_SAMPLE_RATE:.0f} to {MAX_SAMPLE_RATE:.0f} Hz")
    return sr


def check_buffer_size(buffer_size):
    try:
        whole = not isinstance(buffer_size, bool) and int(buffer_size) == buffer_size
    except (TypeError, ValueError, OverflowError):   # "512", None, nan, inf
        whole = False
    if not whole or buffer_size < 1:
        raise ValueError(f"buffer_size must be a positive integer, got {buffer_size!r}")
    return int(buffer_size)


def check_num_channels(num_channels):
    """Return ``num_channels`` as an int, or raise ``ValueError`` naming it (a positive
    whole number; ``True`` is not one)."""
    if (isinstance(num_channels, bool) or not isinstance(num_channels, (int, np.integer))
            or num_channels < 1):
        raise ValueError(f"num_channels must be a positive integer, got {num_channels!r}")
    return int(num_channels)


class Processor:
    """Base class for stemboard processors (pedalboard's contract by duck typing).

    Subclasses implement ``_process(x, sample_rate, buffer_size, reset)`` on
    validated (channels, samples) float32 arrays, ``_flush()``, ``_reset()`` and
    ``latency_samples``. Containers (``Chain``) call ``_process`` directly.
    """

    is_effect = True
    is_instrument = False

    def __init__(self):
        self._layout = ChannelLayout()
        self._last_tag = None
        self._stream_rate = None
        # Held while a call uses the streaming state (see _exclusive).
        self._busy = threading.Lock()

    @contextmanager
    def _exclusive(self, method):
        """Run the body as the only user of this processor's state.

        Two threads sharing one processor would interleave their blocks in one
        stream and silently return wrong audio (or trip an internal check), so
        a second caller gets a ``RuntimeError`` instead of waiting: waiting
        would still mix two streams into one state.
        """
        if not self._busy.acquire(blocking=False):
            name = type(self).__name__
            raise RuntimeError(
                f"{name}.{method}() was called while this {name} is busy in another "
                f"thread; a processor holds one stream's state, so give each thread "
                f"its own {name}")
        try:
            yield
        finally:
            self._busy.release()

    # -- public contract ----------------------------------------------------
    def process(self, input_array, sample_rate, buffer_size=DEFAULT_BUFFER_SIZE, reset=True):
        """Process audio.

        Parameters
        ----------
        input_array : ndarray, shape (samples,), (channels, samples) or (samples, channels)
            float32 or float64; integer arrays are rejected.
        sample_rate : float
        buffer_size : int
            Internal block size; it never changes the result.
        reset : bool
            ``True`` (offline): the output has the input's length and is
            latency-compensated, and all state is cleared afterwards.
            ``False`` (streaming): state carries over to the next call and the
            first ``latency_samples`` of output are trimmed (pedalboard's
            semantics); call :meth:`flush` at the end to get the buffered tail.

        Returns
        -------
        ndarray, float32, in the input's layout.

        Raises
        ------
        TypeError, ValueError
            For bad audio, rates or block sizes, before any state changes:
            the processor stays usable and the stream can continue.
        RuntimeError
            When another thread is using this processor at the same time.
        """
        with self._exclusive("process"):
            x, tag, sr, bs = self._validate(input_array, sample_rate, buffer_size)
            if not reset and self._stream_rate not in (None, sr):
                raise ValueError(
                    f"sample rate changed from {self._stream_rate} to {sr} in the middle of "
                    "a stream; call reset() or flush() first")
            y = self._process(x, sr, bs, bool(reset))
            self._accept(x, tag)
            self._stream_rate = None if reset else sr
            return ChannelLayout.restore(y, tag)

    __call__ = process

    def _validate(self, input_array, sample_rate, buffer_size):
        """Checked arguments: ``(x (channels, samples) float32, layout tag, rate, block)``.

        Changes nothing: call :meth:`_accept` once the block went through.
        """
        sr = check_sample_rate(sample_rate)
        bs = check_buffer_size(buffer_size)
        x, tag = self._layout.to_internal(input_array)
        check_finite(x)
        return x, tag, sr, bs

    def _accept(self, x, tag):
        """Remember the layout of a block that was processed."""
        self._layout.remember(tag, x.shape[0])
        self._last_tag = tag

    def flush(self):
        """End a ``reset=False`` stream: return the buffered tail and reset.

        After :meth:`flush` the total output of the stream has exactly the
        total input's length, aligned with it.
        """
        with self._exclusive("flush"):
            y = self._flush()
            tag = self._last_tag or "first"
            self._stream_rate = None
            return ChannelLayout.restore(y, tag)

    def reset(self):
        """Clear all streaming state (buffered audio is discarded)."""
        with self._exclusive("reset"):
            self._reset()
            self._stream_rate = None

    def prepare(self, sample_rate, num_channels, *, buffer_size=512):
        """Do a stream's one-time set-up now, before the audio thread needs it.

        The first ``process(..., reset=False)`` of a fresh processor builds its
        renderer for that rate and channel count (a stateful model runs its
        receptive field of silence), and the first runs of each ONNX Runtime
        session and Numba kernel are slower again: in a fresh process the first
        512-sample block of ``live`` or ``offline`` took 25-36 times its 11.6 ms
        budget, the next ones about a tenth of it (``bench/first_block.py``).  A
        host calls this from its set-up (JUCE's ``prepareToPlay``): it streams
        ``buffer_size``-sample blocks of silence at ``sample_rate`` until output
        comes out and two blocks more, then resets, so every stage has run at
        that block size and the stream that follows gives exactly the output it
        would have given without it.  It takes about 0.3-0.4 s for ``live`` and
        ``offline``, and about 3 s for ``hq``, whose latency is 12 s of silence
        to stream.

        Parameters
        ----------
        sample_rate : float
        num_channels : int
            Channels of the blocks to come; also announced as with
            :meth:`expect_layout`.
        buffer_size : int
            Samples per :meth:`process` call the host will make (its block).

        Raises
        ------
        ValueError
            For a bad rate, channel count or block size, before any state changes.
        RuntimeError
            When another thread is using this processor at the same time.
        """
        sr = check_sample_rate(sample_rate)
        bs = check_buffer_size(buffer_size)
        n_ch = check_num_channels(num_channels)
        silence = np.zeros((n_ch, bs), np.float32)
        with self._exclusive("prepare"):
            self._reset()
            self._stream_rate = None
            # Bounded: a processor that never emitted would otherwise loop for ever.
            left, pushed = 2, 0
            while left and pushed < PREPARE_MAX_SECONDS * sr:
                left -= bool(self._process(silence, sr, bs, False).shape[-1])
                pushed += bs
            self._reset()
            self.expect_layout(n_ch)

    def expect_layout(self, num_channels, *, channels_first=True):
        """Announce how the next blocks are laid out.

        A fresh ``(2, 1)`` block would otherwise read as two mono samples
        (pedalboard's rule); after this call it reads as one stereo sample.

        Raises
        ------
        ValueError
            When ``num_channels`` is not a positive whole number, before any change.
        """
        n_ch = check_num_channels(num_channels)
        self._layout.num_channels = n_ch
        self._layout.channels_first = bool(channels_first)

    # -- for containers (Chain, StemSplit, ABSwitch) ---------------------------
    def process_channels_first(self, x, sample_rate, buffer_size, reset):
        """:meth:`process` for already validated (channels, samples) float32 audio.

        Containers validate once at their own entrance and pass canonical
        blocks inward with this, skipping layout detection.
        """
        with self._exclusive("process_channels_first"):
            self.expect_layout(x.shape[0])
            y = self._process(x, sample_rate, buffer_size, reset)
            self._stream_rate = None if reset else sample_rate
            return y

    def flush_channels_first(self):
        """:meth:`flush` returning (channels, samples)."""
        with self._exclusive("flush_channels_first"):
            y = self._flush()
            self._stream_rate = None
            return y

    @property
    def reported_latency_samples(self):
        """Alias of ``latency_samples`` (the name VST3 plugins use)."""
        return self.latency_samples

    # -- for subclasses -------------------------------------------------------
    def _process(self, x, sample_rate, buffer_size, reset):  # pragma: no cover
        raise NotImplementedError

    def _flush(self):  # pragma: no cover
        raise NotImplementedError

    def _reset(self):  # pragma: no cover
        raise NotImplementedError

    @property
    def latency_samples(self):  # pragma: no cover
        raise NotImplementedError


class StreamedProcessor(Processor):
    """A processor written as a stream, whose offline mode is that same stream.

    Subclasses keep ``_in_pos`` (samples pushed) and a lane aligner
    ``_aligner``, and implement ``_push(x, sample_rate, buffer_size)`` (take a
    block in), ``_emit(num_channels, n=None)`` (return what is ready, aligned),
    ``_drain()`` (push every part's buffered tail into the aligner),
    ``_samples_emitted()`` and ``_reset()``. Offline processing resets, pushes
    the whole input in big blocks, emits and flushes, so streaming equals
    offline by construction.
    """

    def _process(self, x, sample_rate, buffer_size, reset):
        if reset:
            buffer_size = max(buffer_size, MIN_OFFLINE_BUFFER_SIZE)
        # The stream's rate and buffer size also serve its flush (_drain).
        self._channels, self._rate, self._buffer_size = x.shape[0], sample_rate, buffer_size
        if not reset:
            self._push(x, sample_rate, buffer_size)
            return self._emit(x.shape[0])
        self._reset()
        self._push(x, sample_rate, buffer_size)
        head = self._emit(x.shape[0])
        return np.concatenate([head, self._flush()], axis=1)

    def _flush(self):
        n_ch = getattr(self, "_channels", 1)
        if self._in_pos == 0:
            self._reset()
            return np.zeros((n_ch, 0), np.float32)
        self._drain()
        # Everything not yet emitted: the input length minus what went out.
        expected = self._in_pos - self._samples_emitted()
        y = self._emit(n_ch, min(expected, self._aligner.available()))
        if y.shape[1] < expected:
            y = np.concatenate([y, np.zeros((n_ch, expected - y.shape[1]), np.float32)], axis=1)
        self._reset()
        return y
