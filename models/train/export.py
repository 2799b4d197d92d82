"""ONNX export of a trained :class:`MaskNet` (network only, no normalisation)."""
from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch

OPSET = 17


def export_onnx(model, path, *, frames: int = 64) -> Path:
    """Export ``model`` (eval mode) with dynamic batch and time axes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).eval().cpu()
    # The trace needs at least one output frame; the time axis stays dynamic.
    frames = max(frames, getattr(model, "receptive_field", 1) + 15)
    dummy = torch.randn(2, getattr(model, "in_bins", model.bins), frames)
    with torch.no_grad():
        torch.onnx.export(
            model, (dummy,), str(path),
            input_names=["magnitude"], output_names=["masks"],
            dynamic_axes={"magnitude": {0: "batch", 2: "time"},
                          "masks": {0: "batch", 3: "time_out"}},
            opset_version=OPSET, dynamo=False,
        )
    import onnx

    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    return path


def onnx_speed(path, *, seconds: float = 60.0, channels: int = 2, repeats: int = 3,
               threads: int | None = None) -> dict:
    """Model-only speed: 4-stem masks for ``seconds`` of ``channels``-channel audio."""
    import onnxruntime as ort

    from stemboard.dsp import StftGrid, num_frames

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    bins = inp.shape[1] if isinstance(inp.shape[1], int) else 513
    n = num_frames(int(seconds * 44100), StftGrid())
    x = np.random.default_rng(0).standard_normal((channels, bins, n)).astype(np.float32)
    sess.run(None, {inp.name: x[:, :, :200]})
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, {inp.name: x})
        best = min(best, time.perf_counter() - t)
    return {"seconds_audio": seconds, "channels": channels, "frames": n,
            "best_s": best, "x_realtime": seconds / best}
