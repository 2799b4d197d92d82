"""Streaming separation engine: blocks in, masked mixes out.

:class:`MaskStream` turns blocks into (spectrum, masks) for every frame whose
context is complete; :class:`Renderer` applies per-output stem gains,
overlap-adds and trims the grid's leading silence, :class:`ResampledRenderer`
wraps any renderer in pedalboard's stream resamplers for other sample rates,
and :class:`CascadeRenderer` runs a cascade's two models in series.  All three
are :class:`StemRenderer`: callers (the separator) see one interface, and
:func:`make_renderer` picks the class.

Offline processing is this same engine fed in large blocks and flushed, so
streaming output equals offline output by construction.
"""
import abc

import numpy as np

from stemboard.dsp.kernels import (MASK_FLOOR, TINY, flush_tiny, log_features,
                                   masked_overlap_add_into)
from stemboard.dsp.midside import from_mid_side, to_mid_side
from stemboard.dsp.resample import ChannelsFirstResampler, round_trip_alignment
from stemboard.dsp.stft import StftGrid, num_frames
from stemboard.dsp.stream import StreamingAnalyzer
from stemboard.dsp.threads import per_channel
from stemboard.models.cascade import CascadeModel
from stemboard.models.manifest import check_mask_mode
from stemboard.models.runtime import normalize_masks


class MaskStream:
    """Frames and their masks, in order, as soon as each frame's lookahead arrives.

    The signal is taken as preceded and followed by silence: the model sees
    ``context_frames`` silent frames before frame 0, and on :meth:`finish`
    ``lookahead_frames`` silent frames after the last one.
    """

    def __init__(self, model, num_channels, *, keep=None):
        m = model.manifest
        self.model = model
        # keep: only these stems share each bin (a cascade's second model); the
        # others' masks are zeroed before the kernel renormalises.
        self._drop = (None if keep is None else
                      [i for i in range(len(m.stems)) if i not in set(keep)])
        self._keep = None if keep is None else list(keep)
        self.grid = StftGrid(m.n_fft, m.hop)
        self.num_channels = num_channels
        self.analyzer = StreamingAnalyzer(self.grid, num_channels)
        self._feature_params = m.feature_params()
        # Stateful graphs see each frame once; stateless ones are re-run over the
        # whole receptive field (context + lookahead frames of features kept here).
        self.stateful = bool(getattr(model, "stateful", False))
        self.segmented = m.segmented
        if self.segmented:
            self._weights = segment_weights(m.segment_frames, m.segment_overlap)
            self._first_weights = segment_weights(m.segment_frames, m.segment_overlap,
                                                  first=True)
        self._silent_state = None
        self.reset()

    def reset(self):
        m = self.model.manifest
        self.analyzer.reset()
        self.samples_in = 0
        self._pending = np.zeros((self.num_channels, 0, self.grid.n_bins), np.complex64)
        if self.stateful:
            # The graph carries its layers' inputs: start them as after a long
            # silence, and drop the outputs of the silent frames before frame 0.
            if self._silent_state is None:
                self._silent_state = self._after_silence()
            self._state = [s.copy() for s in self._silent_state]
            self._skip = m.lookahead_frames
            return
        if self.segmented:
            # Segments start at frame 0 and every segment_frames - overlap frames
            # after it; the first has no fade-in (nothing before it to fade from).
            self._feats = np.zeros((self.num_channels, m.model_bins, 0), np.float32)
            self._feats_start = 0              # frame index of self._feats[..., 0]
            self._next_segment = 0             # first frame of the next segment to run
            self._frames_in = 0
            self._acc = np.zeros((self.num_channels, len(m.stems), m.model_bins, 0), np.float32)
            self._acc_start = 0                # frame index of self._acc[..., 0]
            return
        # The frames before the signal are silence, in feature space.
        silence = np.zeros((self.num_channels, m.context_frames, self.grid.n_bins), np.complex64)
        self._feats = self._features(silence)

    def _after_silence(self):
        """The states after ``receptive_field - 1`` silent frames: every value they
        hold then depends on silence only, whatever the zero states started as."""
        m = self.model.manifest
        silence = np.zeros((self.num_channels, m.receptive_field - 1, self.grid.n_bins),
                           np.complex64)
        _, state = self.model.step(self._features(silence),
                                   self.model.zero_state(self.num_channels))
        return state

    def push(self, block):
        """Feed (channels, n) float32; return ``(spec, masks)`` for ready frames.

        ``spec`` is (channels, k, bins) complex64; ``masks`` is the model's raw
        output for those frames, (channels, stems, model_bins, k) float32
        (normalised to sum to one by
        :func:`~stemboard.dsp.kernels.masked_overlap_add`).
        """
        self.samples_in += block.shape[1]
        return self._ready(self.analyzer.push(block))

    def finish(self):
        """Feed the trailing silence that completes every frame; return the last frames."""
        m = self.model.manifest
        total = num_frames(self.samples_in, self.grid) + m.lookahead_frames
        if self.samples_in == 0:
            total = 0
        need = (total - 1) * self.grid.hop + self.grid.n_fft - self.grid.pad - self.samples_in
        silence = np.zeros((self.num_channels, max(need, 0)), np.float32)
        return self._ready(self.analyzer.push(silence))

    def _features(self, spec):
        return per_channel(log_features, spec.shape[1], (spec,),
                           (self.model.manifest.model_bins, *self._feature_params))

    def _ready(self, spec_new):
        spec, masks = self._ready_any(spec_new)
        if self._drop:
            # The numpy below would meet the softmax's subnormal values (the
            # kernel zeroes them itself on the other paths).
            masks = _flushed(masks, MASK_FLOOR)
            masks[:, self._drop] = 0.0
            # A bin no kept stem claims is split evenly among the kept ones.
            dead = masks.sum(axis=1) <= 1e-12
            if dead.any():
                for k in self._keep:
                    masks[:, k][dead] = 1.0
        return spec, masks

    def _ready_any(self, spec_new):
        if self.stateful:
            return self._ready_stateful(spec_new)
        if self.segmented:
            return self._ready_segmented(spec_new)
        m = self.model.manifest
        feats = np.concatenate([self._feats, self._features(spec_new)], axis=2)
        n_ready = max(feats.shape[2] - m.context_frames - m.lookahead_frames, 0)
        if n_ready == 0:
            self._feats = feats
            return self._release(spec_new, 0), self._no_masks()
        masks = self.model.run(feats)
        self._feats = np.ascontiguousarray(feats[:, :, n_ready:])
        return self._release(spec_new, n_ready), masks

    def _ready_stateful(self, spec_new):
        if spec_new.shape[1] == 0:
            return self._release(spec_new, 0), self._no_masks()
        masks, state = self.model.step(self._features(spec_new), self._state)
        # The states feed the next run: keep subnormal values out of its convolutions.
        self._state = [_flushed(x, TINY) for x in state]
        # Output j is the mask of the frame lookahead_frames before input j.
        drop = min(self._skip, masks.shape[3])
        self._skip -= drop
        return (self._release(spec_new, masks.shape[3] - drop), _compact(masks[..., drop:]))

    def _ready_segmented(self, spec_new):
        """Run every segment the new frames complete, crossfade it into the mask
        accumulator, and release the frames ``lookahead_frames`` behind the input
        (by then every segment covering them has run)."""
        m = self.model.manifest
        length, c = m.segment_frames, self.num_channels
        step = length - m.segment_overlap
        if spec_new.shape[1]:
            self._feats = np.concatenate([self._feats, self._features(spec_new)], axis=2)
        self._frames_in += spec_new.shape[1]
        starts = []
        while self._next_segment + length <= self._frames_in:
            starts.append(self._next_segment)
            self._next_segment += step
        if starts:
            offsets = [s - self._feats_start for s in starts]
            batch = np.stack([self._feats[:, :, o:o + length] for o in offsets])
            raw = self.model.run(batch.reshape(-1, *batch.shape[2:]), channels=c)
            # Normalised and crossfaded in numpy: no subnormal values in that.
            masks = normalize_masks(_flushed(raw, MASK_FLOOR)).reshape(len(starts), c,
                                                                       *raw.shape[1:])
            for i, s in enumerate(starts):
                masks[i] *= self._weights if s else self._first_weights
            end = starts[-1] + length
            grow = end - (self._acc_start + self._acc.shape[3])
            if grow > 0:
                self._acc = np.concatenate(
                    [self._acc, np.zeros(self._acc.shape[:3] + (grow,), np.float32)], axis=3)
            for s, seg in zip(starts, masks):
                # Frames are released only once every segment over them has run,
                # so a new segment never reaches back past the accumulator's start.
                lo = s - self._acc_start
                self._acc[..., lo:lo + length] += seg
            drop = self._next_segment - self._feats_start
            self._feats = np.ascontiguousarray(self._feats[:, :, drop:])
            self._feats_start = self._next_segment
        n_ready = max(self._frames_in - m.lookahead_frames - self._acc_start, 0)
        out = np.ascontiguousarray(self._acc[..., :n_ready])
        self._acc = self._acc[..., n_ready:]
        self._acc_start += n_ready
        return self._release(spec_new, n_ready), out

    def _release(self, spec_new, n_ready):
        """The first ``n_ready`` frames of the pending ones followed by ``spec_new``,
        as one contiguous array (one copy); the rest stay pending."""
        old = self._pending
        cut = n_ready - old.shape[1]
        if cut >= 0:
            out = np.concatenate([old, spec_new[:, :cut]], axis=1)
            self._pending = np.ascontiguousarray(spec_new[:, cut:])
        else:
            out = np.ascontiguousarray(old[:, :n_ready])
            self._pending = np.concatenate([old[:, n_ready:], spec_new], axis=1)
        return out

    def _no_masks(self):
        m = self.model.manifest
        return np.zeros((self.num_channels, len(m.stems), m.model_bins, 0), np.float32)


def _flushed(a, floor):
    """``a`` (float32) with the values below ``floor`` in magnitude zeroed, in place
    when it is a graph output (C-contiguous, or the (batch, stems, bins, time) view
    of a frame-major one: see :func:`_compact`)."""
    a = _compact(np.asarray(a, np.float32))
    base = _frame_major_base(a)
    flush_tiny(a if base is None else base, floor)
    return a


def _frame_major_base(masks):
    """The C-contiguous (batch, time, stems, bins) array that ``masks`` (batch, stems,
    bins, time) is a view of, or None when it is not such a view."""
    if masks.ndim != 4 or masks.flags.c_contiguous:
        return None
    base = masks.transpose(0, 3, 1, 2)
    return base if base.flags.c_contiguous else None


def _compact(masks):
    """``masks`` (batch, stems, bins, time) with its values contiguous in the
    layout they came in: frame-major graph outputs (the manifest's ``mask_layout``
    ``"frames"``) stay frame-major, so the overlap-add reads each frame in order."""
    if masks.flags.c_contiguous or _frame_major_base(masks) is not None:
        return masks
    if masks.ndim == 4 and masks.strides[1] < masks.strides[3]:
        # A slice of a frame-major view: copied frame-major.
        return np.ascontiguousarray(masks.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(masks)


def _check_room(out, start, m):
    """Refuse to write ``m`` samples from ``start`` past the end of ``out``.

    An offline render's output has room for every sample pushed, and a
    renderer never returns more than it was given, so this is an internal
    error (raised before anything is written).
    """
    if start < 0 or start + m > out.shape[2]:
        raise RuntimeError(f"internal error: the output has room for {out.shape[2] - start} "
                           f"samples from {start}, and the block renders {m}")


def _copy_into(out, start, y):
    """Write a rendered block ``y`` (n_outputs, channels, m) to ``out`` from ``start``;
    returns ``m``."""
    _check_room(out, start, y.shape[2])
    out[:, :, start:start + y.shape[2]] = y
    return y.shape[2]


def segment_weights(length: int, overlap: int, *, first: bool = False) -> np.ndarray:
    """Crossfade weights of one segment, shape (length,), float32.

    Linear ramps over the first and last ``overlap`` frames, flat in between:
    segments ``length - overlap`` apart sum to exactly one on every frame.
    The ``first`` segment (at frame 0) has no fade-in.
    """
    w = np.ones(length, np.float64)
    if overlap:
        ramp = (np.arange(overlap) + 0.5) / overlap
        if not first:
            w[:overlap] = ramp
        w[length - overlap:] = ramp[::-1]
    return w.astype(np.float32)


class StemRenderer(abc.ABC):
    """What every renderer is: gain-weighted stem mixes of a stream, aligned with it.

    A renderer is fed blocks at ``sample_rate`` (:meth:`push`) and returns, for
    every block, ``n_outputs`` mixes of the model's stems, each sample ``j`` of
    the output lined up with sample ``j`` of the input (the latency is trimmed);
    :meth:`flush` returns the rest, so a stream's output is exactly as long as
    its input.  The mixes are set per call by ``gains``, shape
    (:attr:`n_gains`, stems): output ``o`` is ``sum_s gains[o, s] * stem_s``.

    With ``residual=True`` the last output has no row of gains: it is the
    (aligned) input minus the other outputs.  With one-hot gains over all but
    one stem that is the remaining stem, and it costs a subtraction instead of
    a masked inverse STFT.

    Parameters
    ----------
    stems : sequence of str
        The model's stems, in order (the columns of ``gains``).
    num_channels : int
    n_outputs : int
    sample_rate : float
        The rate of the blocks pushed.
    mask_mode : {"soft", "binary"}
    residual : bool
    """

    def __init__(self, stems, num_channels, n_outputs, sample_rate, *, mask_mode="soft",
                 residual=False):
        if int(num_channels) < 1 or int(n_outputs) < 1:
            raise ValueError(f"a renderer needs at least one channel and one output, got "
                             f"{num_channels} and {n_outputs}")
        self.stems = tuple(stems)
        self.num_channels = int(num_channels)
        self.n_outputs = int(n_outputs)
        self.sample_rate = sample_rate
        self.residual = bool(residual)
        self._mask_mode = check_mask_mode(mask_mode)

    @property
    def n_gains(self) -> int:
        """Rows of ``gains``: one per output, but for the residual one."""
        return self.n_outputs - self.residual

    @property
    def mask_mode(self) -> str:
        """``"soft"`` or ``"binary"``; may change within a stream."""
        return self._mask_mode

    @mask_mode.setter
    def mask_mode(self, value):
        self._mask_mode = check_mask_mode(value)
        for part in self._parts():
            part.mask_mode = value

    def _parts(self):
        """The renderers this one drives (they follow its mask mode)."""
        return ()

    def _checked_gains(self, gains) -> np.ndarray:
        """``gains`` as float32, or ``ValueError`` before any state changes (the Numba
        kernel does not bounds-check: a wrong shape would write past its state)."""
        shape = (self.n_gains, len(self.stems))
        if np.shape(gains) != shape:
            raise ValueError(f"gains must have shape {shape}, got {np.shape(gains)}")
        return np.asarray(gains, np.float32)

    @property
    @abc.abstractmethod
    def latency_samples(self) -> int:
        """Streaming latency at :attr:`sample_rate`."""

    @property
    @abc.abstractmethod
    def samples_in(self) -> int:
        """Samples pushed since the last reset."""

    @abc.abstractmethod
    def push(self, block, gains) -> np.ndarray:
        """Feed (channels, n) float32; ``gains`` is (n_gains, stems).
        Returns (n_outputs, channels, m) float32."""

    def push_into(self, block, gains, out, start) -> int:
        """:meth:`push`, with its output written to ``out[:, :, start:start + m]``.

        An offline render's whole output, filled block by block: a renderer
        that can write there directly skips a copy of every block (this
        default copies).

        Parameters
        ----------
        block : ndarray, shape (channels, n), float32
        gains : ndarray, shape (n_gains, stems)
        out : ndarray, shape (n_outputs, channels, samples), float32, C-contiguous
        start : int

        Returns
        -------
        int
            ``m``, the samples written.
        """
        return _copy_into(out, start, self.push(block, gains))

    @abc.abstractmethod
    def flush(self, gains) -> np.ndarray:
        """Return the buffered tail, (n_outputs, channels, m), and reset."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget the stream: the next block starts a new one."""


class Renderer(StemRenderer):
    """One or more gain-weighted stem mixes from a :class:`MaskStream`.

    Each output ``o`` is ``istft(sum_s gains[o, s] * mask_s * X)`` (the
    residual output, if asked for, is the input minus the others).  Output is
    trimmed so sample ``j`` of the output lines up with sample ``j`` of the
    input (pedalboard's streaming semantics); :meth:`flush` returns the rest so
    the total output length equals the total input length.

    A stereo stream whose model's manifest says ``"stereo_mode": "mid_side"``
    is separated as its mid and side signals, and each output is mapped back
    to left/right (both linear, so the outputs still add up to the input).

    ``keep``: only these stems share each bin (a cascade's second model).
    """

    def __init__(self, model, num_channels, n_outputs, *, mask_mode="soft", residual=False,
                 keep=None):
        super().__init__(model.stems, num_channels, n_outputs, model.sample_rate,
                         mask_mode=mask_mode, residual=residual)
        self.stream = MaskStream(model, num_channels, keep=keep)
        self.grid = self.stream.grid
        self.mid_side = num_channels == 2 and model.manifest.stereo_mode == "mid_side"
        self._model_bins = model.manifest.model_bins
        self._high_stem = model.manifest.high_stem_index
        self._latency = model.manifest.latency_samples
        self.reset()

    @property
    def latency_samples(self):
        return self._latency

    @property
    def samples_in(self):
        return self.stream.samples_in

    def reset(self):
        self.stream.reset()
        self._ola = np.zeros((self.n_gains, self.num_channels, self.grid.n_fft), np.float32)
        self._to_trim = self.grid.pad
        self.samples_out = 0
        self._dry = np.zeros((self.num_channels, 0), np.float32)

    def _pushed(self, block, gains):
        """``(spec, masks, gains)`` for a new block, in the stream's coding."""
        gains = self._checked_gains(gains)
        block = np.asarray(block, np.float32)
        if self.mid_side:
            block = to_mid_side(block)
        if self.residual:
            self._dry = np.concatenate([self._dry, block], axis=1)
        return self.stream.push(block) + (gains,)

    def push(self, block, gains):
        return self._to_channels(self._render(*self._pushed(block, gains)))

    def push_into(self, block, gains, out, start):
        spec, masks, gains = self._pushed(block, gains)
        if self._to_trim or not out.flags.c_contiguous:
            # The stream's first samples are cut (they would land before
            # ``start``): render apart and copy, as the default does.
            return _copy_into(out, start, self._to_channels(self._render(spec, masks, gains)))
        m = spec.shape[1] * self.grid.hop
        _check_room(out, start, m)
        self._to_channels(self._render(spec, masks, gains, out=out, start=start))
        return m

    def _to_channels(self, out):
        """(n_outputs, channels, m) in the stream's coding -> left/right, in place."""
        return from_mid_side(out, axis=1, in_place=True) if self.mid_side else out

    def flush(self, gains):
        gains = self._checked_gains(gains)
        expected = self.stream.samples_in - self.samples_out
        out = self._render(*self.stream.finish(), gains)[:, :, :expected]
        self.reset()
        return self._to_channels(out)

    def _render(self, spec, masks, gains, *, out=None, start=0):
        """Every output of one push, in the stream's coding.

        Written to ``out[:, :, start:start + m]`` and returned as that view,
        when ``out`` is given (the stream must be past its first samples' trim);
        else to a new array.  ``m`` is ``frames * hop`` less what is trimmed.
        """
        gains = np.ascontiguousarray(gains, np.float32)
        binary = self.mask_mode == "binary"
        g = self.grid
        length = spec.shape[1] * g.hop
        if out is None:
            out = np.empty((self.n_outputs, self.num_channels, length), np.float32)
            start = 0

        masks = _compact(np.asarray(masks, np.float32))
        base = _frame_major_base(masks)
        frame_major = base is not None

        def kernel(spec, masks, ola, channels):
            masked_overlap_add_into(spec, masks, gains, self._model_bins, self._high_stem,
                                    binary, ola, g.n_fft, g.hop, g.synthesis_window,
                                    frame_major, out, channels[0], start)

        if self.n_gains:
            # Channels in parallel threads for large calls (dsp/threads.py); each
            # writes its channels of ``out``, and the overlap-add state is
            # updated in place through the views.
            per_channel(kernel, spec.shape[1],
                        (spec, base if frame_major else masks, self._ola,
                         np.arange(self.num_channels)),
                        arg_axes=(0, 0, 1, 0), axis=None)
        trim = min(self._to_trim, length)
        self._to_trim -= trim
        out = out[:, :, start + trim:start + length]
        if self.residual:
            # Output sample j lines up with input sample j; past the input's end
            # (the flush) the input is silence.
            m = out.shape[2]
            dry = self._dry[:, :m]
            self._dry = self._dry[:, m:]
            if dry.shape[1] < m:
                dry = np.pad(dry, ((0, 0), (0, m - dry.shape[1])))
            rest = out[self.n_gains]
            np.sum(out[:self.n_gains], axis=0, out=rest)
            np.subtract(dry, rest, out=rest)
        self.samples_out += out.shape[2]
        return out


class ResampledRenderer(StemRenderer):
    """Any renderer at the model's rate behind pedalboard stream resamplers.

    Every stage trims its own latency, so the output stays aligned with the
    input. pedalboard's resamplers can only trim whole samples, which left the
    round trip up to 1.7 samples off; a few model-rate samples of silence in
    front of the upsamplers make its delay a whole number of samples, which is
    trimmed here too (see :mod:`stemboard.dsp.resample`). :meth:`flush` pushes
    silence through so the tail comes out whole, and cuts it to the input's
    length.  The residual output, if any, is the inner renderer's.
    """

    # Input-rate samples of silence pushed past the end on flush, beyond the
    # trim: each resampler's rounding leaves its own flush a sample or two
    # short, and those samples came out as exact zeros at 192 kHz.
    TAIL_MARGIN = 32

    def __init__(self, model, num_channels, n_outputs, sample_rate, *, mask_mode="soft",
                 residual=False):
        super().__init__(model.stems, num_channels, n_outputs, sample_rate,
                         mask_mode=mask_mode, residual=residual)
        self.inner = make_renderer(model, num_channels, n_outputs, mask_mode=mask_mode,
                                   residual=residual)
        self.model_rate = model.sample_rate
        self._down = ChannelsFirstResampler(sample_rate, self.model_rate, num_channels)
        self._up = [ChannelsFirstResampler(self.model_rate, sample_rate, num_channels)
                    for _ in range(n_outputs)]
        self._pad, self._trim = round_trip_alignment(
            sample_rate, self.model_rate, self._down.input_latency, self._up[0].input_latency)
        self.reset()

    def _parts(self):
        return (self.inner,)

    @property
    def latency_samples(self):
        ratio = self.sample_rate / self.model_rate
        model_side = self.inner.latency_samples + self._pad + self._up[0].input_latency
        return int(round(self._down.input_latency + model_side * ratio))

    @property
    def samples_in(self):
        return self._samples_in

    def reset(self):
        self.inner.reset()
        self._down.reset()
        for r in self._up:
            r.reset()
        self._samples_in = 0
        self.samples_out = 0
        self._to_pad = self._pad
        self._to_trim = self._trim

    def push(self, block, gains):
        gains = self._checked_gains(gains)
        self._samples_in += block.shape[1]
        y = self.inner.push(self._down.process(block), gains)
        return self._up_all(y, flush=False)

    def flush(self, gains):
        gains = self._checked_gains(gains)
        expected = self._samples_in - self.samples_out
        silence = np.zeros((self.num_channels, self._trim + self.TAIL_MARGIN), np.float32)
        y = self.inner.push(np.concatenate([self._down.process(silence), self._down.process()],
                                           axis=1), gains)
        tail = self.inner.flush(gains)
        y = np.concatenate([y, tail], axis=2)
        out = self._up_all(y, flush=True)
        if out.shape[2] < expected:
            pad = np.zeros(out.shape[:2] + (expected - out.shape[2],), np.float32)
            out = np.concatenate([out, pad], axis=2)
        out = out[:, :, :expected]
        self.reset()
        return out

    def _up_all(self, y, flush):
        if self._to_pad:
            # (n_outputs, channels, pad + m): the aligning silence goes first, once.
            y = np.concatenate([np.zeros(y.shape[:2] + (self._to_pad,), np.float32), y], axis=2)
            self._to_pad = 0
        outs = []
        for r, yo in zip(self._up, y):
            o = r.process(np.ascontiguousarray(yo))
            if flush:
                o = np.concatenate([o, r.process()], axis=1)
            outs.append(o)
        out = np.stack(outs).astype(np.float32, copy=False)
        trim = min(self._to_trim, out.shape[2])
        self._to_trim -= trim
        out = out[:, :, trim:]
        self.samples_out += out.shape[2]
        return out


class CascadeRenderer(StemRenderer):
    """A :class:`~stemboard.models.CascadeModel` rendered by two :class:`Renderer` in series.

    The first renders each of its stems alone; its split stem feeds the second,
    which renders each kept stem alone.  Both use one-hot gains with the last
    stem residual (one masked inverse STFT fewer each), and the outputs' gains
    are applied to the stems' waveforms afterwards: the inverse STFT is
    linear, so that is the same as gain-weighting the masks.  The first's
    stems wait in a queue until the second has caught up, so every output
    stays aligned with the input, and the latency is the sum of both.
    Streaming equals offline because each stage does.

    The stems add up to the input, so the residual output (if asked for) is
    the stems weighted by one minus the other outputs' gains.
    """

    def __init__(self, model, num_channels, n_outputs, *, mask_mode="soft", residual=False):
        super().__init__(model.stems, num_channels, n_outputs, model.sample_rate,
                         mask_mode=mask_mode, residual=residual)
        self.model = model
        n1, n2 = len(model.first.stems), len(model.second.stems)
        n_keep = len(model.keep_index)
        self.first = Renderer(model.first, num_channels, n1, mask_mode=mask_mode,
                              residual=n1 >= 2)
        self.second = Renderer(model.second, num_channels, n_keep, mask_mode=mask_mode,
                               residual=n_keep >= 2, keep=model.keep_index)
        self._g1 = np.eye(n1, dtype=np.float32)[:self.first.n_gains]
        # One output per kept stem. Left-out stems have no mask, so their gains do
        # not matter; spreading them over the outputs keeps every stem's gains
        # summing to one (so the residual output is the last kept stem).
        g2 = np.full((n_keep, n2), 1.0 / n_keep, np.float32)
        g2[:, list(model.keep_index)] = np.eye(n_keep, dtype=np.float32)
        self._g2 = g2[:self.second.n_gains]
        stems = list(model.stems)
        self._direct = [(i, stems.index(s)) for i, s in enumerate(model.first.stems)
                        if i != model.split_index]
        self._split = [stems.index(model.second.stems[k]) for k in model.keep_index]
        self.reset()

    def _parts(self):
        return (self.first, self.second)

    @property
    def latency_samples(self):
        return self.first.latency_samples + self.second.latency_samples

    @property
    def samples_in(self):
        return self.first.samples_in

    def reset(self):
        self.first.reset()
        self.second.reset()
        self._queue = np.zeros((len(self._direct), self.num_channels, 0), np.float32)

    def _output_gains(self, gains):
        """(n_outputs, stems): ``gains`` and, for the residual output, one minus their sum."""
        gains = self._checked_gains(gains)
        if self.residual:
            gains = np.concatenate([gains, 1.0 - gains.sum(axis=0, keepdims=True)], axis=0)
        return gains

    def _mix(self, y1, y2, gains):
        """Queue the first's direct stems, take as many samples as the second gave,
        and weight both stages' stems into the outputs."""
        direct = [i for i, _ in self._direct]
        self._queue = np.concatenate([self._queue, y1[direct]], axis=2)
        n = y2.shape[2]
        d, self._queue = self._queue[:, :, :n], self._queue[:, :, n:]
        out = np.zeros((self.n_outputs, self.num_channels, n), np.float32)
        for o in range(self.n_outputs):
            for row, (_, c) in enumerate(self._direct):
                if gains[o, c] != 0.0:
                    out[o] += gains[o, c] * d[row]
            for row, c in enumerate(self._split):
                if gains[o, c] != 0.0:
                    out[o] += gains[o, c] * y2[row]
        return out

    def push(self, block, gains):
        gains = self._output_gains(gains)
        y1 = self.first.push(block, self._g1)
        y2 = self.second.push(y1[self.model.split_index], self._g2)
        return self._mix(y1, y2, gains)

    def flush(self, gains):
        gains = self._output_gains(gains)
        y1 = self.first.flush(self._g1)
        y2 = np.concatenate([self.second.push(y1[self.model.split_index], self._g2),
                             self.second.flush(self._g2)], axis=2)
        out = self._mix(y1, y2, gains)
        self.reset()
        return out


def make_renderer(model, num_channels, n_outputs, *, sample_rate=None, mask_mode="soft",
                  residual=False) -> StemRenderer:
    """The renderer for ``model`` fed at ``sample_rate`` (default: the model's).

    A :class:`ResampledRenderer` around the model-rate one when the rates
    differ; at the model's rate a :class:`CascadeRenderer` for a cascade, else a
    :class:`Renderer`.
    """
    if sample_rate is not None and sample_rate != model.sample_rate:
        return ResampledRenderer(model, num_channels, n_outputs, sample_rate,
                                 mask_mode=mask_mode, residual=residual)
    if isinstance(model, CascadeModel):
        return CascadeRenderer(model, num_channels, n_outputs, mask_mode=mask_mode,
                               residual=residual)
    return Renderer(model, num_channels, n_outputs, mask_mode=mask_mode, residual=residual)
