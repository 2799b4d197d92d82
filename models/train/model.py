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


class FreqConvFront(nn.Module):
    """Convolutions along frequency only (kernel ``(k, 1)``), shared by every bin.

    The dense input layer sees each bin with its own weights; with ten
    minutes of training audio, sharing local spectral patterns (partials,
    formant slopes, noise bands) across frequency is a stronger prior.  Time
    kernel 1 keeps the network's receptive field (and so the manifest's
    context) unchanged.  (batch, bins, time) -> (batch, channels * ceil(bins / stride), time).
    """

    def __init__(self, channels: int, kernel: int, stride: int):
        super().__init__()
        pad = (kernel // 2, 0)
        self.net = nn.Sequential(
            # Stride in the first layer keeps the second one cheap.
            nn.Conv2d(1, channels, (kernel, 1), stride=(stride, 1), padding=pad),
            nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, (kernel, 1), padding=pad),
            nn.BatchNorm2d(channels), nn.ReLU())

    def forward(self, x):
        y = self.net(x.unsqueeze(1))
        return y.reshape(y.shape[0], y.shape[1] * y.shape[2], y.shape[3])


class BinRefine(nn.Module):
    """Per-bin correction of the logits from the bin's own spectral neighbourhood.

    The output layer maps one ``hidden``-wide vector per frame to every
    stem x bin logit, so all masks lie in a ``hidden``-dimensional subspace:
    smooth across frequency, blind to whether a bin sits on a harmonic peak
    or in a valley.  This head sees, for each bin, the coarse logits of all
    stems plus the normalised input magnitude of that frame, through two
    convolutions along frequency only (kernel ``(k, 1)``, shared by all bins),
    and adds a residual to the logits.  Time kernel 1 leaves the receptive
    field unchanged.  The last convolution starts at zero, so training starts
    from the plain network.  (batch, stems, bins, t) + (batch, bins, t) -> same.
    """

    def __init__(self, stems: int, channels: int, kernel: int):
        super().__init__()
        pad = (kernel // 2, 0)
        self.net = nn.Sequential(
            nn.Conv2d(stems + 1, channels, (kernel, 1), padding=pad),
            nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, stems, (kernel, 1), padding=pad))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, logits, feats):
        x = torch.cat([logits, feats.unsqueeze(1)], dim=1)
        # channels_last: PyTorch's CPU convolutions with so few channels run
        # ~2x faster in this layout (training only; the ONNX graph is unaffected).
        x = x.contiguous(memory_format=torch.channels_last)
        return logits + self.net(x).contiguous()


class MaskNet(nn.Module):
    def __init__(self, bins: int = 513, stems: int = 4, hidden: int = 256,
                 dilations=(1, 2, 4, 4, 1), kernel: int = 3, in_bins: int | None = None,
                 front: str = "dense", front_channels: int = 16, front_kernel: int = 9,
                 front_stride: int = 4, refine_channels: int = 0, refine_kernel: int = 5):
        super().__init__()
        self.bins, self.stems = bins, stems
        # in_bins: input feature rows (2*bins for the stereo-pair layout: own channel's
        # features, then the other channel's); the output always has ``bins`` bins.
        self.in_bins = int(in_bins or bins)
        self.config = {"bins": bins, "stems": stems, "hidden": hidden,
                       "dilations": list(dilations), "kernel": kernel}
        if self.in_bins != bins:
            self.config["in_bins"] = self.in_bins
        if front not in ("dense", "freqconv"):
            raise ValueError(f"unknown front {front!r}")
        self.front = None
        width = self.in_bins
        if front == "freqconv":
            self.config.update(front=front, front_channels=front_channels,
                               front_kernel=front_kernel, front_stride=front_stride)
            self.front = FreqConvFront(front_channels, front_kernel, front_stride)
            width = front_channels * ((self.in_bins - 1) // front_stride + 1)
        self.inp = nn.Sequential(nn.Conv1d(width, hidden, 1), nn.BatchNorm1d(hidden),
                                 nn.ReLU())
        self.blocks = nn.Sequential(*[Block(hidden, kernel, d) for d in dilations])
        self.out = nn.Conv1d(hidden, stems * bins, 1)
        self.refine = None
        if refine_channels:
            self.config.update(refine_channels=refine_channels, refine_kernel=refine_kernel)
            self.refine = BinRefine(stems, refine_channels, refine_kernel)

    @property
    def receptive_field(self) -> int:
        c = self.config
        return 1 + (c["kernel"] - 1) * sum(c["dilations"])

    def logits(self, x):
        feats = x
        if self.front is not None:
            x = self.front(x)
        h = self.blocks(self.inp(x))
        y = self.out(h)
        y = y.reshape(y.shape[0], self.stems, self.bins, y.shape[2])
        if self.refine is not None:
            # The input frames the output frames belong to: the blocks trim
            # ``context`` frames on the left and the rest on the right.
            left = sum(b.trim for b in self.blocks)
            y = self.refine(y, feats[:, :self.bins, left: left + y.shape[3]])
        return y

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
        width, front = self.in_bins, 0
        if c.get("front") == "freqconv":
            ch, k, st = c["front_channels"], c["front_kernel"], c["front_stride"]
            out_bins = (self.in_bins - 1) // st + 1
            front = out_bins * ch * k + out_bins * ch * ch * k
            width = ch * out_bins
        refine = 0
        if c.get("refine_channels"):
            rc, rk = c["refine_channels"], c["refine_kernel"]
            refine = c["bins"] * rk * rc * (2 * c["stems"] + 1)
        return (front + width * h + len(c["dilations"]) * c["kernel"] * h * h
                + h * c["stems"] * c["bins"] + refine)
