"""Converters that turn third-party pretrained weights into stemboard mask models.

They need the ``[train]`` extra (torch, onnx); the runtime never imports them.
"""
