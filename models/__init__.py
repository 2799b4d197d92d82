"""ONNX mask-model runtime: manifests, models, cascades, the bundled registry.

The runtime imports only numpy and onnxruntime. Training lives in
:mod:`stemboard.train` (the top-level ``train/`` folder), which imports this
runtime and never the reverse; it needs the ``[train]`` extra (torch).
"""
from stemboard.models.cascade import CascadeManifest, CascadeModel
from stemboard.models.manifest import Manifest, ModelError
from stemboard.models.runtime import (DEFAULT_MODEL, MaskModel, bundled_models, load_model, model_info,
                      normalize_masks,
                      pair_features, resolve_model_path)

__all__ = ["Manifest", "ModelError", "MaskModel", "CascadeModel", "CascadeManifest",
           "bundled_models", "load_model", "model_info", "normalize_masks", "pair_features",
           "resolve_model_path", "DEFAULT_MODEL"]
