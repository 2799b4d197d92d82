"""Load and run ONNX mask models with onnxruntime."""
from __future__ import annotations

import hashlib
import threading
import warnings
from pathlib import Path

import numpy as np

from stemboard.models.cascade import CascadeManifest, CascadeModel, is_cascade, part_path
from stemboard.models.manifest import Manifest, ModelError, Named, check_mask_mode

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = "hq"   # best valid quality at >= 20x real time (docs/benchmarks.md)


def bundled_models() -> dict:
    """Names of the models shipped with the package, mapped to their paths: the
    ``.onnx`` of a mask model, the ``.json`` of a cascade
    (:mod:`stemboard.models.cascade`)."""
    found = {p.stem: p for p in WEIGHTS_DIR.glob("*.onnx")}
    found.update({p.stem: p for p in WEIGHTS_DIR.glob("*.json")
                  if p.stem not in found and is_cascade(p)})
    return dict(sorted(found.items()))


def resolve_model_path(name_or_path) -> Path:
    """Resolve a bundled model name (``"hq"``, ``"offline"``, ...) or a file path.

    A path may name the ``.onnx`` file or its ``.json`` manifest, or a cascade
    manifest.
    """
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    bundled = bundled_models()
    if isinstance(name_or_path, str) and name_or_path in bundled:
        return bundled[name_or_path]
    path = Path(name_or_path)
    if is_cascade(path):
        return path
    if path.suffix == ".json":
        path = path.with_suffix(".onnx")
    if not path.exists():
        hint = f" (bundled models: {', '.join(bundled) or 'none'})"
        raise ModelError(f"{name_or_path}: no such model file or bundled model{hint}")
    return path


def _dim(d):
    return d if isinstance(d, int) else None


def pair_features(features, silent=None):
    """The ``"stereo_pair"`` graph input from per-signal features.

    Parameters
    ----------
    features : ndarray, shape (channels, bins, time), float32
        Normalised features of the signals of one stream (left/right, or mid/side).
    silent : ndarray, shape (bins,), optional
        The features of silence.  Given, a mono signal is paired with silence (the
        side of a mono signal is silent); otherwise with itself (left == right).

    Returns
    -------
    ndarray, shape (channels, 2 * bins, time), float32
        For channel ``c``: its own features, then the other channel's (with more
        than two channels, the mean of the others).
    """
    c = features.shape[0]
    if c == 1:
        other = features if silent is None else np.broadcast_to(
            np.asarray(silent, np.float32)[None, :, None], features.shape)
    elif c == 2:
        other = features[::-1]
    else:
        other = (features.sum(axis=0, keepdims=True) - features) / np.float32(c - 1)
    return np.ascontiguousarray(np.concatenate([features, other], axis=1), np.float32)


def load_model(name_or_path=None, *, providers=None, num_threads=None):
    """A :class:`MaskModel`, or a :class:`~stemboard.models.cascade.CascadeModel`
    when the name or path is a cascade; a loaded model is returned as it is."""
    if isinstance(name_or_path, (MaskModel, CascadeModel)):
        return name_or_path
    path = resolve_model_path(name_or_path)
    if is_cascade(path):
        return CascadeModel(path, providers=providers, num_threads=num_threads,
                            loader=load_model)
    return MaskModel(path, providers=providers, num_threads=num_threads)


def model_info(name_or_path=None) -> dict:
    """What the manifests say of a model, without loading any graph.

    Returns ``{"name", "stems", "sample_rate", "latency_samples", "stereo",
    "description", "path"}``; for a cascade, its parts' latencies add up, and
    ``"parts"`` holds the paths of its two models.
    """
    path = resolve_model_path(name_or_path)
    if is_cascade(path):
        c = CascadeManifest.load(path)

        first, second = (model_info(part_path(path, ref)) for ref in (c.first, c.second))
        return {"name": c.name or path.stem, "stems": c.stems(first["stems"], str(path)),
                "sample_rate": first["sample_rate"],
                "latency_samples": first["latency_samples"] + second["latency_samples"],
                "stereo": f"{first['stereo']}, then {second['stereo']}",
                "description": c.description, "path": path,
                "parts": (first["path"], second["path"])}
    m = Manifest.load(path.with_suffix(".json"))
    stereo = {"mid_side": "mid/side", "left_right": "left/right"}[m.stereo_mode]
    if m.input_layout == "stereo_joint":
        stereo += " (joint)"
    return {"name": m.name or path.stem, "stems": m.stems, "sample_rate": m.sample_rate,
            "latency_samples": m.latency_samples, "stereo": stereo,
            "description": m.description, "path": path}


#: Runs of fewer frames than this use the single-threaded session (streaming).
SMALL_RUN_FRAMES = 16

#: Batch sizes whose one-frame runs get a fixed-shape session of their own
#: (:meth:`MaskModel.step`); further ones use the single-threaded session.
MAX_FRAME_SESSIONS = 4


def _session(path, providers, num_threads, *, fixed_dims=None):
    """An onnxruntime session with stemboard's options; ``num_threads=None``: ORT's
    default intra-op threads (all cores); ``fixed_dims``: {symbolic dimension name:
    size} to build the session for those sizes only."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    for name, size in (fixed_dims or {}).items():
        opts.add_free_dimension_override_by_name(name, int(size))
    opts.log_severity_level = 3
    # Idle ORT worker threads otherwise busy-wait after each run, taking the cores
    # the engine's per-channel kernel threads (dsp/threads.py) run on next: with
    # spinning, those threads made a 60 s separation slower (56-58x real time
    # against 65-69x without them); without it, faster (79-83x).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Not "session.set_denormal_as_zero": it switches the creating thread to
    # flush-to-zero for good (the caller's numpy included); the engine zeroes
    # subnormal graph outputs itself (dsp.kernels.flush_tiny).
    if num_threads is not None:
        opts.intra_op_num_threads = int(num_threads)
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=providers)


def _check_hash(path, manifest):
    """A manifest that records its graph's sha256 (converted third-party weights) must
    match the file: a damaged download or an edited graph is refused by name."""
    want = manifest.extra.get("source", {}).get("onnx_sha256") if isinstance(
        manifest.extra.get("source"), dict) else None
    if not want:
        return
    got = sha256(path)
    if got != want:
        raise ModelError(f"{path}: sha256 {got} does not match the manifest's "
                         f"{want} (corrupt or modified weights)")


def sha256(path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class MaskModel(Named):
    """An ONNX mask model plus its manifest.

    Parameters
    ----------
    path : str or Path
        A bundled model name, an ``.onnx`` file (the manifest is the ``.json``
        beside it) or the manifest itself.
    providers : list of str, optional
        onnxruntime execution providers, ``["CPUExecutionProvider"]`` by default.
    num_threads : int, optional
        Intra-op threads; onnxruntime's default (all cores) when omitted.
    """

    def __init__(self, path=None, *, providers=None, num_threads=None):
        import onnxruntime as ort

        self.path = resolve_model_path(path)
        self.manifest = Manifest.load(self.path.with_suffix(".json"))
        _check_hash(self.path, self.manifest)
        if num_threads is not None and int(num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        providers = list(providers or ["CPUExecutionProvider"])
        unknown = [p for p in providers if p not in ort.get_available_providers()]
        if unknown:
            raise ModelError(f"execution provider(s) {unknown} not available; "
                             f"available: {ort.get_available_providers()}")
        try:
            self.session = _session(self.path, providers, num_threads)
        except Exception as e:  # onnxruntime raises several unrelated types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"{self.path}: not a loadable ONNX model ({first})") from None
        # Streaming runs a stateful graph a frame or two at a time.  Split over
        # threads, such a run waits for a sleeping worker to wake (and, on a busy
        # machine, for a core): the p99 block time at 512 samples was 0.21 of the
        # budget with two threads and 0.13 with one (offline model, side by side).
        # Small runs therefore get a session of their own on the calling thread.
        self._small_session = None
        if self.manifest.stateful and (num_threads is None or int(num_threads) > 1):
            self._small_session = _session(self.path, providers, 1)
        self._providers = providers
        self._frame_sessions = {}    # batch -> fixed-shape session for one-frame runs
        self._frame_lock = threading.Lock()
        self._check_graph()

    # -- properties -------------------------------------------------------
    @property
    def stems(self) -> tuple:
        return self.manifest.stems

    @property
    def sample_rate(self) -> int:
        return self.manifest.sample_rate

    @property
    def latency_samples(self) -> int:
        """Streaming latency at the model's rate (see :class:`Manifest`)."""
        return self.manifest.latency_samples

    def __repr__(self):
        m = self.manifest
        return (f"MaskModel({str(self.path)!r}, stems={list(m.stems)}, sr={m.sample_rate}, "
                f"n_fft={m.n_fft}, hop={m.hop}, context={m.context_frames}, "
                f"lookahead={m.lookahead_frames})")

    # -- checks -----------------------------------------------------------
    def _check_graph(self):
        m = self.manifest
        where = str(self.path)
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        if m.input_name not in inputs:
            raise ModelError(f"{where}: graph has no input {m.input_name!r} "
                             f"(inputs: {list(inputs)})")
        if m.output_name not in outputs:
            raise ModelError(f"{where}: graph has no output {m.output_name!r} "
                             f"(outputs: {list(outputs)})")
        shape_in = inputs[m.input_name].shape
        if len(shape_in) != 3:
            raise ModelError(f"{where}: input must be (batch, bins, time), got {shape_in}")
        # The names of the input's batch and time dimensions, which a one-frame
        # session fixes (None where they are not two distinct names).
        named = [d for d in (shape_in[0], shape_in[2]) if isinstance(d, str)]
        self._free_dims = tuple(named) if len(set(named)) == 2 else None
        if _dim(shape_in[1]) not in (None, m.input_bins):
            raise ModelError(f"{where}: graph takes {shape_in[1]} bins but the manifest "
                             f"(model_bins={m.model_bins}, input_layout={m.input_layout!r}) "
                             f"implies {m.input_bins}")
        shape_out = outputs[m.output_name].shape
        if len(shape_out) != 4:
            layout = ("(batch, time, stems, bins)" if m.mask_layout == "frames"
                      else "(batch, stems, bins, time)")
            raise ModelError(f"{where}: output must be {layout}, got {shape_out}")
        self._states = self._check_states(inputs, outputs)
        # Paired graphs (manifest input_layout "stereo_pair") get each signal's
        # features followed by the other's; in mid/side a mono signal's partner is
        # a silent side.
        self._paired = m.input_layout == "stereo_pair"
        self._silent = (m.normalize(np.zeros((1, m.model_bins, 1), np.float32))[0, :, 0]
                        if self._paired and m.stereo_mode == "mid_side" else None)
        # A probe run checks what static shapes cannot: the receptive field, or
        # that a segmented graph keeps a segment's length.
        frames = m.segment_frames if m.segmented else m.receptive_field + 2
        probe = np.zeros((1, m.model_bins, frames), np.float32)
        try:
            out = self.run(probe)
        except Exception as e:
            raise ModelError(f"{where}: probe run failed ({str(e).splitlines()[0]})") from None
        expected = (1, len(m.stems), m.model_bins, m.segment_frames if m.segmented else 3)
        if out.shape != expected:
            what = (f"segment_frames={m.segment_frames}" if m.segmented else
                    f"context={m.context_frames}, lookahead={m.lookahead_frames}")
            raise ModelError(
                f"{where}: graph returns {out.shape} for {probe.shape[2]} input frames (read as "
                f"mask_layout {m.mask_layout!r}, shown as (batch, stems, bins, time)); the "
                f"manifest (stems={len(m.stems)}, {what}) implies {expected}")

    def _check_states(self, inputs, outputs) -> list:
        """[(input name, output name, (channels, frames))] of a stateful graph."""
        m = self.manifest
        where = str(self.path)
        extra = [n for n in inputs if n != m.input_name]
        if not m.stateful:
            if extra:
                raise ModelError(f"{where}: graph has inputs {extra} besides "
                                 f"{m.input_name!r}, but the manifest is not stateful")
            return []
        states = []
        for i in range(len(extra)):
            name, nxt = f"state_{i}", f"state_{i}_next"
            if name not in inputs or nxt not in outputs:
                raise ModelError(f"{where}: a stateful graph needs inputs state_0..state_"
                                 f"{len(extra) - 1} and outputs state_i_next; has inputs "
                                 f"{list(inputs)} and outputs {list(outputs)}")
            shape = inputs[name].shape
            if len(shape) != 3 or _dim(shape[1]) is None or _dim(shape[2]) is None:
                raise ModelError(f"{where}: {name} must be (batch, channels, frames) with "
                                 f"fixed channels and frames, got {shape}")
            states.append((name, nxt, (shape[1], shape[2])))
        if not states:
            raise ModelError(f"{where}: the manifest says stateful but the graph has no "
                             "state inputs")
        return states

    # -- inference --------------------------------------------------------
    def raw_masks(self, magnitude: np.ndarray) -> np.ndarray:
        """Run the graph on raw magnitudes.

        Parameters
        ----------
        magnitude : ndarray, shape (batch, model_bins, time), float32
            ``time`` must be at least ``context_frames + lookahead_frames + 1``.

        Returns
        -------
        ndarray, shape (batch, stems, model_bins, time - context - lookahead), float32
            A transposed view of the graph's output when its manifest's
            ``mask_layout`` is ``"frames"``.
        """
        return self.run(self.manifest.normalize(np.ascontiguousarray(magnitude, np.float32)))

    def run(self, features: np.ndarray, *, channels: int | None = None) -> np.ndarray:
        """Run the graph on already normalised features; shapes as :meth:`raw_masks`.

        With a paired or joint layout the batch holds the signals of streams,
        ``channels`` at a time in channel order (default: the whole batch is one
        stream): a paired graph pairs each with the others; a joint graph reads
        a stereo stream's two channels together, and any other signal as a
        pair of itself."""
        m = self.manifest
        if m.input_layout == "stereo_joint":
            return self._run_joint(features, channels or features.shape[0])
        if not self._states:
            return self._logical(
                self.session.run([m.output_name], {m.input_name: self._input(features)})[0])
        # A stateful graph from zero states: its first receptive_field - 1 output
        # frames saw the zeros, the rest are exactly the stateless output.
        masks, _ = self.step(features, self.zero_state(features.shape[0]))
        return masks[..., m.receptive_field - 1:]

    @property
    def stateful(self) -> bool:
        """Whether the graph carries its layers' input frames between calls (:meth:`step`)."""
        return bool(self._states)

    def zero_state(self, batch: int) -> list:
        """All-zero states for :meth:`step`, one (batch, channels, frames) array each."""
        return [np.zeros((batch, c, f), np.float32) for _, _, (c, f) in self._states]

    def step(self, features: np.ndarray, state: list):
        """Run a stateful graph on new frames.

        Parameters
        ----------
        features : ndarray, shape (batch, model_bins, time), float32
            Normalised features of the frames that follow the ones ``state`` has seen.
        state : list of ndarray
            From :meth:`zero_state` or the previous call.

        Returns
        -------
        masks : ndarray, shape (batch, stems, model_bins, time), float32
            Frame ``j`` is the mask of input frame ``j - lookahead_frames`` (counting
            the frames of earlier calls).
        state : list of ndarray
            To pass to the next call.
        """
        if not self._states:
            raise ModelError(f"{self.path}: step() needs a stateful graph")
        m = self.manifest
        x = self._input(features)
        feeds = {m.input_name: x}
        feeds.update({name: s for (name, _, _), s in zip(self._states, state)})
        out = self._step_session(x).run([m.output_name, *(n for _, n, _ in self._states)],
                                        feeds)
        return self._logical(out[0]), out[1:]

    def _step_session(self, x):
        """The session for a stateful run of the graph input ``x`` (batch, bins, time).

        Long runs (offline blocks) use every core.  Streaming runs a frame or two
        at a time, on one thread (``_small_session``).  A one-frame run, what a
        host's block of up to ``hop`` samples brings, gets a session built for
        its batch size with the batch and time fixed: ONNX Runtime then folds the
        graph's shape arithmetic away, and a 512-sample streaming block of
        ``offline`` takes about a tenth less time, the same output to the bit
        (``bench/step_sessions.py``).  Each is built on its batch's first
        one-frame run (15-20 ms; :meth:`~stemboard.plugin.base.Processor.prepare`
        does that before the audio starts).
        """
        small = self._small_session or self.session
        batch, frames = x.shape[0], x.shape[2]
        if frames != 1 or self._free_dims is None:
            return small if frames < SMALL_RUN_FRAMES else self.session
        session = self._frame_sessions.get(batch)
        if session is None:
            with self._frame_lock:
                session = self._frame_sessions.get(batch)
                if session is None and len(self._frame_sessions) < MAX_FRAME_SESSIONS:
                    session = self._frame_sessions[batch] = self._frame_session(batch)
        return session or small

    def _frame_session(self, batch):
        """A single-threaded session for one-frame runs of ``batch`` signals, or False
        where ONNX Runtime cannot build one (then the general session runs them: the
        fixed shapes are a speed-up, never a condition)."""
        batch_dim, time_dim = self._free_dims
        try:
            return _session(self.path, self._providers, 1,
                            fixed_dims={batch_dim: batch, time_dim: 1})
        except Exception:  # onnxruntime raises several unrelated types
            return False

    def _logical(self, masks):
        """The graph's masks as (batch, stems, bins, time): a view of frame-major ones."""
        return masks.transpose(0, 2, 3, 1) if self.manifest.mask_layout == "frames" else masks

    def _run_joint(self, features, channels):
        m = self.manifest
        if channels == 2 and features.shape[0] % 2 == 0:
            return self._logical(self.session.run([m.output_name], {m.input_name: features})[0])
        # Mono (or more than two channels): each signal is its own stereo pair.
        pairs = np.ascontiguousarray(np.repeat(features, 2, axis=0))
        return self._logical(self.session.run([m.output_name], {m.input_name: pairs})[0][::2])

    def _input(self, features):
        return pair_features(features, self._silent) if self._paired else features

    def masks(self, magnitude: np.ndarray, *, mask_mode: str = "soft",
              mode: str | None = None) -> np.ndarray:
        """Masks normalised to sum to one over stems.

        ``mask_mode="soft"`` divides by the sum over stems; ``"binary"`` keeps
        only the largest mask per bin (the article's perceptual binarisation).
        Shapes as :meth:`raw_masks`.  ``mode`` is the deprecated name of
        ``mask_mode``.
        """
        if mode is not None:
            warnings.warn("MaskModel.masks(mode=) is deprecated; use mask_mode=",
                          DeprecationWarning, stacklevel=2)
            mask_mode = mode
        return normalize_masks(self.raw_masks(magnitude), check_mask_mode(mask_mode))


def normalize_masks(raw: np.ndarray, mask_mode: str = "soft") -> np.ndarray:
    """Make masks (batch, stems, bins, time) sum to exactly one over stems.

    Negative and NaN values count as zero, and a bin no stem claims is split
    evenly. ``"soft"`` divides by the sum over stems; ``"binary"`` gives each
    bin wholly to its largest stem (the article's perceptual binarisation).
    This is the reference for the engine's fused Numba kernel.
    """
    check_mask_mode(mask_mode)
    raw = np.maximum(np.nan_to_num(raw.astype(np.float32, copy=False), nan=0.0), 0.0)
    total = raw.sum(axis=1, keepdims=True)
    n = raw.shape[1]
    if mask_mode == "binary":
        out = np.zeros_like(raw)
        np.put_along_axis(out, np.argmax(raw, axis=1)[:, None], 1.0, axis=1)
    else:
        out = raw / np.maximum(total, 1e-12)
    # Where the model gives nothing to any stem, split evenly rather than drop audio.
    return np.where(total > 1e-12, out, np.float32(1.0 / n)).astype(np.float32)
