"""One command from MUSDB18-7 to the shipped ONNX models, manifests, metrics and card.

    python -m stemboard.train.pipeline --data ../shared/data --out models/weights

Stages (each cached under ``--work``, default ``runs/pipeline``; ``--fresh``
ignores the caches): decode the data, precompute stem STFTs, train the shipped
``offline`` and ``live`` models and the comparison runs, export ONNX, evaluate
every system on the 14 ``valid`` excerpts through the runtime path, measure
speed, write ``offline-fp32.onnx/.json``, ``live-fp32.onnx/.json``, their int8
copies ``offline.onnx/.json`` and ``live.onnx/.json`` (``stemboard.train.quantize``:
calibrated on the ``train`` excerpts, scored on ``valid``), ``metrics.json`` and
``MODEL_CARD.md`` into ``--out``.

By default the runs train one after the other in this process with two torch
threads (``--threads 2``).  ``--workers N`` instead trains them in N child
processes of this command, one thread each, each with ``--only`` its share of
the runs and ``--train-only``; this process then finds their checkpoints cached
and goes on to evaluate and ship.  On the 2-core machine one after the other is
the faster way: a MaskNet step takes 0.30 s with two threads, but 0.91 s in
each of two one-thread workers running side by side (they contend for memory
bandwidth), and 0.50 s on one thread alone (fp32).  ``--precision bf16``, the
default since session 15 (what the shipped models train with), runs the forward
pass under bfloat16 autocast: 0.19-0.21 s a step on this AMX CPU; ``--precision
fp32`` is the path for CPUs without bfloat16 hardware.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from stemboard.dsp import StftGrid
from stemboard.models import Manifest, MaskModel
from stemboard.models.convert.frame_major import convert as convert_frame_major
from stemboard.models.manifest import STEREO_MODES

from stemboard.train.card import write_card
from stemboard.train.data import SAMPLE_RATE, STEMS, decode_musdb, pitch_shifted, stem_spectra
from stemboard.train.evaluate import (evaluate_systems, onnx_system, oracle_system,
                       separation_speed)
from stemboard.train.export import export_onnx
from stemboard.train.model import build_net
from stemboard.train.quantize import main as quantize_main
from stemboard.train.synth import render_synthetic
from stemboard.train.train import TrainConfig, normalization_stats, train

MODEL_BINS = 513
FRONT = "freqconv"
GRID = StftGrid(2048, 512)


#: What the ablations (``ablate.py``, ``ablations.json``) kept: the energy-weighted
#: L2 magnitude loss and the frequency-convolution input layer.  Synthetic MIDI
#: stems, EQ augmentation and a 65-frame context did not help and are off.
#: Pitch/tempo-shifted copies (+-2 semitones by resampling) were neutral at 1200
#: steps and helped at 2400 (avg 3.81 vs 3.57 dB), so the longer shipped runs use them.
#: Two more things tried at 2400 steps on top of that recipe did not beat it (3.81):
#: +-1 semitone copies as well (3.77) and the per-bin ``refine`` head (3.76).
#: Nor did three loss/regularisation variants: the phase-sensitive target ``l2psa``
#: (3.85, within noise), the per-stem normalised ``l2stem`` (3.78) and weight decay 0.1
#: (3.78).  Nor did capacity (hidden 256: 3.69; its training loss tracked hidden 192's)
#: or the other channel's features as input (stereo pair: 3.74; vocals/other up,
#: drums/bass down).  Nor did log1p(100*|X|) input features (3.76) or an exponential
#: moving average of the weights (decay 0.998: 3.82 on the very same training run).
#: The remix share stays 0.5: cross-song remixes in 20 % of draws gave 3.64 and in
#: 80 % gave 3.77.
#: Seed noise: the same 2400-step recipe with seeds 1 and 2 gave 3.72 and 3.73 (seed 0:
#: 3.81), so every difference above within about 0.1 dB is noise.
#: Those scores run the model on left and right.  Running it on mid and side instead
#: (``--stereo-mode mid_side``, the default) scored 3.87-3.93 for the same three models,
#: and 4.07 for the shipped offline (3.85 on left/right).  Training on mid/side draws as
#: well (``mid_side=True``) gave 3.81, and a 45-frame centred context (on left/right)
#: 3.61, so neither is used.  On mid/side, +-2 and +-4 semitone copies together gave 3.97
#: (vocals 5.34) with seed 0 but 3.78 (vocals 5.12) with seed 1, and +-4 alone 3.92
#: (vocals 5.34) and 3.77 (vocals 4.88): means 3.88 and 3.85 against 3.91 for +-2
#: (seeds 0-2), so the shipped copies stay +-2.
#: The band-split network (``--offline-arch bandsplit``, 32 channels per band, 109 k
#: parameters and 0.92 M multiply-adds per frame against 1.35 M and 1.66 M) trained
#: for 6000 steps scored 4.07 on mid/side (vocals 5.34, drums 4.54, bass 3.79, other
#: 2.61) against the shipped 4.07 (vocals 5.14): the same average, so it is not the
#: default yet; with seed 1 it scored 3.99 (vocals 5.07), so part of its vocals lead
#: over the shipped model is seed luck.  With +-2 and +-4 semitone copies
#: (``--offline-pitch=-4,-2,2,4``) the same band-split run scored 3.84 (vocals 5.00):
#: worse, so the copies stay +-2.  Averaging two offline models' masks (geometric mean)
#: reached vocals 5.48-5.59 (the shipped MaskNet and the band-split net: 5.48, avg 4.25),
#: but costs both models' time: the whole separation would drop to about 36x real time,
#: under the 50x target.
#: Training on mid/side draws with each signal seen beside its partner (the mid with the
#: side: ``input_layout=stereo_pair``, ``mid_side=True``, which the runtime now runs)
#: scored 3.76 (vocals 5.05) at 2400 steps, and 3.80 (vocals 4.87) with the pair read
#: as two planes by the front (``front_planes=2``, the ``masknet-pair`` recipe), against
#: 3.87-3.93 (vocals 5.04-5.10) for the per-channel recipe: the side is no help.
#: Nor is training on the metric itself: the negative SDR of every stem over every ~1 s
#: crop (``loss=sdr``, complex error) scored 3.94 (vocals 5.11) at 2400 steps.
#: What did help is length: trained one run at a time on both threads (0.30 s a step
#: instead of 0.91 s in two side-by-side workers), the 2-hour budget holds 12000 offline
#: steps, which scored 4.14 (vocals 5.40) against 4.07 (vocals 5.14) for 6000.
#: Longer still did not help: 20000 steps (``precision=bf16``) scored 4.07 (vocals
#: 5.19) while its training loss ended lower (0.0345 against 0.0370), so past about
#: 12000 steps the model fits the 80 training excerpts rather than new songs.
#: ``--precision bf16`` (the forward pass under bfloat16 autocast) makes a step about
#: 1.45x faster on this CPU at the same score (2400 steps: 3.91, vocals 5.08).
#: Weighting the vocals' error twice the others' (``stem_weights=(2, 1, 1, 1)``,
#: normalised to mean 1) did not lift the vocals either: 5.12 (avg 3.84) at 2400 bf16
#: steps against 5.08 (avg 3.91) unweighted, so the stems stay equally weighted.
#: More varied material for the long run did not help either: +-2 and +-4 semitone
#: copies with cross-song remixes in 80 % of draws, 12000 bf16 steps, scored 4.07
#: (vocals 5.32, drums 4.86, bass 3.59, other 2.52) against 4.14 (vocals 5.40).
#: Nor did regularising it: dropout 0.1 on the residual branches (``--offline-dropout``),
#: 12000 bf16 steps, scored 3.95 (vocals 5.22; its training loss, measured with
#: dropout on, ended at 0.0386), so the default stays 0.
#: Two hidden-128 nets (seeds 0 and 1, 2400 bf16 steps: 3.85 each, vocals 5.14 and
#: 4.98) with their masks averaged (geometric mean) scored 3.96 (vocals 5.20) against
#: 3.91 (vocals 5.08) for one hidden-192 net: a small gain for about 1.3x the
#: multiply-adds, measured at 2400 steps only.  At 12000 steps the gain did not hold:
#: one hidden-128 net scored 3.94 (vocals 5.19), and averaging it with the shipped
#: offline model (the geometric mean of their masks) 4.15 (vocals 5.43) against 4.14
#: (5.40) for the shipped model alone.  The shipped recipe trained with bf16 (12000
#: steps) scored 4.11 with vocals 5.496 for seed 0 and 3.99 with vocals 5.05 for seed 1:
#: at this length the seed moves vocals by 0.45 dB, so 5.4-5.5 is the top of what the
#: recipe gives, not its typical result.  Averaging those two runs in one graph
#: (``--offline-arch masknet-x2``, ``x2_s12000``) scored 4.17 (vocals 5.39, drums 4.96,
#: bass 3.67, other 2.63) for 1.4x the model time (50x real time for the whole
#: separation in the numpy path, 91-95x for ``stemboard.separate``, against 58-60x and
#: 122-126x for one net): a better average but not better vocals, so one net ships.
#: Averaging the shipped fp32 model with the bf16 seed-0 run (the same seed; diagnostic,
#: not a recipe this pipeline trains) scored 4.20 with vocals 5.507.
#: Depth at the same receptive field (eight blocks, dilations 1,1,2,2,2,2,1,1) scored
#: 3.83 (vocals 5.13) at 2400 bf16 steps against 3.91 (5.08) for the five blocks.
#: +-1 and +-2 semitone copies together (``--offline-pitch=-2,-1,1,2``; 2400 steps on
#: mid/side: 3.92, vocals 5.34, against 3.87-3.93, vocals 5.04-5.10 for +-2) at 12000 bf16
#: steps scored 4.19 (vocals 5.60, drums 4.77, bass 3.59, other 2.81) against 4.11
#: (vocals 5.496) for +-2 with the same seed, and with seed 1 4.13 (vocals 5.14) against
#: 3.99 (vocals 5.05): better for both seeds (means 4.16 / vocals 5.37 against 4.05 /
#: 5.27), so the offline model trains with them since session 15.  The seed still moves
#: vocals by about 0.45 dB.  The live model keeps +-2.
PITCH = (-2.0, 2.0)
OFFLINE_PITCH = (-2.0, -1.0, 1.0, 2.0)
SHIPPED = dict(hidden=192, loss="l2mag", front=FRONT, pitch_shifts=PITCH)
#: The same recipe with the band-split network (``--offline-arch/--live-arch bandsplit``;
#: ``hidden`` is its width per band).
BANDSPLIT = dict(SHIPPED, arch="bandsplit", hidden=32, front="dense")
#: The MaskNet recipe trained on mid/side draws, each signal seen with its partner
#: (the mid with the side and the other way round; manifest ``input_layout``
#: ``"stereo_pair"``), the pair read by the frequency-convolution front as two
#: planes of one spectrum (1.68 M multiply-adds per frame against 1.66 M).
PAIRED = dict(SHIPPED, input_layout="stereo_pair", mid_side=True, front_planes=2)
#: Two MaskNets of the shipped recipe (seeds 0 and 1), trained one after the other and
#: shipped as one graph that averages their logits (:class:`.model.EnsembleNet`).
TWO_NETS = dict(SHIPPED, members=2)
ARCHS = {"masknet": SHIPPED, "bandsplit": BANDSPLIT, "masknet-pair": PAIRED,
         "masknet-x2": TWO_NETS}


def run_configs(main_steps: int, cmp_steps: int, live_steps: int | None = None, *,
                offline_arch: str = "masknet", live_arch: str = "masknet",
                offline_pitch=OFFLINE_PITCH, live_pitch=PITCH,
                offline_dropout: float = 0.0, live_dropout: float = 0.0,
                precision: str = "fp32") -> list[TrainConfig]:
    """The shipped models first, then the short comparison runs (all offline 12/12).

    ``*_pitch``: semitones of the pitch-shifted copies each shipped model trains
    with; ``*_dropout``: its :attr:`TrainConfig.dropout`.  The comparisons use no
    pitch copies, so they stay comparable with earlier pipelines' runs (and their
    cached checkpoints).  ``precision``
    (:attr:`TrainConfig.precision`) applies to every run.
    """
    base = {k: v for k, v in SHIPPED.items() if k not in ("hidden", "loss", "pitch_shifts")}
    runs = [
        TrainConfig(name="offline", context=12, lookahead=12, steps=main_steps,
                    dropout=offline_dropout,
                    **dict(ARCHS[offline_arch], pitch_shifts=tuple(offline_pitch))),
        TrainConfig(name="live", context=22, lookahead=2, steps=live_steps or main_steps,
                    dropout=live_dropout,
                    **dict(ARCHS[live_arch], pitch_shifts=tuple(live_pitch))),
        TrainConfig(name="cmp_l2mag_h192", hidden=192, loss="l2mag", steps=cmp_steps, **base),
        TrainConfig(name="cmp_l1mag_h192", hidden=192, loss="l1mag", steps=cmp_steps, **base),
        TrainConfig(name="cmp_mseibm_h192", hidden=192, loss="mse_ibm", steps=cmp_steps,
                    **base),
        TrainConfig(name="cmp_l2mag_h128", hidden=128, loss="l2mag", steps=cmp_steps, **base),
    ]
    for cfg in runs:
        cfg.precision = precision
    return runs


def bf16_is_fast() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX), where
    ``--precision bf16`` pays; elsewhere torch emulates it, slower than float32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def parse_shifts(text: str) -> tuple:
    """``"-4,-2,2,4"`` -> (-4.0, -2.0, 2.0, 4.0); ``"none"`` -> ()."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        shifts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"pitch shifts must be comma-separated semitones "
                                         f"or 'none', got {text!r}") from None
    if any(s == 0 for s in shifts) or len(set(shifts)) != len(shifts):
        raise argparse.ArgumentTypeError(f"pitch shifts must be distinct and non-zero, "
                                         f"got {text!r}")
    return tuple(sorted(shifts))


def parse_dropout(text: str) -> float:
    """``"0.1"`` -> 0.1; a probability in [0, 1)."""
    try:
        p = float(text)
    except ValueError:
        p = float("nan")
    if not 0.0 <= p < 1.0:
        raise argparse.ArgumentTypeError(f"dropout must be a number in [0, 1), got {text!r}")
    return p


#: TrainConfig fields added after the first checkpoints were cached.
LATER_FIELDS = ("input_layout", "eq_db", "synth_share", "synth_silence", "front",
                "pitch_shifts", "refine", "feature_scale", "ema", "mid_side", "arch",
                "front_planes", "precision", "stem_weights", "dropout", "members")


def run_key(cfg: TrainConfig, synth_count: int) -> str:
    """The checkpoint cache key: every config field, minus defaults added later.

    Fields of :data:`LATER_FIELDS` are left out while they hold their default
    ("off") value, so checkpoints trained before they existed stay valid.
    """
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return json.dumps({k: str(v) for k, v in vars(cfg).items()
                       if not (k in LATER_FIELDS and v == defaults[k])}
                      | ({"synth_count": synth_count} if cfg.synth_share else {}),
                      sort_keys=True)


def is_cached(cfg: TrainConfig, work: Path, key: str) -> bool:
    info_path = work / f"{cfg.name}.train.json"
    return ((work / f"{cfg.name}.pt").is_file() and info_path.is_file()
            and json.loads(info_path.read_text()).get("key") == key)


#: A band-split training step (per 32 channels per band) costs about what a MaskNet
#: step of this width does on one thread: its activations are 39 bands x 32 = 1248
#: channels wide, so it is bound by memory traffic more than by its multiply-adds.
BANDSPLIT_STEP_WIDTH = 220


def run_cost(cfg: TrainConfig) -> float:
    """Relative training time of ``cfg``: steps x (MaskNet-equivalent) width."""
    width = cfg.hidden if cfg.arch == "masknet" else BANDSPLIT_STEP_WIDTH * cfg.hidden / 32
    return cfg.steps * width * cfg.members


def split_runs(configs, workers: int) -> list[list[str]]:
    """Greedy split of the runs over ``workers`` processes, balancing :func:`run_cost`."""
    loads = [0.0] * workers
    groups: list[list[str]] = [[] for _ in range(workers)]
    for c in sorted(configs, key=lambda c: -run_cost(c)):
        i = loads.index(min(loads))
        loads[i] += run_cost(c)
        groups[i].append(c.name)
    return [g for g in groups if g]


def train_in_workers(argv, groups, work: Path, log) -> float:
    """Train ``groups`` in parallel child processes of this pipeline (1 thread each).

    Each child is this command with ``--only GROUP --train-only --workers 1``;
    it caches its checkpoints under ``--work`` and this process then reuses them.
    Returns the wall time.
    """
    t0 = time.time()
    for stale in work.glob("data_s.*.json"):  # the workers write fresh ones
        stale.unlink()
    procs = []
    for i, group in enumerate(groups):
        cmd = [sys.executable, "-m", "stemboard.train.pipeline", *argv,
               "--only", ",".join(group), "--train-only", "--workers", "1", "--threads", "1"]
        logf = open(work / f"worker{i}.log", "w")
        log(f"worker {i}: {', '.join(group)} (log: {work / f'worker{i}.log'})")
        procs.append((subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT), logf, i))
        # Staggered starts: each child holds the stem spectra (several GB) and
        # building them twice at once doubles the peak memory.
        time.sleep(60 if i < len(groups) - 1 else 0)
    failed = []
    for p, logf, i in procs:
        if p.wait() != 0:
            failed.append(i)
        logf.close()
    if failed:
        raise SystemExit(f"training worker(s) {failed} failed; see "
                         + ", ".join(str(work / f"worker{i}.log") for i in failed))
    return time.time() - t0


def exports_stateful(cfg: TrainConfig) -> bool:
    """Whether ``cfg``'s network exports as a stateful graph (:class:`.export.StepNet`).

    The per-bin refine head is not supported there; those experimental runs
    export the stateless graph.
    """
    return cfg.refine == 0


def manifest_for(cfg: TrainConfig, norm: dict, description: str, extra: dict, *,
                 stereo_mode: str = "mid_side") -> Manifest:
    """The manifest of ``cfg``'s model.  ``stereo_mode`` is how the runtime feeds it
    stereo; a model trained on mid/side signals (``cfg.mid_side``) must run in mid/side.
    A stereo-pair model runs in the coding it was trained on, whatever ``stereo_mode``
    says: its partner features look nothing alike in the other coding."""
    if cfg.mid_side and stereo_mode != "mid_side":
        raise ValueError(f"{cfg.name} was trained on mid/side signals; it cannot run "
                         f"in stereo_mode {stereo_mode!r}")
    if cfg.stereo_pair:
        stereo_mode = "mid_side" if cfg.mid_side else "left_right"
    return Manifest(
        sample_rate=SAMPLE_RATE, n_fft=GRID.n_fft, hop=GRID.hop, model_bins=MODEL_BINS,
        stems=STEMS, context_frames=cfg.context, lookahead_frames=cfg.lookahead,
        input_normalization=norm, high_band_rule="hold_top_bin",
        name=f"stemboard-{cfg.name}", description=description,
        stateful=exports_stateful(cfg), stereo_mode=stereo_mode,
        input_layout=cfg.input_layout, extra=extra)


def training_tracks(tracks, pitch_shifts=(), log=print) -> list:
    """The songs, then their copies for each of ``pitch_shifts`` (resampled when
    read): the first rows of :func:`training_data`, in its order, for anything that
    labels those rows (a distillation teacher)."""
    return [*tracks, *pitch_shifted(tracks, pitch_shifts, log, lazy=True)]


def training_data(tracks, *, pitch_shifts=(), synth_count=0, synth_root=None, cache=None,
                  feature_scale=1.0, log=print):
    """Everything :func:`.train.train` draws from, in its track order.

    Returns ``(spectra, lengths, norm, n_real, n_pitched)``: the songs' stem
    spectra, then their pitch-shifted copies (``pitch_shifts``), then
    ``synth_count`` MIDI-rendered excerpts.  The input normalisation comes from
    the songs only, so the runtime's features do not depend on the augmented
    or synthetic data.  ``feature_scale`` is the ``log1p(scale * |X|)`` gain
    (see :attr:`.train.TrainConfig.feature_scale`).
    """
    songs = training_tracks(tracks, pitch_shifts, log)
    synth = []
    if synth_count:
        synth = render_synthetic(synth_root, cache, count=synth_count, log=log)
    # One allocation for everything: appending a stack afterwards would briefly
    # hold both (~2x the memory).
    spectra, lengths = stem_spectra([*songs, *synth], GRID, MODEL_BINS)
    n_real, n_pitched = len(tracks), len(songs) - len(tracks)
    norm = normalization_stats(spectra[:n_real], lengths[:n_real], scale=feature_scale)
    return spectra, lengths, norm, n_real, n_pitched


def run_rows(cfg: TrainConfig, spectra, lengths, n_real: int, shifts):
    """``(spectra, lengths, n_pitched)`` of what ``cfg`` trains on.

    ``spectra`` holds the songs, their copies for every shift in ``shifts``
    (the union over the pipeline's runs, in that order, ``n_real`` rows each),
    then synthetic excerpts.  A run gets the songs, the copies of its own
    ``pitch_shifts`` and the synthetic rows, in that order, so it trains exactly
    as in a pipeline that built only its own copies.  A run without pitch
    shifts gets every row (:func:`.train.train` leaves the copies out).
    """
    n_pitched = n_real * len(shifts)
    wanted = {float(x) for x in cfg.pitch_shifts}
    missing = wanted - set(shifts)
    if missing:
        raise ValueError(f"{cfg.name}: no copies built for pitch shifts {sorted(missing)}")
    own = [i for i, s in enumerate(shifts) if s in wanted]
    if not wanted or len(own) == len(shifts):
        return spectra, lengths, n_pitched
    keep = np.concatenate([np.arange(n_real)]
                          + [np.arange(n_real * (1 + i), n_real * (2 + i)) for i in own]
                          + [np.arange(n_real + n_pitched, spectra.shape[0])])
    return spectra[keep], lengths[keep], n_real * len(own)


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data", help="folder holding musdb18-7/")
    ap.add_argument("--out", default="models/weights", help="where the shipped files go")
    ap.add_argument("--work", default="runs/pipeline", help="checkpoints and caches")
    ap.add_argument("--cache", default="runs/cache", help="decoded-audio cache")
    ap.add_argument("--steps", type=int, default=12000,
                    help="steps for offline (and live without --live-steps); default: the "
                         "shipped model's")
    ap.add_argument("--live-steps", type=int, default=3000,
                    help="steps for live (default: the shipped model's; 0: --steps)")
    ap.add_argument("--cmp-steps", type=int, default=400, help="steps for comparison runs")
    ap.add_argument("--no-compare", action="store_true", help="skip the comparison runs")
    ap.add_argument("--fresh", action="store_true", help="ignore cached checkpoints/evals")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads (1 can be faster when the cores are shared)")
    ap.add_argument("--only", default=None,
                    help="comma-separated run names to train (e.g. to split work over processes)")
    ap.add_argument("--train-only", action="store_true",
                    help="stop after training/export (no evaluation, nothing shipped)")
    ap.add_argument("--synth-count", type=int, default=200,
                    help="MIDI-rendered excerpts for the runs that use them (0: none; "
                         "needs tinysoundfont and a GM soundfont, see synth.py)")
    ap.add_argument("--synth-data", default=None,
                    help="folder holding groove-midi/ and pop909/ (default: --data)")
    ap.add_argument("--stereo-mode", choices=STEREO_MODES, default="mid_side",
                    help="how the shipped models run on stereo (the manifests' stereo_mode); "
                         "mid_side: the mid and side signals are separated (default)")
    for which in ("offline", "live"):
        ap.add_argument(f"--{which}-arch", choices=sorted(ARCHS), default="masknet",
                        help=f"network of the {which} model: masknet (MaskNet, default), "
                             "bandsplit (BandSplitNet, 32 channels per band), masknet-pair "
                             "(MaskNet reading the mid beside the side) or masknet-x2 (two "
                             "MaskNets, seeds 0 and 1, averaged in one graph)")
        default = OFFLINE_PITCH if which == "offline" else PITCH
        ap.add_argument(f"--{which}-pitch", type=parse_shifts, default=default,
                        metavar="ST,ST,...",
                        help=f"semitones of the pitch-shifted copies the {which} model trains "
                             f"with (default {','.join(f'{s:g}' for s in default)}; 'none': "
                             f"no copies; write --{which}-pitch=-4,4: a value starting with "
                             "'-' needs the '=')")
        ap.add_argument(f"--{which}-dropout", type=parse_dropout, default=0.0, metavar="P",
                        help=f"dropout on the residual blocks while the {which} model trains "
                             "(MaskNet only; default 0: none)")
    ap.add_argument("--workers", type=int, default=1,
                    help="parallel training processes (1 thread each); 1 (default) trains "
                         "the runs one after the other in this process with --threads "
                         "threads, which is faster on 2 cores")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="bf16",
                    help="training forward pass: bf16 (default, the shipped models': "
                         "bfloat16 autocast, about 1.5x faster a step than fp32 on CPUs with "
                         "AMX/AVX512-BF16; torch emulates it slowly elsewhere) or fp32")
    ap.add_argument("--valid-limit", type=int, default=None,
                    help="score only the first N valid excerpts (smoke tests only)")
    return ap.parse_args(argv)


def select_configs(args):
    """The runs to train, from the command line: ``(configs, pitch shifts, feature scale)``."""
    configs = run_configs(args.steps, args.cmp_steps, args.live_steps,
                          offline_arch=args.offline_arch, live_arch=args.live_arch,
                          offline_pitch=args.offline_pitch, live_pitch=args.live_pitch,
                          offline_dropout=args.offline_dropout,
                          live_dropout=args.live_dropout, precision=args.precision)
    if args.no_compare:
        configs = configs[:2]
    if args.only:
        configs = [c for c in configs if c.name in args.only.split(",")]
    if args.synth_count == 0:
        for c in configs:
            c.synth_share = 0.0
    # Every run's copies are built once; each run trains on its own (run_rows).
    shifts = sorted({float(s) for c in configs for s in c.pitch_shifts})
    # One input normalisation for every run (the runtime features of both shipped models).
    scales = sorted({float(c.feature_scale) for c in configs})
    if len(scales) > 1:
        raise SystemExit(f"runs disagree on feature_scale {scales}; one per pipeline")
    return configs, shifts, scales[0] if scales else 1.0


def prepare_data(args, configs, shifts, feature_scale, *, must_train, log):
    """Decode MUSDB18-7 and build the training spectra (with pitch-shifted and
    synthetic copies only when this process trains something itself).

    Returns ``(valid_tracks, (spectra, lengths, norm, n_real))``.
    """
    train_tracks = decode_musdb(args.data, args.cache, "train", log=log)
    valid_tracks = decode_musdb(args.data, args.cache, "valid", log=log)[: args.valid_limit]
    train_names = {x["name"] for x in train_tracks}
    assert not train_names & {x["name"] for x in valid_tracks}, "valid leaked into train"
    synth = must_train and any(c.synth_share > 0 for c in configs)
    spectra, lengths, norm, n_real, n_pitched = training_data(
        train_tracks, pitch_shifts=shifts if must_train else (),
        synth_count=args.synth_count if synth else 0,
        synth_root=args.synth_data or args.data, cache=args.cache,
        feature_scale=feature_scale, log=log)
    del train_tracks
    log(f"data: {n_real} train songs, {int(lengths[:n_real].sum())} frames/channel; "
        f"{len(valid_tracks)} valid songs")
    if synth:
        log(f"data: + {spectra.shape[0] - n_real - n_pitched} synthetic MIDI-rendered excerpts")
    return valid_tracks, (spectra, lengths, norm, n_real)


def train_and_export(args, configs, work, data, shifts, *, after_workers, log):
    """Train each run (or reuse its cached checkpoint), export its ONNX graph and
    manifest into ``work``; return ``{name: training info}``."""
    spectra, lengths, norm, n_real = data
    infos = {}
    for cfg in configs:
        ckpt, info_path, onnx_path = (work / f"{cfg.name}.pt", work / f"{cfg.name}.train.json",
                                      work / f"{cfg.name}.onnx")
        key = run_key(cfg, args.synth_count)
        # After the workers, their (fresh) checkpoints are the ones to use.
        cached = (not args.fresh or after_workers) and is_cached(cfg, work, key)
        if cached:
            info = json.loads(info_path.read_text())
            state = torch.load(ckpt, map_location="cpu")
            model = build_net(state["config"])
            model.load_state_dict(state["state_dict"])
            model.eval()
            log(f"{cfg.name}: reusing checkpoint ({info['train_seconds']} s of training)")
        else:
            log(f"{cfg.name}: training {cfg.steps} steps")
            if after_workers:
                raise SystemExit(f"{cfg.name}: no checkpoint after the training workers")
            rows = run_rows(cfg, spectra, lengths, n_real, shifts)
            model, info = train(cfg, *rows[:2], norm, log=log, n_real=n_real,
                                n_pitched=rows[2])
            del rows
            info["key"] = key
            torch.save({"config": model.config, "state_dict": model.state_dict()}, ckpt)
            info_path.write_text(json.dumps(info, indent=1))
        export_onnx(model, onnx_path, stateful=exports_stateful(cfg))
        manifest_for(cfg, norm, cfg.name, {}, stereo_mode=args.stereo_mode).save(
            onnx_path.with_suffix(".json"))
        infos[cfg.name] = info
    return infos


def worker_timings(args, configs, infos, work) -> dict:
    """What a from-scratch run's workers take: the same split of every run."""
    groups = split_runs(configs, args.workers)
    timings = {"workers": args.workers, "worker_groups": groups,
               "train_wall_from_scratch_s": round(max(
                   sum(infos[n]["train_seconds"] for n in g) for g in groups), 1)}
    worker_data = [json.loads(p.read_text())["data_s"] for p in work.glob("data_s.*.json")]
    if worker_data:
        timings["worker_data_s"] = max(worker_data)
    return timings


def evaluate_runs(args, configs, work, valid_tracks, *, log):
    """Score the oracles, the mixture and every exported run on the valid excerpts
    (cached by graph hash); return ``(table by system name, models by run name)``."""
    eval_cache = work / "eval_cache.json"
    cache = json.loads(eval_cache.read_text()) if eval_cache.is_file() and not args.fresh else {}
    systems, keys = {}, {}
    for kind in ("ibm", "irm"):
        systems[f"oracle_{kind}"], keys[f"oracle_{kind}"] = oracle_system(kind), f"oracle_{kind}"
    systems["mixture"], keys["mixture"] = "mixture", "mixture"
    models = {}
    for cfg in configs:
        onnx_path = work / f"{cfg.name}.onnx"
        models[cfg.name] = MaskModel(onnx_path)
        modes = ["soft"] + (["binary"] if cfg.mask_type == "binary" else [])
        for mode in modes:
            name = cfg.name if mode == "soft" else f"{cfg.name}_binary"
            systems[name] = onnx_system(models[cfg.name], mode)
            keys[name] = f"{name}:{_sha(onnx_path)}:{_sha(onnx_path.with_suffix('.json'))}"
        if (cfg.name in ("offline", "live") and not cfg.mid_side
                and models[cfg.name].manifest.stereo_mode == "mid_side"):
            # The same model with each channel separated on its own, for the card.
            name = f"{cfg.name}_left_right"
            systems[name] = onnx_system(models[cfg.name], stereo_mode="left_right")
            keys[name] = f"{name}:{_sha(onnx_path)}"
    todo = {n: f for n, f in systems.items() if keys[n] not in cache}
    if todo:
        log(f"evaluating {list(todo)} on {len(valid_tracks)} valid excerpts (BSSEval v4; "
            "museval.evaluate itself on the first)")
        res = evaluate_systems(valid_tracks, todo, GRID, log=log)
        for n, r in res.items():
            cache[keys[n]] = r
        eval_cache.write_text(json.dumps(cache, indent=1))
    return {n: cache[keys[n]] for n in systems}, models


def ship(args, argv, configs, out, work, norm, *, table, infos, speed, timings):
    """Write metrics.json, the shipped offline/live graphs and manifests, and the card."""
    summary = {
        "sdr_valid": {n: {k: v for k, v in r.items() if k != "per_track"}
                      for n, r in table.items()},
        "speed": speed,
        "stereo_mode": args.stereo_mode,
        "training": {n: {k: v for k, v in i.items() if k not in ("history", "key")}
                     for n, i in infos.items()},
        "timings": timings,
        "torch": torch.__version__,
        "command": "python -m stemboard.train.pipeline " + " ".join(
            sys.argv[1:] if argv is None else argv),
        # Torch threads per training run: the workers use one each.
        "threads": 1 if "workers" in timings else args.threads,
        "python": sys.version.split()[0],
    }
    (out / "metrics.json").write_text(json.dumps({**summary, "per_track": {
        n: r["per_track"] for n, r in table.items()}, "history": {
        n: i["history"] for n, i in infos.items()}}, indent=1) + "\n")
    descriptions = {
        "offline": "4-stem mask CNN, centred context (12 past + 12 future frames); package "
                   "default. Trained on MUSDB18-7 (non-commercial research data).",
        "live": "4-stem mask CNN for streaming: 22 past + 2 lookahead frames "
                "(latency n_fft - hop + 2*hop = 2560 samples = 58 ms at 44.1 kHz). "
                "Trained on MUSDB18-7 (non-commercial research data).",
    }
    cfg_by_name = {c.name: c for c in configs}
    for name in ("offline", "live"):
        cfg = cfg_by_name[name]
        src = work / f"{name}.onnx"
        # The trained fp32 graph ships as "<name>-fp32"; "<name>" is its int8 copy.
        fp32 = out / f"{name}-fp32.onnx"
        shutil.copyfile(src, fp32)
        metrics = {k: v for k, v in summary["sdr_valid"][name].items()}
        metrics["speed"] = speed[name]
        metrics["eval"] = ("museval BSSEval v4 SDR (dB), 1 s windows, median over frames then "
                           "over the 14 MUSDB18-7 valid excerpts, mixture = sum of stems")
        extra = {"metrics": metrics,
                 "training": {k: v for k, v in infos[name].items()
                              if k not in ("history", "key")},
                 "license": "weights trained on MUSDB18 (non-commercial research use only; "
                            "many songs CC BY-NC-SA)"}
        manifest_for(cfg, norm, descriptions[name], extra,
                     stereo_mode=args.stereo_mode).save(fp32.with_suffix(".json"))
        # Shipped frame-major: the engine's overlap-add reads masks frame by frame.
        convert_frame_major(fp32)
        MaskModel(fp32)  # validate what ships
        quantize_main([str(fp32), str(out / f"{name}.onnx"), "--data", args.data,
                       "--cache", args.cache, "--name", f"stemboard-{name}"])
    write_card(out / "MODEL_CARD.md", summary)


def main(argv=None):
    """Data, training and export, evaluation, then ship (see the module notes)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.precision == "bf16" and not bf16_is_fast():
        print("[pipeline] warning: this CPU has no AVX512-BF16/AMX; bfloat16 training will be "
              "emulated and slow (--precision fp32 avoids that)", file=sys.stderr)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    timings = {}

    def log(msg):
        print(f"[{time.time() - t_start:7.1f}s] {msg}", flush=True)

    configs, shifts, feature_scale = select_configs(args)
    worker_wall = None
    todo = [c for c in configs
            if args.fresh or not is_cached(c, work, run_key(c, args.synth_count))]
    if args.workers > 1 and len(todo) > 1:
        own = list(sys.argv[1:] if argv is None else argv)
        worker_wall = train_in_workers(own, split_runs(todo, args.workers), work, log)
        timings["train_wall_s"] = round(worker_wall, 1)

    # -- data ----------------------------------------------------------------
    t = time.time()
    # Extra training material only when this process trains something itself.
    valid_tracks, data = prepare_data(args, configs, shifts, feature_scale,
                                      must_train=worker_wall is None and bool(todo), log=log)
    timings["data_s"] = round(time.time() - t, 1)

    # -- training + export ------------------------------------------------------
    infos = train_and_export(args, configs, work, data, shifts,
                             after_workers=worker_wall is not None, log=log)
    timings["train_s"] = round(sum(i["train_seconds"] for i in infos.values()), 1)
    if args.workers > 1 and not args.only:
        timings.update(worker_timings(args, configs, infos, work))
    norm = data[2]
    del data
    if args.train_only:
        # The parent of --workers reads this to account for the workers' own data stage.
        (work / f"data_s.{'+'.join(c.name for c in configs)}.json").write_text(
            json.dumps({"data_s": timings["data_s"]}))
        log("--train-only: stopping after training and export")
        return

    # -- evaluation ---------------------------------------------------------------
    t = time.time()
    table, models = evaluate_runs(args, configs, work, valid_tracks, log=log)
    timings["eval_s_this_invocation"] = round(time.time() - t, 1)
    timings["eval_s"] = round(sum(r.get("eval_seconds", 0.0) for r in table.values()), 1)
    speed = {}
    for name in ("offline", "live"):
        speed[name] = separation_speed(models[name])
        log(f"speed {name}: {speed[name]}")

    # -- ship -----------------------------------------------------------------------
    timings["pipeline_wall_s_this_invocation"] = round(time.time() - t_start, 1)
    ship(args, argv, configs, out, work, norm, table=table, infos=infos, speed=speed,
         timings=timings)
    log(f"done: wrote {out}/offline.*, live.*, metrics.json, MODEL_CARD.md")


if __name__ == "__main__":
    main()
