"""Fine-tune the converted Spleeter vocal/accompaniment U-Nets on MUSDB18-7 remixes.

Transfer learning: both pretrained U-Nets start from Deezer's weights (read by
:mod:`stemboard.models.convert.spleeter`, hash-checked) and are trained
together through the mask the engine applies, ``(m_v|X|)^2 / sum_k (m_k|X|)^2``,
with an L1 loss on the masked magnitudes of the vocals and the accompaniment.
Batch norm statistics stay frozen (batches of four crops would corrupt them) and
dropout stays off: only the weights move, at a small learning rate.

Training data are random 128-frame crops (3 s) of the 80 ``train``-split
excerpts at 4096/1024, remixed across songs half of the time
(:class:`~stemboard.train.data.RemixSampler`, stems "vocals" and
"accompaniment").  The valid split is never read here.

    python -m stemboard.train.finetune_hq --steps 800 --seed 0 \\
        --out runs/finetune/hq_ft_s0

writes ``hq-vocals-ft.onnx`` / ``.json`` into ``--out``; the shipped
``hq-vocals-ft`` averages the weights of two seeds of that recipe::

    python -m stemboard.train.finetune_hq --average \
        runs/finetune/ft_s0/hq-vocals-ft.onnx runs/finetune/ft_s1/hq-vocals-ft.onnx \
        --out models/weights

The result is trained on MUSDB18 and inherits its non-commercial terms.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from stemboard.dsp import StftGrid
from stemboard.models.convert import spleeter as sp
from stemboard.models.manifest import Manifest
from stemboard.models.runtime import sha256

from stemboard.train.data import RemixSampler, decode_musdb, stem_spectra

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def two_stem_spectra(tracks):
    """(tracks, 2, 2, frames, 1024) complex64: vocals, and drums + bass + other."""
    grid = StftGrid(sp.N_FFT, sp.HOP)
    spec, lengths = stem_spectra(tracks, grid, sp.BINS)   # (T, 4, 2, frames, bins)
    acc = spec[:, 1:].sum(axis=1)
    return np.ascontiguousarray(np.stack([spec[:, 0], acc], axis=1)), lengths


def masked_estimates(nets, x):
    """Engine-equivalent masked magnitudes, (2 stems, batch, 2, time, bins).

    ``x`` is (batch, 2, time, bins): each item's stereo magnitudes.
    """
    est = [net(x) * x for net in nets]
    den = sum(e ** 2 for e in est) + sp.SpleeterMaskGraph.EPS
    return torch.stack([(e ** 2 + sp.SpleeterMaskGraph.EPS / 2) / den * x for e in est])


def train(*, steps=800, batch=4, frames=128, lr=3e-5, seed=0, threads=1, data=DATA,
          cache="runs/cache", out="runs/finetune/hq_ft", log_every=50, log=print) -> Path:
    """Fine-tune and export; returns the ONNX path."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tracks = decode_musdb(data, cache, "train", log=log)
    spectra, lengths = two_stem_spectra(tracks)
    sampler = RemixSampler(spectra, lengths, frames, p_remix=0.5, seed=seed, stereo_pair=True)
    nets = sp.load_nets(sp.package_dir())
    order = [nets["vocals"], nets["accompaniment"]]
    params = [p for n in order for p in n.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    for n in order:
        n.eval()    # frozen batch-norm statistics, no dropout
    history, t0, running = [], time.time(), 0.0
    for step in range(1, steps + 1):
        mix, target, other = sampler.batch(batch)          # (B, bins, F), (B, 2, bins, F), ...
        x = torch.from_numpy(np.stack([mix, other], 1)).transpose(2, 3)     # (B, 2, F, bins)
        tgt = torch.from_numpy(target).transpose(2, 3)                      # (B, 2, F, bins)
        est = masked_estimates(order, x)[:, :, 0]          # (stems, B, F, bins), "self" channel
        loss = (est - tgt.transpose(0, 1)).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        running += float(loss)
        if step % log_every == 0 or step == steps:
            n = log_every if step % log_every == 0 else step % log_every
            history.append({"step": step, "loss": running / n,
                            "seconds": round(time.time() - t0, 1)})
            log(f"step {step}/{steps}  loss {running / n:.5f}  {time.time() - t0:.0f} s")
            running = 0.0
    path = out / "hq-vocals-ft.onnx"
    sp.export({"vocals": order[0], "accompaniment": order[1]}, path, precision="fp16")
    man = sp.manifest("fp16", sp.package_dir()).to_dict()
    man.update(name="hq-vocals-ft",
               description=("Spleeter 2-stem U-Nets (Deezer, MIT) fine-tuned on MUSDB18-7 train "
                            "remixes: vocals / accompaniment, 4096/1024 STFT, 512-frame "
                            "segments. Trained on MUSDB18 (non-commercial research data)."),
               license=("weights fine-tuned on MUSDB18 (non-commercial research use only; many "
                        "songs CC BY-NC-SA), from Deezer's MIT-licensed Spleeter weights; see "
                        "LICENSE-spleeter.txt"))
    cfg = {"steps": steps, "batch": batch, "frames": frames, "lr": lr, "seed": seed,
           "p_remix": 0.5, "loss": "l1 on ratio-masked magnitudes (vocals + accompaniment)",
           "frozen": "batch-norm statistics; dropout off"}
    man["training"] = {"config": cfg, "train_seconds": round(time.time() - t0, 1),
                       "history": history}
    Manifest.from_dict(man).save(path.with_suffix(".json"))
    return path


def average(paths, out, *, name="hq-vocals-ft") -> Path:
    """Average the weights of fine-tuned graphs (seeds of one recipe) into ``out/name.onnx``.

    All runs start from the same pretrained weights and move little, so their
    weights average into one model ("model soup") as good as an ensemble at the
    cost of one; it is not a choice among seeds.  Batch-norm statistics are
    frozen, so identical in every run.  The manifest keeps each run's training
    record; files appear only once complete.
    """
    import onnx
    from onnx import numpy_helper

    if len(paths) < 2:
        raise ValueError("average needs at least two fine-tuned graphs")
    protos = [onnx.load(str(p)) for p in paths]
    arrays = [{i.name: numpy_helper.to_array(i) for i in m.graph.initializer} for m in protos]
    base = protos[0]
    merged = []
    for init in base.graph.initializer:
        group = [a[init.name] for a in arrays]
        if group[0].dtype.kind == "f":
            mean = np.mean([g.astype(np.float64) for g in group], axis=0).astype(group[0].dtype)
        elif all(np.array_equal(group[0], g) for g in group[1:]):
            mean = group[0]
        else:
            raise ValueError(f"{init.name}: the graphs differ in a non-float constant")
        merged.append(numpy_helper.from_array(mean, init.name))
    del base.graph.initializer[:]
    base.graph.initializer.extend(merged)
    onnx.checker.check_model(base)
    manifests = [json.loads(Path(p).with_suffix(".json").read_text()) for p in paths]
    man = dict(manifests[0])
    man["name"] = name
    man["description"] = (man["description"].split(". Trained on")[0]
                          + f"; weights averaged over {len(paths)} fine-tuning seeds. Trained on "
                          "MUSDB18 (non-commercial research data).")
    man["training"] = {"averaged": [m["training"] for m in manifests],
                       "command": "python -m stemboard.train.finetune_hq --average "
                                  + " ".join(str(p) for p in paths)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"{name}.onnx"
    tmp = final.with_name(f".{final.name}.tmp")
    tmp_json = final.with_name(f".{name}.json.tmp")
    try:
        onnx.save(base, str(tmp))
        man["source"] = dict(man["source"], onnx_sha256=sha256(tmp))
        Manifest.from_dict(man).save(tmp_json)
        tmp.replace(final)
        tmp_json.replace(final.with_suffix(".json"))
    finally:
        tmp.unlink(missing_ok=True)
        tmp_json.unlink(missing_ok=True)
    return final


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--frames", type=int, default=128, help="crop length (multiple of 64)")
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--cache", default="runs/cache")
    ap.add_argument("--out", default="runs/finetune/hq_ft")
    ap.add_argument("--average", nargs="+", metavar="ONNX",
                    help="instead of training: average these fine-tuned graphs' weights into "
                         "--out/hq-vocals-ft.onnx")
    a = ap.parse_args(argv)
    if a.average:
        print(f"wrote {average(a.average, a.out)}")
        return
    if a.frames % 64:
        ap.error(f"--frames must be a multiple of 64, got {a.frames}")
    path = train(steps=a.steps, batch=a.batch, frames=a.frames, lr=a.lr, seed=a.seed,
                 threads=a.threads, data=a.data, cache=a.cache, out=a.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
