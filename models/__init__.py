"""ONNX mask-model runtime (and, in :mod:`stemboard.models.train`, training).

The runtime imports only numpy and onnxruntime; training code lives in the
``train`` subpackage and needs the ``[train]`` extra (torch).
"""
from .cascade import CascadeManifest, CascadeModel
from .manifest import Manifest, ModelError
from .runtime import (DEFAULT_MODEL, MaskModel, bundled_models, load_model, model_info,
                      normalize_masks,
                      pair_features, resolve_model_path)

__all__ = ["Manifest", "ModelError", "MaskModel", "CascadeModel", "CascadeManifest",
           "bundled_models", "load_model", "model_info", "normalize_masks", "pair_features",
           "resolve_model_path", "DEFAULT_MODEL"]
