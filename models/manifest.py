"""The JSON manifest that travels beside every ONNX mask model."""
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stemboard.dsp.normalization import LOG1P, normalize_log1p
from stemboard.models.modes import MASK_MODES
from stemboard.models.versioning import check_version

MANIFEST_FORMAT = "stemboard-mask-model"
#: The version that introduced each manifest feature.  A manifest is written with
#: the lowest version that can read it (:meth:`Manifest.required_version`), and
#: readers refuse versions newer than theirs.
FEATURE_VERSIONS = {"stateful": 2, "stereo_pair": 3, "segments": 4, "stereo_joint": 4,
                    "to_stem": 4, "frame_major": 5}
MANIFEST_VERSION = max(FEATURE_VERSIONS.values())
NORMALIZATIONS = ("none", LOG1P)
HIGH_BAND_RULES = ("hold_top_bin", "to_stem")
STEREO_MODES = ("left_right", "mid_side")
INPUT_LAYOUTS = ("channel", "stereo_pair", "stereo_joint")
MASK_LAYOUTS = ("bins", "frames")


class ModelError(ValueError):
    """A model file or manifest is missing, corrupt or inconsistent."""


def check_mask_mode(value, *, name="mask_mode") -> str:
    """Return ``value`` if it is one of :data:`MASK_MODES`, else raise ``ValueError``
    naming ``name`` (the one check of a mask mode: API, presets and CLI)."""
    if value not in MASK_MODES:
        raise ValueError(f"{name} must be 'soft' or 'binary', got {value!r}")
    return value


class Named:
    """``name`` and ``description`` of a loaded model, from its ``manifest`` and ``path``."""

    @property
    def name(self) -> str:
        return self.manifest.name or self.path.stem

    @property
    def description(self) -> str:
        return self.manifest.description


@dataclass(frozen=True)
class Manifest:
    """What the runtime needs to know about a mask model.

    The graph maps ``magnitude`` (batch, model_bins, time) float32 to ``masks``
    (batch, stems, model_bins, time - context_frames - lookahead_frames): the
    mask for input frame ``t`` is computed from frames ``t - context_frames`` to
    ``t + lookahead_frames`` (a "valid" convolution over time).

    A ``stateful`` graph also takes inputs ``state_0 .. state_{n-1}`` (batch,
    channels, frames) and returns ``state_i_next`` of the same shapes: the input
    frames its layers carry from one call to the next.  Its ``masks`` have as
    many frames as ``magnitude``; frame ``j`` is the mask whose receptive field
    ends at input frame ``j``.  With zero states and the first
    ``receptive_field - 1`` frames dropped it is the stateless contract above.

    ``stereo_mode`` says which two signals a stereo input is separated as:
    ``"left_right"`` (each channel on its own) or ``"mid_side"`` (the mid
    ``(L + R) / 2`` and side ``(L - R) / 2`` signals, each on its own, and the
    stems mapped back to left/right).  Mono and other channel counts are
    always separated channel by channel.

    ``input_layout`` says what the graph sees of each of those signals:
    ``"channel"`` its own features, ``(batch, model_bins, time)``, or
    ``"stereo_pair"`` its own features followed by the other signal's,
    ``(batch, 2 * model_bins, time)`` (see
    :func:`stemboard.models.runtime.pair_features`); the masks are always for
    the signal itself.  ``"stereo_joint"`` graphs read both channels of a stereo
    stream together: the batch holds (left, right) pairs, and the masks are
    each channel's own (a mono signal is fed as a pair of itself).

    A *segmented* graph (``segment_frames`` > 0) is not a valid convolution:
    it maps ``segment_frames`` frames to masks for the same frames.  The
    engine runs it on overlapping segments that start every
    ``segment_frames - segment_overlap`` frames and crossfades the overlaps
    linearly, so a frame's mask depends on at most ``segment_frames - 1``
    frames either side: ``context_frames`` and ``lookahead_frames`` must both
    say so.

    ``high_band_rule`` says what bins at or above ``model_bins`` get:
    ``"hold_top_bin"`` the masks of the top model bin, ``"to_stem"`` all of it
    to the stem named by ``high_band_stem`` (the others none).

    ``mask_layout`` says how the graph lays its ``masks`` out: ``"bins"``
    (batch, stems, model_bins, time), as above, or ``"frames"`` (batch, time,
    stems, model_bins).  The runtime hands both on as (batch, stems,
    model_bins, time) (a frame-major graph's as a transposed view), and the
    engine's overlap-add reads frame-major masks in their own order, each
    frame's contiguous: the faster layout for it (issue 28).  Segmented graphs
    are bin-major.
    """

    sample_rate: int
    n_fft: int
    hop: int
    model_bins: int
    stems: tuple
    context_frames: int
    lookahead_frames: int
    input_normalization: dict = field(default_factory=lambda: {"type": "none"})
    high_band_rule: str = "hold_top_bin"
    input_name: str = "magnitude"
    output_name: str = "masks"
    name: str = ""
    description: str = ""
    demo_only: bool = False
    stateful: bool = False
    stereo_mode: str = "left_right"
    input_layout: str = "channel"
    segment_frames: int = 0
    segment_overlap: int = 0
    high_band_stem: str = ""
    mask_layout: str = "bins"
    extra: dict = field(default_factory=dict)

    @property
    def latency_samples(self) -> int:
        """Streaming latency at the model's rate: the STFT's ``n_fft - hop``
        plus the lookahead frames."""
        return self.n_fft - self.hop + self.lookahead_frames * self.hop

    @property
    def input_bins(self) -> int:
        """Feature rows the graph takes per frame: ``model_bins``, twice that when paired."""
        return self.model_bins * (2 if self.input_layout == "stereo_pair" else 1)

    @property
    def segmented(self) -> bool:
        """Whether the graph runs on fixed segments (see the class notes)."""
        return self.segment_frames > 0

    @property
    def high_stem_index(self) -> int:
        """Stem index that takes the bins above the model's, or -1 (hold the top bin)."""
        return self.stems.index(self.high_band_stem) if self.high_band_rule == "to_stem" else -1

    def required_version(self) -> int:
        """The lowest manifest version that can read this one (see :data:`FEATURE_VERSIONS`)."""
        used = {"stateful": self.stateful, "stereo_pair": self.input_layout == "stereo_pair",
                "segments": self.segmented, "stereo_joint": self.input_layout == "stereo_joint",
                "to_stem": self.high_band_rule == "to_stem",
                "frame_major": self.mask_layout == "frames"}
        return max([1] + [FEATURE_VERSIONS[k] for k, on in used.items() if on])

    @property
    def receptive_field(self) -> int:
        return self.context_frames + self.lookahead_frames + 1

    def normalize(self, magnitude: np.ndarray) -> np.ndarray:
        """Apply the input normalisation to (batch, model_bins, time) magnitudes
        (numpy; the engine's kernel computes the same definition,
        :mod:`stemboard.dsp.normalization`)."""
        norm = self.input_normalization
        if norm["type"] == "none":
            return magnitude.astype(np.float32, copy=False)
        mean = np.asarray(norm.get("mean", 0.0), np.float32)
        std = np.asarray(norm.get("std", 1.0), np.float32)
        if mean.ndim:
            mean = mean[:, None]
        if std.ndim:
            std = std[:, None]
        x = normalize_log1p(magnitude, np.float32(norm.get("scale", 1.0)), mean, std)
        return x.astype(np.float32, copy=False)

    def feature_params(self):
        """``(log, scale, mean, std)`` for :func:`stemboard.dsp.kernels.log_features`.

        ``mean`` and ``std`` are float32 arrays of ``model_bins`` values.
        """
        norm = self.input_normalization
        log = norm["type"] == LOG1P
        full = np.ones(self.model_bins, np.float32)
        mean = full * np.asarray(norm.get("mean", 0.0) if log else 0.0, np.float32)
        std = full * np.asarray(norm.get("std", 1.0) if log else 1.0, np.float32)
        return log, float(norm.get("scale", 1.0)) if log else 1.0, mean, std

    def to_dict(self) -> dict:
        d = {
            "format": MANIFEST_FORMAT,
            "version": self.required_version(),
            "name": self.name,
            "description": self.description,
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "hop": self.hop,
            "model_bins": self.model_bins,
            "stems": list(self.stems),
            "context_frames": self.context_frames,
            "lookahead_frames": self.lookahead_frames,
            "input_normalization": self.input_normalization,
            "high_band_rule": self.high_band_rule,
            "input_name": self.input_name,
            "output_name": self.output_name,
            "demo_only": self.demo_only,
        }
        if self.stateful:
            d["stateful"] = True
        if self.stereo_mode != "left_right":
            # Readers that do not know the key separate left/right: still valid output.
            d["stereo_mode"] = self.stereo_mode
        if self.input_layout != "channel":
            d["input_layout"] = self.input_layout
        if self.segmented:
            d["segment_frames"] = self.segment_frames
            d["segment_overlap"] = self.segment_overlap
        if self.high_band_rule == "to_stem":
            d["high_band_stem"] = self.high_band_stem
        if self.mask_layout != "bins":
            d["mask_layout"] = self.mask_layout
        d.update(self.extra)
        return d

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, d: dict, source: str = "manifest") -> "Manifest":
        def fail(msg):
            raise ModelError(f"{source}: {msg}")

        if not isinstance(d, dict):
            fail("the manifest must be a JSON object")
        if d.get("format", MANIFEST_FORMAT) != MANIFEST_FORMAT:
            fail(f"format is {d.get('format')!r}, expected {MANIFEST_FORMAT!r}")
        check_version(d.get("version", 1), MANIFEST_VERSION, what="manifest", source=source,
                      error=ModelError)
        required = ("sample_rate", "n_fft", "hop", "model_bins", "stems",
                    "context_frames", "lookahead_frames")
        for key in required:
            if key not in d:
                fail(f"missing key {key!r}")
        ints = {}
        for key in ("sample_rate", "n_fft", "hop", "model_bins", "context_frames",
                    "lookahead_frames"):
            v = d[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
                fail(f"{key} must be an integer, got {v!r}")
            ints[key] = int(v)
            minimum = 0 if key in ("context_frames", "lookahead_frames") else 1
            if ints[key] < minimum:
                fail(f"{key} must be >= {minimum}, got {v!r}")
        if ints["n_fft"] % ints["hop"]:
            fail(f"n_fft ({ints['n_fft']}) must be a multiple of hop ({ints['hop']})")
        if ints["n_fft"] // ints["hop"] < 2:
            # The engine's Hann overlap-add cannot reconstruct with less overlap.
            fail(f"hop ({ints['hop']}) must be at most n_fft / 2 ({ints['n_fft'] // 2})")
        if ints["model_bins"] > ints["n_fft"] // 2 + 1:
            fail(f"model_bins ({ints['model_bins']}) exceeds the {ints['n_fft'] // 2 + 1} "
                 f"bins of n_fft {ints['n_fft']}")
        stems = d["stems"]
        if (not isinstance(stems, list) or not stems
                or not all(isinstance(s, str) and s for s in stems)):
            fail(f"stems must be a non-empty list of names, got {stems!r}")
        if len(set(stems)) != len(stems):
            fail(f"stem names must be unique, got {stems!r}")
        # Required: a graph fed raw magnitudes instead of its normalised features
        # still runs, but separates badly without a word (issue 24, defect 7).
        if "input_normalization" not in d:
            fail("missing key 'input_normalization' (use {\"type\": \"none\"} for raw "
                 "magnitudes)")
        norm = d["input_normalization"]
        if not isinstance(norm, dict) or norm.get("type") not in NORMALIZATIONS:
            fail(f"input_normalization.type must be one of {NORMALIZATIONS}, got {norm!r}")
        for key in ("mean", "std"):
            v = np.asarray(norm.get(key, 0.0 if key == "mean" else 1.0), np.float64)
            if v.ndim > 1 or (v.ndim == 1 and v.shape[0] != ints["model_bins"]):
                fail(f"input_normalization.{key} must be a number or "
                     f"{ints['model_bins']} numbers")
            if not np.all(np.isfinite(v)) or (key == "std" and np.any(v <= 0)):
                fail(f"input_normalization.{key} holds invalid values")
        if "mask_type" in d:
            # Never read: the mask mode is chosen at run time.  Old files keep loading.
            if d["mask_type"] not in MASK_MODES:
                fail(f"mask_type must be one of {MASK_MODES}, got {d['mask_type']!r}")
            warnings.warn(f"{source}: the manifest key 'mask_type' is deprecated and ignored "
                          "(the mask mode is chosen at run time: mask_mode=)",
                          DeprecationWarning, stacklevel=3)
        if d.get("high_band_rule", "hold_top_bin") not in HIGH_BAND_RULES:
            fail(f"high_band_rule must be one of {HIGH_BAND_RULES}")
        if not isinstance(d.get("stateful", False), bool):
            fail(f"stateful must be true or false, got {d['stateful']!r}")
        if d.get("stereo_mode", "left_right") not in STEREO_MODES:
            fail(f"stereo_mode must be one of {STEREO_MODES}, got {d.get('stereo_mode')!r}")
        if d.get("input_layout", "channel") not in INPUT_LAYOUTS:
            fail(f"input_layout must be one of {INPUT_LAYOUTS}, got {d.get('input_layout')!r}")
        if d.get("mask_layout", "bins") not in MASK_LAYOUTS:
            fail(f"mask_layout must be one of {MASK_LAYOUTS}, got {d.get('mask_layout')!r}")
        seg = {}
        for key in ("segment_frames", "segment_overlap"):
            v = d.get(key, 0)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                fail(f"{key} must be a non-negative integer, got {v!r}")
            seg[key] = v
        if seg["segment_frames"]:
            last = seg["segment_frames"] - 1
            if 2 * seg["segment_overlap"] > seg["segment_frames"] - 1:
                fail(f"segment_overlap ({seg['segment_overlap']}) must be less than half of "
                     f"segment_frames ({seg['segment_frames']})")
            if ints["context_frames"] != last or ints["lookahead_frames"] != last:
                fail(f"a segmented graph's context_frames and lookahead_frames must both be "
                     f"segment_frames - 1 = {last}, got {ints['context_frames']} and "
                     f"{ints['lookahead_frames']}")
            if d.get("stateful", False):
                fail("a graph cannot be both segmented and stateful")
            if d.get("input_layout", "channel") == "stereo_pair":
                fail("a segmented graph cannot take the stereo_pair layout")
            if d.get("mask_layout", "bins") != "bins":
                fail("a segmented graph's masks must be bin-major (mask_layout 'bins')")
        elif seg["segment_overlap"]:
            fail("segment_overlap needs segment_frames")
        high_stem = d.get("high_band_stem", "")
        if d.get("high_band_rule", "hold_top_bin") == "to_stem":
            if high_stem not in stems:
                fail(f"high_band_rule 'to_stem' needs high_band_stem, one of {stems}, "
                     f"got {high_stem!r}")
        elif high_stem:
            fail("high_band_stem is only read with high_band_rule 'to_stem'")
        known = {"format", "version", "name", "description", "input_normalization",
                 "mask_type", "high_band_rule", "input_name", "output_name", "demo_only",
                 "stateful", "stereo_mode", "input_layout", "segment_frames",
                 "segment_overlap", "high_band_stem", "mask_layout", *required}
        return cls(
            stems=tuple(stems),
            input_normalization=norm,
            high_band_rule=d.get("high_band_rule", "hold_top_bin"),
            input_name=d.get("input_name", "magnitude"),
            output_name=d.get("output_name", "masks"),
            name=d.get("name", ""),
            description=d.get("description", ""),
            demo_only=bool(d.get("demo_only", False)),
            stateful=d.get("stateful", False),
            stereo_mode=d.get("stereo_mode", "left_right"),
            input_layout=d.get("input_layout", "channel"),
            high_band_stem=high_stem,
            mask_layout=d.get("mask_layout", "bins"),
            **seg,
            extra={k: v for k, v in d.items() if k not in known},
            **ints,
        )

    @classmethod
    def load(cls, path) -> "Manifest":
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: model manifest not found")
        try:
            d = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelError(f"{path}: manifest is not valid JSON ({e})") from None
        return cls.from_dict(d, source=str(path))

