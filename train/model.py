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


def stem_softmax(logits):
    """Softmax across stems (dim 1) of (batch, stems, bins, time) logits, written out:
    onnxruntime's Softmax on a non-last axis transposes internally and costs ~3x the
    whole network here."""
    e = torch.exp(logits - logits.amax(dim=1, keepdim=True))
    return e / e.sum(dim=1, keepdim=True)


class Block(nn.Module):
    def __init__(self, hidden: int, kernel: int, dilation: int, dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Conv1d(hidden, hidden, kernel, dilation=dilation)
        self.norm = nn.BatchNorm1d(hidden)
        self.trim = (kernel - 1) * dilation // 2
        self.trim_r = (kernel - 1) * dilation - self.trim
        # On the residual branch only, so the skip path carries every feature; an
        # identity outside training (the exported graph and step_logits skip it).
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x):
        y = self.drop(torch.relu(self.norm(self.conv(x))))
        return y + x[:, :, self.trim: x.shape[2] - self.trim_r]


class FreqConvFront(nn.Module):
    """Convolutions along frequency only (kernel ``(k, 1)``), shared by every bin.

    The dense input layer sees each bin with its own weights; with ten
    minutes of training audio, sharing local spectral patterns (partials,
    formant slopes, noise bands) across frequency is a stronger prior.  Time
    kernel 1 keeps the network's receptive field (and so the manifest's
    context) unchanged.

    ``planes=2`` reads a stereo-pair input (own features, then the partner's) as
    two planes of one spectrum, like an image's colour channels: the first
    convolution sees both signals at the same bins, and the layers after cost
    what they cost for one signal.
    (batch, planes * bins, time) -> (batch, channels * ceil(bins / stride), time).
    """

    def __init__(self, channels: int, kernel: int, stride: int, planes: int = 1):
        super().__init__()
        pad = (kernel // 2, 0)
        self.planes = planes
        self.net = nn.Sequential(
            # Stride in the first layer keeps the second one cheap.
            nn.Conv2d(planes, channels, (kernel, 1), stride=(stride, 1), padding=pad),
            nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, (kernel, 1), padding=pad),
            nn.BatchNorm2d(channels), nn.ReLU())

    def forward(self, x):
        y = self.net(x.reshape(x.shape[0], self.planes, x.shape[1] // self.planes, x.shape[2]))
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
                 front_stride: int = 4, refine_channels: int = 0, refine_kernel: int = 5,
                 front_planes: int = 1, dropout: float = 0.0):
        super().__init__()
        self.bins, self.stems = bins, stems
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        # in_bins: input feature rows (2*bins for the stereo-pair layout: own channel's
        # features, then the other channel's); the output always has ``bins`` bins.
        self.in_bins = int(in_bins or bins)
        self.config = {"bins": bins, "stems": stems, "hidden": hidden,
                       "dilations": list(dilations), "kernel": kernel}
        if self.in_bins != bins:
            self.config["in_bins"] = self.in_bins
        if dropout:
            self.config["dropout"] = float(dropout)
        if front not in ("dense", "freqconv"):
            raise ValueError(f"unknown front {front!r}")
        if front_planes != 1 and front != "freqconv":
            raise ValueError("front_planes needs front='freqconv'")
        self.front = None
        width = self.in_bins
        if front == "freqconv":
            self.config.update(front=front, front_channels=front_channels,
                               front_kernel=front_kernel, front_stride=front_stride)
            if front_planes != 1:
                if self.in_bins != front_planes * bins:
                    raise ValueError(f"front_planes={front_planes} needs in_bins = "
                                     f"{front_planes} x {bins}, got {self.in_bins}")
                self.config["front_planes"] = front_planes
            self.front = FreqConvFront(front_channels, front_kernel, front_stride, front_planes)
            width = front_channels * ((self.in_bins // front_planes - 1) // front_stride + 1)
        self.inp = nn.Sequential(nn.Conv1d(width, hidden, 1), nn.BatchNorm1d(hidden),
                                 nn.ReLU())
        self.blocks = nn.Sequential(*[Block(hidden, kernel, d, dropout) for d in dilations])
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
        return stem_softmax(self.logits(x))

    # -- stateful form (see export.StepNet) ---------------------------------
    def state_shapes(self) -> list:
        """(channels, frames) of each block's carried input frames, in order."""
        return [(b.conv.in_channels, b.trim + b.trim_r) for b in self.blocks]

    def step_logits(self, x, states):
        """Logits of the new frames ``x`` (batch, in_bins, time) given each block's
        last input frames ``states[i]``; returns (logits, next states).  Without the
        refine head (:class:`.export.StepNet` refuses it)."""
        h = self.front(x) if self.front is not None else x
        h = self.inp(h)
        nexts = []
        for block, state in zip(self.blocks, states):
            full = torch.cat([state, h], dim=2)
            y = torch.relu(block.norm(block.conv(full)))
            # Negative indices keep the time axis dynamic in the traced graph.
            h = y + full[:, :, block.trim: full.shape[2] - block.trim_r]
            nexts.append(full[:, :, -(block.trim + block.trim_r):])
        y = self.out(h)
        return y.reshape(y.shape[0], self.stems, self.bins, y.shape[2]), nexts

    def macs_per_frame(self) -> int:
        c = self.config
        h = c["hidden"]
        width, front = self.in_bins, 0
        if c.get("front") == "freqconv":
            ch, k, st = c["front_channels"], c["front_kernel"], c["front_stride"]
            planes = c.get("front_planes", 1)
            out_bins = (self.in_bins // planes - 1) // st + 1
            front = out_bins * ch * k * planes + out_bins * ch * ch * k
            width = ch * out_bins
        refine = 0
        if c.get("refine_channels"):
            rc, rk = c["refine_channels"], c["refine_kernel"]
            refine = c["bins"] * rk * rc * (2 * c["stems"] + 1)
        return (front + width * h + len(c["dilations"]) * c["kernel"] * h * h
                + h * c["stems"] * c["bins"] + refine)


#: Band layout of :class:`BandSplitNet` over the 513 model bins (21.5 Hz each at
#: 44.1 kHz / 2048): (bins per band, bands).  Narrow bands where pitch and
#: formants live, wide ones at the top: 86 Hz bands to 1 kHz, 172 Hz to 3.1 kHz,
#: 344 Hz to 7.2 kHz, then three 1.27 kHz bands to 11 kHz (39 bands).
BAND_GROUPS = ((4, 12), (8, 12), (16, 12), (59, 3))


class BandBlock(nn.Module):
    """One :class:`BandSplitNet` layer on (batch, dim, bands, time).

    A dilated convolution along time (weights shared by every band, *valid*
    padding like :class:`Block`), then a mix across all bands (one learned
    bands x bands matrix shared by every channel and frame), each with a
    residual connection.  The band mix gives every band a view of the whole
    spectrum (a voice's harmonics span many bands) at ``bands**2`` multiply-adds
    per channel instead of a dense layer's ``(dim*bands)**2``.
    """

    def __init__(self, dim: int, bands: int, kernel: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, (1, kernel), dilation=(1, dilation))
        self.norm = nn.BatchNorm2d(dim)
        self.mix = nn.Conv2d(bands, bands, 1)
        self.mix_norm = nn.BatchNorm2d(dim)
        self.trim = (kernel - 1) * dilation // 2
        self.trim_r = (kernel - 1) * dilation - self.trim

    def forward_full(self, full):
        """``full`` (batch, dim, bands, time) -> (batch, dim, bands, time - rf_block + 1)."""
        y = torch.relu(self.norm(self.conv(full)))
        y = y + full[:, :, :, self.trim: full.shape[3] - self.trim_r]
        z = self.mix(y.transpose(1, 2)).transpose(1, 2)
        return y + torch.relu(self.mix_norm(z))

    forward = forward_full


class BandSplitNet(nn.Module):
    """Band-split mask network: per-band embeddings, time convolutions shared by
    all bands, and mixing across bands.

    The spectrum is cut into :data:`BAND_GROUPS` bands; each band gets its own
    linear embedding (``dim`` channels), so low bands keep their fine
    frequency detail instead of all 513 bins being squeezed into one vector
    per frame as in :class:`MaskNet`.  The layers that follow share their
    weights across bands (a strong prior for ten minutes of training audio),
    and each band's own output layer predicts its bins' logits for every stem;
    a softmax across stems makes the masks sum to one.  Same receptive field
    rule, forward contract and stateful export as :class:`MaskNet`.
    (batch, bins, time) -> (batch, stems, bins, time - rf + 1).
    """

    def __init__(self, bins: int = 513, stems: int = 4, hidden: int = 32,
                 dilations=(1, 2, 4, 4, 1), kernel: int = 3, groups=BAND_GROUPS):
        super().__init__()
        groups = tuple((int(w), int(n)) for w, n in groups)
        if sum(w * n for w, n in groups) != bins:
            raise ValueError(f"band groups {groups} cover {sum(w * n for w, n in groups)} "
                             f"bins, not {bins}")
        self.bins, self.stems, self.dim = bins, stems, hidden
        self.groups = groups
        self.bands = sum(n for _, n in groups)
        self.in_bins = bins
        self.config = {"arch": "bandsplit", "bins": bins, "stems": stems, "hidden": hidden,
                       "dilations": list(dilations), "kernel": kernel,
                       "groups": [list(g) for g in groups]}
        # One grouped 1x1 convolution per band width: band i of a group maps its
        # ``w`` bins to ``dim`` channels with its own weights.
        self.embed = nn.ModuleList(nn.Conv1d(w * n, hidden * n, 1, groups=n) for w, n in groups)
        self.embed_norm = nn.BatchNorm2d(hidden)
        self.blocks = nn.Sequential(*[BandBlock(hidden, self.bands, kernel, d)
                                      for d in dilations])
        self.heads = nn.ModuleList(nn.Conv1d(hidden * n, stems * w * n, 1, groups=n)
                                   for w, n in groups)

    @property
    def receptive_field(self) -> int:
        c = self.config
        return 1 + (c["kernel"] - 1) * sum(c["dilations"])

    def embed_bands(self, x):
        """(batch, bins, time) -> (batch, dim, bands, time)."""
        parts, start = [], 0
        for (w, n), conv in zip(self.groups, self.embed):
            y = conv(x[:, start: start + w * n])            # (B, n*dim, T)
            parts.append(y.reshape(y.shape[0], n, self.dim, y.shape[2]))
            start += w * n
        h = torch.cat(parts, dim=1).transpose(1, 2)        # (B, dim, bands, T)
        return torch.relu(self.embed_norm(h))

    def head_logits(self, h):
        """(batch, dim, bands, time) -> (batch, stems, bins, time)."""
        h = h.transpose(1, 2)                              # (B, bands, dim, T)
        parts, band = [], 0
        for (w, n), conv in zip(self.groups, self.heads):
            hb = h[:, band: band + n]
            y = conv(hb.reshape(hb.shape[0], n * self.dim, hb.shape[3]))  # (B, n*S*w, T)
            y = y.reshape(y.shape[0], n, self.stems, w, y.shape[2]).transpose(1, 2)
            parts.append(y.reshape(y.shape[0], self.stems, n * w, y.shape[4]))
            band += n
        return torch.cat(parts, dim=2)

    def logits(self, x):
        return self.head_logits(self.blocks(self.embed_bands(x)))

    def forward(self, x):
        """(batch, bins, time) normalised features -> (batch, stems, bins, time - rf + 1)."""
        return stem_softmax(self.logits(x))

    # -- stateful form (see export.StepNet) ---------------------------------
    def state_shapes(self) -> list:
        """(channels, frames) of each block's carried input, dim*bands channels."""
        return [(self.dim * self.bands, b.trim + b.trim_r) for b in self.blocks]

    def step_logits(self, x, states):
        """Logits of the new frames ``x`` given each block's last input frames
        ``states[i]`` (batch, dim*bands, frames); returns (logits, next states)."""
        h = self.embed_bands(x)
        nexts = []
        for block, state in zip(self.blocks, states):
            s = state.reshape(state.shape[0], self.dim, self.bands, state.shape[2])
            full = torch.cat([s, h], dim=3)
            h = block.forward_full(full)
            tail = full[:, :, :, -(block.trim + block.trim_r):]
            nexts.append(tail.reshape(tail.shape[0], self.dim * self.bands, tail.shape[3]))
        return self.head_logits(h), nexts

    def macs_per_frame(self) -> int:
        c = self.config
        d, nb = c["hidden"], self.bands
        blocks = len(c["dilations"]) * (nb * c["kernel"] * d * d + d * nb * nb)
        return self.bins * d + blocks + d * c["stems"] * self.bins


class EnsembleNet(nn.Module):
    """Several networks trained alike (different seeds) run as one: the softmax of
    their mean logits.

    That is the members' masks' geometric mean renormalised across stems, so the
    masks still sum to one.  Every member must see the same input and have the
    same receptive field (so output frame ``j`` of each belongs to the same input
    frame).  Same forward contract and stateful form as :class:`MaskNet`: the
    states are the members' states one after the other.
    (batch, in_bins, time) -> (batch, stems, bins, time - rf + 1).
    """

    def __init__(self, members):
        super().__init__()
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        first = members[0]
        for m in members[1:]:
            got = (m.bins, m.stems, m.in_bins, m.receptive_field)
            want = (first.bins, first.stems, first.in_bins, first.receptive_field)
            if got != want:
                raise ValueError(f"ensemble members disagree: (bins, stems, in_bins, "
                                 f"receptive_field) {got} vs {want}")
        if any(getattr(m, "refine", None) is not None for m in members):
            raise ValueError("ensemble members cannot have the refine head")
        self.members = nn.ModuleList(members)
        self.bins, self.stems, self.in_bins = first.bins, first.stems, first.in_bins
        self.refine = None
        self.config = {"arch": "ensemble", "members": [dict(m.config) for m in members]}

    @property
    def receptive_field(self) -> int:
        return self.members[0].receptive_field

    def logits(self, x):
        return sum(m.logits(x) for m in self.members) / len(self.members)

    def forward(self, x):
        """(batch, in_bins, time) normalised features -> (batch, stems, bins, time - rf + 1)."""
        return stem_softmax(self.logits(x))

    def state_shapes(self) -> list:
        return [s for m in self.members for s in m.state_shapes()]

    def step_logits(self, x, states):
        total, nexts, i = 0, [], 0
        for m in self.members:
            n = len(m.state_shapes())
            y, nx = m.step_logits(x, states[i: i + n])
            total, i = total + y, i + n
            nexts.extend(nx)
        return total / len(self.members), nexts

    def macs_per_frame(self) -> int:
        # The mean of the logits adds stems*bins per member: noise next to the members.
        return sum(m.macs_per_frame() + self.stems * self.bins for m in self.members)


def build_net(config: dict) -> nn.Module:
    """A network from its ``config`` (``model.config``, as saved in checkpoints)."""
    config = dict(config)
    arch = config.pop("arch", "masknet")
    if arch == "ensemble":
        return EnsembleNet(build_net(c) for c in config["members"])
    if arch == "bandsplit":
        return BandSplitNet(**config)
    return MaskNet(**config)
