"""Load and run ONNX mask models with onnxruntime."""
from pathlib import Path

import numpy as np

from .manifest import Manifest, ModelError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = "offline"


def bundled_models() -> dict:
    """Names of the models shipped with the package, mapped to their ONNX paths."""
    return {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.onnx"))}


def resolve_model_path(name_or_path) -> Path:
    """Resolve a bundled model name (``"offline"``, ``"live"``) or a file path.

    A path may name the ``.onnx`` file or its ``.json`` manifest.
    """
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    bundled = bundled_models()
    if isinstance(name_or_path, str) and name_or_path in bundled:
        return bundled[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".json":
        path = path.with_suffix(".onnx")
    if not path.exists():
        hint = f" (bundled models: {', '.join(bundled) or 'none'})"
        raise ModelError(f"{name_or_path}: no such model file or bundled model{hint}")
    return path


def _dim(d):
    return d if isinstance(d, int) else None


class MaskModel:
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
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if num_threads is not None:
            if int(num_threads) < 1:
                raise ValueError(f"num_threads must be >= 1, got {num_threads}")
            opts.intra_op_num_threads = int(num_threads)
            opts.inter_op_num_threads = 1
        providers = list(providers or ["CPUExecutionProvider"])
        unknown = [p for p in providers if p not in ort.get_available_providers()]
        if unknown:
            raise ModelError(f"execution provider(s) {unknown} not available; "
                             f"available: {ort.get_available_providers()}")
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as e:  # onnxruntime raises several unrelated types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"{self.path}: not a loadable ONNX model ({first})") from None
        self._check_graph()

    # -- properties -------------------------------------------------------
    @property
    def stems(self) -> tuple:
        return self.manifest.stems

    @property
    def sample_rate(self) -> int:
        return self.manifest.sample_rate

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
        if _dim(shape_in[1]) not in (None, m.model_bins):
            raise ModelError(f"{where}: graph takes {shape_in[1]} bins but the manifest "
                             f"says model_bins={m.model_bins}")
        shape_out = outputs[m.output_name].shape
        if len(shape_out) != 4:
            raise ModelError(f"{where}: output must be (batch, stems, bins, time), "
                             f"got {shape_out}")
        # A probe run checks what static shapes cannot: the receptive field.
        probe = np.zeros((1, m.model_bins, m.receptive_field + 2), np.float32)
        try:
            out = self.session.run([m.output_name], {m.input_name: probe})[0]
        except Exception as e:
            raise ModelError(f"{where}: probe run failed ({str(e).splitlines()[0]})") from None
        expected = (1, len(m.stems), m.model_bins, 3)
        if out.shape != expected:
            raise ModelError(
                f"{where}: graph returns {out.shape} for {probe.shape[2]} input frames; the "
                f"manifest (stems={len(m.stems)}, context={m.context_frames}, "
                f"lookahead={m.lookahead_frames}) implies {expected}")

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
        """
        return self.run(self.manifest.normalize(np.ascontiguousarray(magnitude, np.float32)))

    def run(self, features: np.ndarray) -> np.ndarray:
        """Run the graph on already normalised features; shapes as :meth:`raw_masks`."""
        m = self.manifest
        return self.session.run([m.output_name], {m.input_name: features})[0]

    def masks(self, magnitude: np.ndarray, *, mode: str = "soft") -> np.ndarray:
        """Masks normalised to sum to one over stems.

        ``mode="soft"`` divides by the sum over stems; ``mode="binary"`` keeps
        only the largest mask per bin (the article's perceptual binarisation).
        Shapes as :meth:`raw_masks`.
        """
        return normalize_masks(self.raw_masks(magnitude), mode)


def normalize_masks(raw: np.ndarray, mode: str = "soft") -> np.ndarray:
    """Make masks (batch, stems, bins, time) sum to exactly one over stems.

    Negative and NaN values count as zero, and a bin no stem claims is split
    evenly. ``"soft"`` divides by the sum over stems; ``"binary"`` gives each
    bin wholly to its largest stem (the article's perceptual binarisation).
    This is the reference for the engine's fused Numba kernel.
    """
    if mode not in ("soft", "binary"):
        raise ValueError(f"mask mode must be 'soft' or 'binary', got {mode!r}")
    raw = np.maximum(np.nan_to_num(raw.astype(np.float32, copy=False), nan=0.0), 0.0)
    total = raw.sum(axis=1, keepdims=True)
    n = raw.shape[1]
    if mode == "binary":
        out = np.zeros_like(raw)
        np.put_along_axis(out, np.argmax(raw, axis=1)[:, None], 1.0, axis=1)
    else:
        out = raw / np.maximum(total, 1e-12)
    # Where the model gives nothing to any stem, split evenly rather than drop audio.
    return np.where(total > 1e-12, out, np.float32(1.0 / n)).astype(np.float32)
