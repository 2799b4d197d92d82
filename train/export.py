"""ONNX export of a trained :class:`MaskNet` (network only, no normalisation).

The shipped graphs are *stateful* (:class:`StepNet`): besides ``magnitude``
they take, and return, the last input frames each dilated block needs
(``state_i`` -> ``state_i_next``), so a stream feeds each new frame once
instead of re-running the whole 25-frame receptive field per frame.  With
zero states and the first ``receptive_field - 1`` output frames dropped the
graph gives exactly the stateless (valid-convolution) output, which is how
:class:`stemboard.models.MaskModel` runs it on whole signals.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from stemboard.train.model import stem_softmax

OPSET = 17


class StepNet(nn.Module):
    """A network's layers run on new frames plus the blocks' carried input frames
    (the network's own ``state_shapes``/``step_logits``: :class:`MaskNet`,
    :class:`BandSplitNet`).

    ``forward(x, *states)``: ``x`` (batch, in_bins, time) normalised features of
    new frames, ``states[i]`` (batch, channels, frames) as the network's
    ``state_shapes()``: the last input frames of block ``i``.  Returns ``(masks, *next_states)`` with
    masks (batch, stems, bins, time): output frame ``j`` is the stateless
    network's output for the receptive field that ends at new frame ``j``.
    """

    def __init__(self, net):
        super().__init__()
        if getattr(net, "refine", None) is not None:
            # The refine head reads the input frame its output belongs to, which
            # lies ``lookahead`` frames back: it would need a feature state too.
            raise ValueError("stateful export does not support the refine head; "
                             "use export_onnx(..., stateful=False)")
        self.net = net

    def state_shapes(self) -> list:
        """(channels, frames) of each state, in input order."""
        return self.net.state_shapes()

    def forward(self, x, *states):
        y, nexts = self.net.step_logits(x, states)
        return (stem_softmax(y), *nexts)


def state_names(n: int) -> tuple:
    """Graph input and output names of ``n`` states."""
    return [f"state_{i}" for i in range(n)], [f"state_{i}_next" for i in range(n)]


def export_onnx(model, path, *, frames: int = 64, stateful: bool = True) -> Path:
    """Export ``model`` (eval mode) with dynamic batch and time axes.

    ``stateful=True`` (the shipped layout) exports :class:`StepNet`; the
    manifest must then say ``"stateful": true``.  Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).eval().cpu()
    # The trace needs at least one output frame; the time axis stays dynamic.
    frames = max(frames, getattr(model, "receptive_field", 1) + 15)
    dummy = torch.randn(2, getattr(model, "in_bins", model.bins), frames)
    inputs = (dummy,)
    axes = {"magnitude": {0: "batch", 2: "time"}, "masks": {0: "batch", 3: "time_out"}}
    names_in, names_out = ["magnitude"], ["masks"]
    if stateful:
        step = StepNet(model)
        shapes = step.state_shapes()
        s_in, s_out = state_names(len(shapes))
        inputs = (dummy, *[torch.randn(2, c, f) for c, f in shapes])
        names_in, names_out = names_in + s_in, names_out + s_out
        axes["masks"] = {0: "batch", 3: "time"}
        axes.update({n: {0: "batch"} for n in s_in + s_out})
        model = step
    with torch.no_grad():
        torch.onnx.export(
            model, inputs, str(path), input_names=names_in, output_names=names_out,
            dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )
    import onnx

    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    return path
