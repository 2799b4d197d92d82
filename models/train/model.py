"""The mask network: the article's conv-over-context idea, fully convolutional in time.

Frequency is the channel axis (513 bins in), then a stack of dilated temporal
convolutions with *valid* padding, so the output for input frame ``t`` sees
frames ``t - context .. t + lookahead`` (the receptive field is
``1 + (kernel - 1) * sum(dilations)``, 25 frames = 290 ms by default).  A 1x1
output convolution predicts ``stems x bins`` logits per frame and a softmax
across stems makes the masks sum to one.

Which input frame an output frame belongs to (the context/lookahead split) is
not a property of the network but of how its training targets are aligned, so
the offline (12/12) and live (22/2) variants share the same architecture.
"""
from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, hidden: int, kernel: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(hidden, hidden, kernel, dilation=dilation)
        self.norm = nn.BatchNorm1d(hidden)
        self.trim = (kernel - 1) * dilation // 2
        self.trim_r = (kernel - 1) * dilation - self.trim

    def forward(self, x):
        y = torch.relu(self.norm(self.conv(x)))
        return y + x[:, :, self.trim: x.shape[2] - self.trim_r]


class MaskNet(nn.Module):
    def __init__(self, bins: int = 513, stems: int = 4, hidden: int = 256,
                 dilations=(1, 2, 4, 4, 1), kernel: int = 3, in_bins: int | None = None):
        super().__init__()
        self.bins, self.stems = bins, stems
        # in_bins: input feature rows (2*bins for the stereo-pair layout: own channel's
        # features, then the other channel's); the output always has ``bins`` bins.
        self.in_bins = int(in_bins or bins)
        self.config = {"bins": bins, "stems": stems, "hidden": hidden,
                       "dilations": list(dilations), "kernel": kernel}
        if self.in_bins != bins:
            self.config["in_bins"] = self.in_bins
        self.inp = nn.Sequential(nn.Conv1d(self.in_bins, hidden, 1), nn.BatchNorm1d(hidden),
                                 nn.ReLU())
        self.blocks = nn.Sequential(*[Block(hidden, kernel, d) for d in dilations])
        self.out = nn.Conv1d(hidden, stems * bins, 1)

    @property
    def receptive_field(self) -> int:
        c = self.config
        return 1 + (c["kernel"] - 1) * sum(c["dilations"])

    def logits(self, x):
        h = self.blocks(self.inp(x))
        y = self.out(h)
        return y.reshape(y.shape[0], self.stems, self.bins, y.shape[2])

    def forward(self, x):
        """(batch, in_bins, time) normalised features -> (batch, stems, bins, time - rf + 1)."""
        # Softmax across stems written out: onnxruntime's Softmax on a non-last
        # axis transposes internally and costs ~3x the whole network here.
        y = self.logits(x)
        e = torch.exp(y - y.amax(dim=1, keepdim=True))
        return e / e.sum(dim=1, keepdim=True)

    def macs_per_frame(self) -> int:
        c = self.config
        h = c["hidden"]
        return (self.in_bins * h + len(c["dilations"]) * c["kernel"] * h * h
                + h * c["stems"] * c["bins"])
