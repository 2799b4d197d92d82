"""ONNX mask-model runtime: manifests, models, cascades, the bundled registry.

The runtime imports only numpy and onnxruntime. Training lives in
:mod:`stemboard.train` (the top-level ``train/`` folder), which imports this
runtime and never the reverse; it needs the ``[train]`` extra (torch).

The names below load on first use (PEP 562 module ``__getattr__``), so a light
module of this room (:mod:`stemboard.models.modes`, which the command line's
parser reads) does not pull in onnxruntime and the Numba kernels (issue 25 item 5).
"""
from importlib import import_module
from typing import TYPE_CHECKING

# Each public name and the module that defines it.
_EXPORTS = {
    "stemboard.models.cascade": ("CascadeManifest", "CascadeModel"),
    "stemboard.models.manifest": ("Manifest", "ModelError"),
    "stemboard.models.runtime": ("DEFAULT_MODEL", "MaskModel", "bundled_models", "load_model",
                                 "model_info", "normalize_masks", "pair_features",
                                 "resolve_model_path"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

if TYPE_CHECKING:  # what the names are, for readers, type checkers and tests/test_layers.py
    from stemboard.models.cascade import CascadeManifest, CascadeModel
    from stemboard.models.manifest import Manifest, ModelError
    from stemboard.models.runtime import (DEFAULT_MODEL, MaskModel, bundled_models, load_model,
                                          model_info, normalize_masks, pair_features,
                                          resolve_model_path)


def __getattr__(name):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'stemboard.models' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_MODULE_OF))


__all__ = ["Manifest", "ModelError", "MaskModel", "CascadeModel", "CascadeManifest",
           "bundled_models", "load_model", "model_info", "normalize_masks", "pair_features",
           "resolve_model_path", "DEFAULT_MODEL"]
