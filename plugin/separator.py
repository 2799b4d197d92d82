"""``StemSeparator``: neural stem separation as a pedalboard-style effect."""

import numpy as np

from stemboard.dsp.gains import db_to_gain
from stemboard.models.manifest import check_mask_mode
from stemboard.models.runtime import load_model
from stemboard.plugin.base import (DEFAULT_BUFFER_SIZE, MIN_OFFLINE_BUFFER_SIZE, ChannelLayout,
                                   Processor)
from stemboard.plugin.stem_controls import StemGainControls
from stemboard.plugin.engine import make_renderer


class StemSeparator(StemGainControls, Processor):
    """Separate audio into stems with an ONNX mask model, and remix them.

    The input's STFT is multiplied by masks that sum to one over stems, so with
    every gain at 0 dB the output equals the input (a lossless remix), and the
    stems from :meth:`separate` add up to the input.

    Parameters
    ----------
    model : str, Path, MaskModel or CascadeModel, optional
        A bundled model name (``"hq"``, ``"hq-vocals"``, ``"offline"``,
        ``"live"``; see ``stemboard models``), an ``.onnx`` path with its
        ``.json`` manifest beside it, a cascade manifest, or a loaded model.
    gains_db : dict, optional
        Gain per stem in dB, from -120 to +24 dB, or ``-inf`` to mute (see
        ``stemboard.dsp.gains``). Stems not named stay at 0 dB.
    mix : float
        Dry/wet balance, 0 (input only) to 1 (remix only).
    mask_mode : {"soft", "binary"}
        Soft masks, or the article's binary masks (each bin goes to one stem).
    num_threads : int, optional
        onnxruntime threads (when ``model`` is not already loaded).
    providers : list of str, optional
        onnxruntime execution providers; CPU by default.

    Notes
    -----
    Any sample rate works: other rates are resampled to the model's rate and
    back with pedalboard's ``StreamResampler``. Any number of channels works.
    Stereo is separated as its mid (L+R)/2 and side (L-R)/2 signals when the
    model's manifest says ``"stereo_mode": "mid_side"`` (the bundled models
    do), and the stems are mapped back to left/right; otherwise, and for every
    other channel count, each channel is separated on its own.
    """

    def __init__(self, model=None, *, gains_db=None, mix=1.0, mask_mode="soft",
                 num_threads=None, providers=None):
        super().__init__()
        self.model = load_model(model, num_threads=num_threads, providers=providers)
        self._mix_renderer = None
        self._stem_renderer = None
        self._stem_names = None
        self._gains_db = {s: 0.0 for s in self.stems}
        self.mix = mix
        self.mask_mode = mask_mode
        for stem, db in (gains_db or {}).items():
            self.set_gain(stem, db)

    # -- parameters -----------------------------------------------------------
    @property
    def stems(self):
        """Stem names, in model order."""
        return tuple(self.model.stems)

    @property
    def sample_rate(self):
        """The model's sample rate."""
        return self.model.sample_rate

    @property
    def mix(self):
        return self._mix

    @mix.setter
    def mix(self, value):
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"mix must be between 0 and 1, got {value}")
        self._mix = value

    @property
    def mask_mode(self):
        return self._mask_mode

    @mask_mode.setter
    def mask_mode(self, value):
        self._mask_mode = check_mask_mode(value)
        for r in self._renderers():
            r.mask_mode = value

    def _renderers(self):
        """The renderers built so far."""
        return [r for r in (self._mix_renderer, self._stem_renderer) if r is not None]

    def gain_vector(self):
        """Linear gain per stem with dry/wet folded in, shape (stems,).

        Because masks sum to one, ``mix * g_s + (1 - mix)`` per stem gives
        ``mix * remix + (1 - mix) * input`` exactly.
        """
        g = np.array([db_to_gain(self._gains_db[s]) for s in self.stems], np.float32)
        return self._mix * g + (1.0 - self._mix)

    @property
    def latency_samples(self):
        """Streaming latency in samples at the last sample rate used (model rate before)."""
        r = self._mix_renderer or self._stem_renderer
        if r is not None:
            return r.latency_samples
        return self.model.latency_samples

    # -- processing ---------------------------------------------------------------
    def _renderer(self, current, x, sample_rate, n_outputs, reset, residual=False):
        """``current`` if it renders this layout, else a new renderer (refused in the
        middle of a stream)."""
        layout = (x.shape[0], n_outputs, sample_rate, residual)
        if current is not None and _layout(current) == layout:
            return current
        if current is not None and not reset and current.samples_in:
            raise ValueError(f"{_stream_change(current, layout)} in the middle of a stream; "
                             "call reset() or flush() first")
        return make_renderer(self.model, x.shape[0], n_outputs, sample_rate=sample_rate,
                             mask_mode=self._mask_mode, residual=residual)

    def _run(self, renderer, x, gains, buffer_size, reset):
        if not reset:
            pieces = [renderer.push(x[:, i:i + buffer_size], gains)
                      for i in range(0, x.shape[1], buffer_size)]
            if not pieces:
                return np.zeros((renderer.n_outputs, x.shape[0], 0), np.float32)
            return np.concatenate(pieces, axis=2)
        # Offline: the output is exactly as long as the input, so fill it in
        # place rather than concatenating (one copy fewer of every stem).
        renderer.reset()
        out = np.empty((renderer.n_outputs,) + x.shape, np.float32)
        pos = 0
        step = max(buffer_size, MIN_OFFLINE_BUFFER_SIZE)
        for i in range(0, x.shape[1], step):
            pos += renderer.push_into(x[:, i:i + step], gains, out, pos)
        y = renderer.flush(gains)
        if pos + y.shape[2] != x.shape[1]:
            # Not an assert: under python -O it would vanish and wrong audio would
            # be returned silently.
            raise RuntimeError(f"internal error: rendered {pos + y.shape[2]} samples for an "
                               f"input of {x.shape[1]}")
        out[:, :, pos:pos + y.shape[2]] = y
        return out

    def _process(self, x, sample_rate, buffer_size, reset):
        self._mix_renderer = self._renderer(self._mix_renderer, x, sample_rate, 1, reset)
        return self._run(self._mix_renderer, x, self.gain_vector()[None], buffer_size, reset)[0]

    def _flush(self):
        if self._mix_renderer is None:
            return np.zeros((1, 0), np.float32)
        return self._mix_renderer.flush(self.gain_vector()[None])[0]

    def _reset(self):
        for r in self._renderers():
            r.reset()

    def separate(self, input_array, sample_rate, *, stems=None,
                 buffer_size=DEFAULT_BUFFER_SIZE, reset=True):
        """Split audio into stems.

        Parameters
        ----------
        input_array : ndarray, shape (samples,), (channels, samples) or (samples, channels)
        sample_rate : float
        stems : list of str, optional
            Which stems to return (all by default).
        buffer_size : int
        reset : bool
            As in :meth:`process`; with ``reset=False`` finish with
            :meth:`flush_stems`.

        Returns
        -------
        dict of str to ndarray
            One float32 array per stem, in the input's layout and aligned with
            it. With every stem requested they sum to the input.
        """
        names = list(self.stems if stems is None else stems)
        for s in names:
            self._check_stem(s)
        if not names:
            raise ValueError("stems must name at least one stem")
        with self._exclusive("separate"):
            x, tag, sr, bs = self._validate(input_array, sample_rate, buffer_size)
            if (not reset and self._stem_names not in (None, names)
                    and self._stem_renderer.samples_in):
                raise ValueError("the stems requested changed in the middle of a stream")
            # With every stem requested, the stems add up to the input, so the last
            # is the input minus the others (the renderer's residual output).
            residual = len(names) >= 2 and sorted(names) == sorted(self.stems)
            renderer = self._renderer(self._stem_renderer, x, sr, len(names), reset,
                                      residual=residual)
            self._stem_names, self._stem_renderer = names, renderer
            out = self._run(renderer, x, self._stem_gains(names, renderer), bs, reset)
            self._accept(x, tag)
            return {s: ChannelLayout.restore(y, tag) for s, y in zip(names, out)}

    def flush_stems(self):
        """End a ``separate(..., reset=False)`` stream; returns the tail per stem."""
        with self._exclusive("flush_stems"):
            if self._stem_renderer is None:
                return {}
            out = self._stem_renderer.flush(self._stem_gains(self._stem_names,
                                                             self._stem_renderer))
            tag = self._last_tag or "first"
            return {s: ChannelLayout.restore(y, tag) for s, y in zip(self._stem_names, out)}

    def _stem_gains(self, names, renderer):
        """One-hot gains, (n_gains, stems): one row per stem in ``names``, but for the
        renderer's residual output (the last)."""
        rows = names[:renderer.n_gains]
        return np.array([[float(s == t) for t in self.stems] for s in rows],
                        np.float32).reshape(len(rows), len(self.stems))

    def __repr__(self):
        gains = ", ".join(f"{s}={g:+.1f}dB" for s, g in self._gains_db.items())
        return (f"StemSeparator(model={self.model.name!r}, "
                f"{gains}, mix={self._mix}, mask_mode={self._mask_mode!r})")


def _layout(renderer):
    """What a renderer was built for: (channels, outputs, sample rate, residual)."""
    return (renderer.num_channels, renderer.n_outputs, renderer.sample_rate, renderer.residual)


def _stream_change(current, layout):
    """Say what a block changed about a running stream: its rate, its channel
    count, or (a different set of stems asked for) its outputs."""
    n_ch, n_outputs, sample_rate, _ = layout
    if current.sample_rate != sample_rate:
        return (f"sample rate changed from {current.sample_rate:g} Hz to {sample_rate:g} Hz")
    if current.num_channels != n_ch:
        return f"channel count changed from {current.num_channels} to {n_ch}"
    return f"output count changed from {current.n_outputs} to {n_outputs}"
