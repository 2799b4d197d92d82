"""One ablation run: train a variant of the offline model, score it on ``valid``, record it.

    python -m stemboard.train.ablate --name rf65 \\
        --set dilations=1,2,4,8,16,1 --set context=32 --set lookahead=32 --set steps=1200

Each run trains one :class:`TrainConfig` (defaults: the shipped offline
model's; ``--set`` overrides fields), exports it to ONNX under ``--work``, scores
it on the 14 MUSDB18-7 ``valid`` excerpts through the runtime path (the same
:func:`~stemboard.train.evaluate.evaluate_systems` the pipeline uses) and
appends a row with its config, command, SDRs and times to ``--record``
(``models/weights/ablations.json``), which the model card lists.  These are the
measurements behind the design choices ("keep what helps"); they are separate
from the one-command pipeline so the pipeline stays inside its 2-hour budget.

``--rescore RUN`` trains nothing: it scores a recorded run's exported model again
in another ``--stereo-mode`` and records that as a new row::

    python -m stemboard.train.ablate --name pitch2_s2400_ms --rescore pitch2_s2400
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import torch

from stemboard.models import MaskModel
from stemboard.models.manifest import STEREO_MODES

from stemboard.train.data import STEMS, decode_musdb
from stemboard.train.distill import teacher_magnitudes
from stemboard.train.evaluate import evaluate_systems, onnx_system
from stemboard.train.export import export_onnx
from stemboard.train.pipeline import (GRID, exports_stateful, manifest_for, training_data,
                                      training_tracks)
from stemboard.train.train import TrainConfig, train


def _scalar(value: str, kind=None):
    """``value`` as ``kind``, or (no kind: an empty default tuple) int, float or str."""
    if kind is not None:
        return kind(value)
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def parse_set(items) -> dict:
    """``["steps=1200", "dilations=1,2,4"]`` -> typed TrainConfig overrides."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(sorted(fields))}")
        default = fields[key].default
        if isinstance(default, tuple):
            out[key] = tuple(_scalar(v, type(default[0]) if default else None)
                             for v in value.split(",") if v)
        elif isinstance(default, bool):
            out[key] = value.lower() in ("1", "true", "yes")
        elif isinstance(default, (int, float)):
            out[key] = type(default)(value)
        else:
            out[key] = value
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", required=True, help="run name (row label)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="TrainConfig override; repeatable")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--cache", default="runs/cache")
    ap.add_argument("--work", default="runs/ablate")
    ap.add_argument("--record", default="models/weights/ablations.json")
    ap.add_argument("--synth-count", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stereo-mode", choices=STEREO_MODES, default="mid_side",
                    help="how the model is run (and scored) on stereo; the manifest's "
                         "stereo_mode (default: mid_side, as the shipped models)")
    ap.add_argument("--rescore", metavar="RUN",
                    help="no training: score the recorded run RUN's model (--work/RUN.onnx) "
                         "again in --stereo-mode, as a new row --name")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:7.1f}s] {msg}", flush=True)

    command = "python -m stemboard.train.ablate " + " ".join(
        sys.argv[1:] if argv is None else argv)
    if args.rescore:
        if args.set:
            raise SystemExit("--rescore scores an existing model; it takes no --set")
        return rescore(args, command, log)
    cfg = TrainConfig(name=args.name, **parse_set(args.set))

    tracks = decode_musdb(args.data, args.cache, "train", log=log)
    spectra, lengths, norm, n_real, n_pitched = training_data(
        tracks, pitch_shifts=cfg.pitch_shifts,
        synth_count=args.synth_count if cfg.synth_share > 0 else 0, synth_root=args.data,
        cache=args.cache, feature_scale=cfg.feature_scale, log=log)
    teacher = None
    if cfg.teacher:
        if cfg.synth_share > 0:
            raise SystemExit("--set teacher=...: the teacher labels MUSDB songs only; "
                             "not with synth_share")
        teacher = teacher_magnitudes(training_tracks(tracks, cfg.pitch_shifts, log),
                                     GRID, spectra.shape[-1], model=cfg.teacher,
                                     cache=args.cache, log=log)
    model, info = train(cfg, spectra, lengths, norm, log=log, n_real=n_real,
                        n_pitched=n_pitched, teacher=teacher)
    del spectra, teacher
    # The checkpoint too, so a run worth shipping can seed the pipeline's cache.
    torch.save({"config": model.config, "state_dict": model.state_dict()},
               work / f"{cfg.name}.pt")
    (work / f"{cfg.name}.train.json").write_text(json.dumps(info, indent=1))
    onnx_path = export_onnx(model, work / f"{cfg.name}.onnx", stateful=exports_stateful(cfg))
    manifest_for(cfg, norm, cfg.name, {}, stereo_mode=args.stereo_mode).save(
        onnx_path.with_suffix(".json"))
    valid = decode_musdb(args.data, args.cache, "valid", log=log)
    model = MaskModel(onnx_path)
    res = evaluate_systems(valid, {cfg.name: onnx_system(model)}, GRID, log=log)[cfg.name]
    row = {"name": cfg.name,
           "sdr": {k: res[k] for k in (*STEMS, "avg")},
           "vad_accuracy": res.get("vad_accuracy"),
           "config": {k: (list(v) if isinstance(v, tuple) else v)
                      for k, v in dataclasses.asdict(cfg).items()},
           "stereo_mode": args.stereo_mode,
           "synth_count": args.synth_count if cfg.synth_share > 0 else 0,
           "train_seconds": info["train_seconds"], "params": info["params"],
           "macs_per_frame": info["macs_per_frame"],
           "command": command}
    record_row(Path(args.record), row, log)


def record_row(record: Path, row: dict, log) -> None:
    """Add ``row`` to the ``record`` JSON list (replacing a row of the same name), atomically."""
    rows = json.loads(record.read_text()) if record.is_file() else []
    rows = [r for r in rows if r["name"] != row["name"]] + [row]
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    tmp.replace(record)
    log(f"{row['name']}: " + ", ".join(f"{k} {row['sdr'][k]:.2f}" for k in (*STEMS, "avg"))
        + f"; recorded in {record}")


def rescore(args, command, log):
    """Score a recorded run's exported model again in ``args.stereo_mode`` (no training).

    The copy ``--work/NAME.onnx`` gets the run's manifest with the new
    ``stereo_mode``; the new row keeps the run's config and says where it came from.
    """
    record = Path(args.record)
    rows = {r["name"]: r for r in (json.loads(record.read_text()) if record.is_file() else [])}
    if args.rescore not in rows:
        raise SystemExit(f"--rescore {args.rescore}: no such run in {record}")
    src = Path(args.work) / f"{args.rescore}.onnx"
    if not src.is_file():
        raise SystemExit(f"--rescore {args.rescore}: {src} not found (the run's export)")
    base = rows[args.rescore]
    manifest = json.loads(src.with_suffix(".json").read_text())
    manifest["stereo_mode"] = args.stereo_mode
    dst = Path(args.work) / f"{args.name}.onnx"
    shutil.copyfile(src, dst)
    dst.with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n")
    valid = decode_musdb(args.data, args.cache, "valid", log=log)
    res = evaluate_systems(valid, {args.name: onnx_system(MaskModel(dst))}, GRID,
                           log=log)[args.name]
    row = {**base, "name": args.name, "sdr": {k: res[k] for k in (*STEMS, "avg")},
           "vad_accuracy": res.get("vad_accuracy"), "stereo_mode": args.stereo_mode,
           "rescored_from": args.rescore, "command": command}
    record_row(record, row, log)


if __name__ == "__main__":
    main()
