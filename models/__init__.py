"""ONNX mask-model runtime: manifests, models, cascades, the bundled registry.

The runtime imports only numpy and onnxruntime. Training lives in
:mod:`stemboard.train` (the top-level ``train/`` folder), which imports this
runtime and never the reverse; it needs the ``[train]`` extra (torch).

The names below load on first use (PEP 562 module ``__getattr__``), so a light
module of this room (:mod:`stemboard.models.modes`, which the command line's
parser reads) does not pull in onnxruntime and the Numba kernels (issue 25 item 5).
"""
from typing import TYPE_CHECKING

from stemboard.models.lazy import lazy_exports

# Each public name and the module that defines it.
_EXPORTS = {
    "stemboard.models.cascade": ("CascadeManifest", "CascadeModel"),
    "stemboard.models.manifest": ("Manifest", "ModelError"),
    "stemboard.models.runtime": ("DEFAULT_MODEL", "MaskModel", "bundled_models", "load_model",
                                 "model_info", "normalize_masks", "pair_features",
                                 "resolve_model_path"),
}

if TYPE_CHECKING:  # what the names are, for readers, type checkers and tests/test_layers.py
    from stemboard.models.cascade import CascadeManifest, CascadeModel
    from stemboard.models.manifest import Manifest, ModelError
    from stemboard.models.runtime import (DEFAULT_MODEL, MaskModel, bundled_models, load_model,
                                          model_info, normalize_masks, pair_features,
                                          resolve_model_path)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)


__all__ = ["Manifest", "ModelError", "MaskModel", "CascadeModel", "CascadeManifest",
           "bundled_models", "load_model", "model_info", "normalize_masks", "pair_features",
           "resolve_model_path", "DEFAULT_MODEL"]
