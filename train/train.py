"""Training loop for :class:`MaskNet`."""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from stemboard.dsp.normalization import log1p_normalization
from stemboard.train.data import STEMS, RemixSampler
from stemboard.train.model import EnsembleNet, build_net


@dataclass
class TrainConfig:
    name: str = "offline"
    hidden: int = 192
    dilations: tuple = (1, 2, 4, 4, 1)
    kernel: int = 3
    context: int = 12
    lookahead: int = 12
    loss: str = "l1mag"          # "l1mag"/"l2mag" (ratio mask via magnitude L1/L2), "l2stem"
                                 # (l2mag, each stem's error relative to its own energy),
                                 # "l2psa" (L2 to the phase-sensitive target), "sdr" (negative
                                 # SDR per crop and stem, complex error) or "mse_ibm" (article)
    steps: int = 2000
    batch: int = 24
    frames_out: int = 96
    lr: float = 2e-3
    weight_decay: float = 0.0
    p_remix: float = 0.5
    seed: int = 0
    eq_db: float = 0.0              # random per-stem EQ augmentation range (0 = off)
    synth_share: float = 0.0        # share of draws from MIDI-rendered excerpts (0 = MUSDB only)
    synth_silence: tuple = ()       # stems left silent in the synthetic excerpts (e.g. vocals)
    front: str = "dense"            # "dense" 1x1 input layer or "freqconv" (FreqConvFront)
    front_planes: int = 1           # 2: a freqconv front reads a stereo pair as two planes
                                    # of one spectrum instead of one spectrum twice as tall
    refine: int = 0                 # BinRefine channels (0 = no per-bin refinement head)
    pitch_shifts: tuple = ()        # semitones of the resampled copies drawn with the songs
    input_layout: str = "channel"   # "channel" or "stereo_pair" (own + other channel's features)
    ema: float = 0.0                # decay of an exponential moving average of the weights,
                                    # used instead of the last weights (0 = off)
    mid_side: bool = False          # train on mid (L+R)/2 and side (L-R)/2 signals instead of
                                    # left/right channels (what a "mid_side" manifest is run on)
    arch: str = "masknet"          # "masknet" (MaskNet) or "bandsplit" (BandSplitNet; ``hidden``
                                    # is then its per-band width)
    feature_scale: float = 1.0      # input features log1p(feature_scale * |X|): larger values
                                    # make them closer to log|X| (level-invariant) in quiet bins
    dropout: float = 0.0            # MaskNet: dropout on each residual block's branch while
                                    # training (a regulariser; identity in the exported graph)
    stem_weights: tuple = ()        # per-stem weights of the l1mag/l2mag/l2psa error, in STEMS
                                    # order, normalised to mean 1 (() = all equal)
    precision: str = "fp32"         # "bf16": the network's forward pass under bfloat16 autocast
                                    # (weights, optimiser and loss stay float32); ~1.45x faster
                                    # per step on CPUs with AMX/AVX512-BF16
    vocals_db: tuple = ()           # (lo, hi): the vocal stem's gain range in dB instead of the
                                    # sampler's; (-30, -10) trains a cascade's second stage on
                                    # accompaniments with the first stage's residual vocals
    teacher: str = ""               # bundled model whose stems on the training songs are
                                    # distillation targets ("" = none; see .distill)
    distill: float = 0.0            # weight of the teacher's stems in the targets of the
                                    # crops it labels (0 with a teacher = the control run)
    members: int = 1                # >1: train that many nets of this recipe (seeds seed,
                                    # seed+1, ...) and ship their EnsembleNet (mean logits)
    extra: dict = field(default_factory=dict)

    @property
    def stereo_pair(self) -> bool:
        if self.input_layout not in ("channel", "stereo_pair"):
            raise ValueError(f"unknown input_layout {self.input_layout!r}")
        return self.input_layout == "stereo_pair"

    @property
    def autocast_dtype(self):
        """The autocast dtype of the forward pass, or None for plain float32."""
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"unknown precision {self.precision!r} (expected 'fp32' or 'bf16')")
        return torch.bfloat16 if self.precision == "bf16" else None

    @property
    def mask_type(self) -> str:
        return "binary" if self.loss == "mse_ibm" else "soft"


def net_config(cfg: TrainConfig, *, bins: int, stems: int) -> dict:
    """The network ``cfg`` trains, as the config :func:`.model.build_net` takes (the
    form checkpoints store)."""
    net = {"bins": bins, "stems": stems, "hidden": cfg.hidden,
           "dilations": list(cfg.dilations), "kernel": cfg.kernel}
    if cfg.arch == "bandsplit":
        if cfg.stereo_pair or cfg.refine or cfg.front != "dense" or cfg.dropout:
            raise ValueError(f"{cfg.name}: arch 'bandsplit' has its own input and output "
                             "layers (front, refine, stereo_pair and dropout do not apply)")
        return {"arch": "bandsplit", **net}
    if cfg.arch != "masknet":
        raise ValueError(f"{cfg.name}: unknown arch {cfg.arch!r}")
    net = {**net, "in_bins": bins * (2 if cfg.stereo_pair else 1), "front": cfg.front,
           "refine_channels": cfg.refine, "front_planes": cfg.front_planes}
    return net | ({"dropout": cfg.dropout} if cfg.dropout else {})


#: The runtime's one definition of the ``log1p`` normalisation, on torch tensors.
_normalize_log1p = log1p_normalization(torch.log1p)


def log1p_features(mag, norm):
    """Torch version of the runtime's ``log1p`` input normalisation.

    ``mag`` is (batch, bins, time); ``norm`` is the manifest's dict.
    """
    mean = torch.as_tensor(np.asarray(norm["mean"], np.float32))
    std = torch.as_tensor(np.asarray(norm["std"], np.float32))
    if mean.ndim:
        mean = mean[:, None]
    if std.ndim:
        std = std[:, None]
    return _normalize_log1p(mag, float(norm.get("scale", 1.0)), mean, std)


def normalization_stats(spectra, lengths, scale: float = 1.0) -> dict:
    """Per-bin mean/std of log1p(scale*|mixture|) over the training songs (unaugmented)."""
    acc, acc2, n = 0.0, 0.0, 0
    for i in range(spectra.shape[0]):
        mix = np.abs(spectra[i, :, :, : lengths[i]].sum(axis=0))  # (2, frames, bins)
        f = np.log1p(scale * mix.astype(np.float64)).reshape(-1, mix.shape[-1])
        acc = acc + f.sum(0)
        acc2 = acc2 + (f**2).sum(0)
        n += f.shape[0]
    mean = acc / n
    std = np.sqrt(np.maximum(acc2 / n - mean**2, 1e-8))
    return {"type": "log1p", "scale": scale,
            "mean": [round(float(v), 6) for v in mean],
            "std": [round(float(max(v, 1e-3)), 6) for v in std]}


def sdr_loss(masks, mix, targets, residual):
    """Negative signal-to-distortion ratio (dB) per item and stem, averaged.

    ``targets`` are the phase-sensitive targets and ``residual`` (B, S, T) the
    per-frame energy they miss (:class:`.data.RemixSampler` with
    ``phase_residual``), so ``err`` is the complex error ``|m X - S|^2`` of the
    separated stem over the crop (about a second: museval's window) and ``ref``
    the stem's energy.  Like museval, which skips windows whose reference is
    silent, stems more than 40 dB below the crop's mixture do not count.
    """
    err = ((masks * mix[:, None] - targets) ** 2).sum(dim=(2, 3)) + residual.sum(dim=2)
    ref = (targets ** 2).sum(dim=(2, 3)) + residual.sum(dim=2)
    mix_e = (mix ** 2).sum(dim=(1, 2))[:, None]
    eps = 1e-6 * mix_e + 1e-10
    active = (ref > 1e-4 * mix_e).to(masks.dtype)
    sdr = 10.0 * torch.log10((ref + eps) / (err + eps))
    return -(sdr * active).sum() / active.sum().clamp(min=1.0)


#: The losses whose per-stem error ``TrainConfig.stem_weights`` can scale.
WEIGHTED_LOSSES = ("l1mag", "l2mag", "l2psa")


def stem_weight_tensor(weights, stems: int):
    """``weights`` (one per stem, or empty) as a (1, S, 1, 1) tensor of mean 1, or None."""
    if not weights:
        return None
    w = torch.as_tensor(np.asarray(weights, np.float32))
    if w.shape != (stems,) or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"stem_weights must be {stems} finite non-negative numbers with a "
                         f"positive sum, got {tuple(weights)}")
    return (w * (stems / w.sum())).reshape(1, stems, 1, 1)


def loss_fn(masks, mix, stems, kind: str, weights=None):
    """masks (B,S,F,T); mix (B,F,T) and stems (B,S,F,T) magnitudes on the output frames;
    ``weights`` (1,S,1,1) or None scales each stem's error (:func:`stem_weight_tensor`)."""
    if weights is not None and kind not in WEIGHTED_LOSSES:
        raise ValueError(f"stem_weights apply to the {', '.join(WEIGHTED_LOSSES)} losses, "
                         f"not {kind!r}")
    w = 1.0 if weights is None else weights
    if kind == "l1mag":
        return ((masks * mix[:, None] - stems).abs() * w).mean() / (mix.abs().mean() + 1e-8)
    if kind in ("l2mag", "l2psa"):
        # (l2psa: ``stems`` holds the phase-sensitive targets, see RemixSampler.)
        # Energy-weighted like SDR: loud time-frequency bins dominate, as in Open-Unmix.
        return ((masks * mix[:, None] - stems) ** 2 * w).mean() / ((mix ** 2).mean() + 1e-8)
    if kind == "l2stem":
        # SDR is scored per stem, relative to that stem's energy; the l2mag sum lets the
        # loud stems (bass, drums) outweigh the quiet ones.  Here each stem's squared
        # error is divided by its own target energy over the batch (a batch-level
        # per-stem SDR; a dropped or silent stem in one item does not divide by zero).
        err = ((masks * mix[:, None] - stems) ** 2).sum(dim=(0, 2, 3))
        energy = (stems ** 2).sum(dim=(0, 2, 3))
        return (err / (energy + 1e-3 * energy.mean() + 1e-8)).mean()
    if kind == "mse_ibm":
        ibm = torch.nn.functional.one_hot(stems.argmax(dim=1), masks.shape[1])
        ibm = ibm.permute(0, 3, 1, 2).to(masks.dtype)
        return ((masks - ibm) ** 2).mean()
    raise ValueError(f"unknown loss {kind!r}")


def draw_weights(n_real: int, n_total: int, synth_share: float):
    """Per-track sampling weights: MUSDB tracks first, then synthetic ones.

    ``synth_share`` of all draws go to the ``n_total - n_real`` synthetic tracks
    (uniformly among them), the rest to the real ones.  ``None`` (uniform,
    the original random stream) when there is nothing synthetic to weigh.
    """
    if not 0.0 <= synth_share < 1.0:
        raise ValueError(f"synth_share must be in [0, 1), got {synth_share}")
    n_synth = n_total - n_real
    if n_synth == 0:
        if synth_share > 0:
            raise ValueError("synth_share > 0 but no synthetic tracks were given")
        return None
    w = np.full(n_total, (1.0 - synth_share) / n_real)
    w[n_real:] = synth_share / n_synth
    return w


def batch_features(batch, norm, stereo_pair: bool):
    """Network input for a :meth:`.data.RemixSampler.batch` draw: the mixture's features,
    then (stereo-pair layout) the other channel's, (batch, in_bins, time)."""
    feats = log1p_features(torch.from_numpy(batch[0]), norm)
    if stereo_pair:
        feats = torch.cat([feats, log1p_features(torch.from_numpy(batch[2]), norm)], dim=1)
    return feats


def _recompute_batch_norm(model, sampler, cfg, norm, batches: int = 40):
    """Re-estimate the BatchNorm statistics for the (averaged) weights in ``model``.

    The running statistics were collected under the live weights; averaged
    weights see slightly different activations.  ``momentum=None`` makes the
    running buffers a plain average over ``batches`` fresh training batches.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(batch_features(sampler.batch(cfg.batch), norm, cfg.stereo_pair))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def train(cfg: TrainConfig, spectra, lengths, norm: dict, log=print, n_real=None,
          n_pitched=0, teacher=None):
    """Train ``cfg`` on ``spectra`` (tracks, stems, 2, frames, bins) complex64.

    Track order: ``n_real`` MUSDB songs (default: all tracks), then
    ``n_pitched`` pitch-shifted copies of them (:func:`.data.pitch_shifted`;
    drawn like the songs when ``cfg.pitch_shifts`` is set, left out
    otherwise), then synthetic excerpts drawn with ``cfg.synth_share`` of the
    probability.  ``teacher`` (:func:`.distill.teacher_magnitudes`, shaped like
    ``spectra``) is needed when ``cfg.teacher`` is set.
    """
    if bool(cfg.teacher) != (teacher is not None):
        raise ValueError(f"{cfg.name}: teacher={cfg.teacher!r} but teacher targets were "
                         f"{'not ' if teacher is None else ''}given")
    if cfg.members != 1:
        return _train_ensemble(cfg, spectra, lengths, norm, log=log, n_real=n_real,
                               n_pitched=n_pitched, teacher=teacher)
    if cfg.pitch_shifts and not n_pitched:
        raise ValueError(f"{cfg.name}: pitch_shifts={cfg.pitch_shifts} but no pitch-shifted "
                         "copies were given")
    if n_pitched and not cfg.pitch_shifts:
        # A view when nothing follows the copies, so the random stream (and the
        # model) is the same as a run that never had them.
        n_songs = spectra.shape[0] if n_real is None else n_real
        if n_songs + n_pitched == spectra.shape[0]:
            spectra, lengths = spectra[:n_songs], lengths[:n_songs]
            teacher = None if teacher is None else teacher[:n_songs]
        else:
            keep = np.r_[0:n_songs, n_songs + n_pitched:spectra.shape[0]]
            spectra, lengths = spectra[keep], lengths[keep]
            teacher = None if teacher is None else teacher[keep]
        n_pitched = 0
    track_weights = stem_gain = None
    if n_real is not None:
        n_real = n_real + n_pitched
        track_weights = draw_weights(n_real, spectra.shape[0], cfg.synth_share)
        if cfg.synth_silence:
            stem_gain = np.ones(spectra.shape[:2], np.float32)
            for name in cfg.synth_silence:
                stem_gain[n_real:, STEMS.index(name)] = 0.0
    if float(norm.get("scale", 1.0)) != float(cfg.feature_scale):
        raise ValueError(f"{cfg.name}: feature_scale {cfg.feature_scale} but the input "
                         f"normalisation was computed with scale {norm.get('scale', 1.0)}")
    dtype = cfg.autocast_dtype
    weights = stem_weight_tensor(cfg.stem_weights, spectra.shape[1])
    if weights is not None and cfg.loss not in WEIGHTED_LOSSES:
        # Checked here too: the sdr loss never reaches loss_fn.
        raise ValueError(f"{cfg.name}: stem_weights apply to the "
                         f"{', '.join(WEIGHTED_LOSSES)} losses, not {cfg.loss!r}")
    torch.manual_seed(cfg.seed)
    model = build_net(net_config(cfg, bins=spectra.shape[-1], stems=spectra.shape[1]))
    rf = model.receptive_field
    if cfg.context + cfg.lookahead + 1 != rf:
        raise ValueError(f"context {cfg.context} + lookahead {cfg.lookahead} + 1 != "
                         f"receptive field {rf}")
    sampler = RemixSampler(spectra, lengths, cfg.frames_out + rf - 1, p_remix=cfg.p_remix,
                           seed=cfg.seed, stereo_pair=cfg.stereo_pair, eq_db=cfg.eq_db,
                           track_weights=track_weights, stem_gain=stem_gain,
                           phase_sensitive=cfg.loss in ("l2psa", "sdr"), mid_side=cfg.mid_side,
                           phase_residual=cfg.loss == "sdr",
                           stem_gain_db=({STEMS.index("vocals"): cfg.vocals_db}
                                         if cfg.vocals_db else None),
                           teacher=teacher, distill=cfg.distill)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, cfg.steps // 20)

    def lr_at(step):
        if step < warm:
            return cfg.lr * (step + 1) / warm
        p = (step - warm) / max(1, cfg.steps - warm)
        return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p)))

    if not 0.0 <= cfg.ema < 1.0:
        raise ValueError(f"{cfg.name}: ema must be in [0, 1), got {cfg.ema}")
    ema = [p.detach().clone() for p in model.parameters()] if cfg.ema else None
    sl = slice(cfg.context, cfg.context + cfg.frames_out)
    t0 = time.time()
    history = []
    run = 0.0
    model.train()
    # The next batch is drawn in a helper thread while this one trains: the draw is
    # numpy work (most of it outside the GIL) that would otherwise leave torch's
    # threads idle for a third of a step.  The sampler is only used from that thread,
    # one draw at a time and in order, so the random stream (and the model) is the
    # same as drawing in the loop.
    pool = ThreadPoolExecutor(max_workers=1)
    pending = pool.submit(sampler.batch, cfg.batch) if cfg.steps else None
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        batch = pending.result()
        pending = pool.submit(sampler.batch, cfg.batch) if step + 1 < cfg.steps else None
        mix = torch.from_numpy(batch[0])
        stems = torch.from_numpy(batch[1])
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            masks = model(batch_features(batch, norm, cfg.stereo_pair))
        masks = masks.float()  # the loss in float32 whatever the forward's precision
        if cfg.loss == "sdr":
            loss = sdr_loss(masks, mix[:, :, sl], stems[:, :, :, sl],
                            torch.from_numpy(batch[-1])[:, :, sl])
        else:
            loss = loss_fn(masks, mix[:, :, sl], stems[:, :, :, sl], cfg.loss, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()],
                                     1.0 - cfg.ema)
        run = 0.98 * run + 0.02 * loss.item() if step else loss.item()
        if step % 100 == 0 or step == cfg.steps - 1:
            el = time.time() - t0
            history.append({"step": step, "loss": round(run, 5), "elapsed_s": round(el, 1)})
            log(f"[{cfg.name}] step {step}/{cfg.steps} loss {run:.4f} "
                f"lr {lr_at(step):.2e} {el:.0f}s")
    pool.shutdown()
    if ema is not None:
        with torch.no_grad():
            for p, e in zip(model.parameters(), ema):
                p.copy_(e)
        _recompute_batch_norm(model, sampler, cfg, norm)
    model.eval()
    return model, run_info(cfg, model, time.time() - t0, history)


def run_info(cfg: TrainConfig, model, seconds: float, history: list) -> dict:
    """What a training run reports (checkpoints' ``.train.json``, ablation rows)."""
    return {"config": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in asdict(cfg).items()},
            "train_seconds": round(seconds, 1), "history": history,
            "params": sum(p.numel() for p in model.parameters()),
            "macs_per_frame": model.macs_per_frame()}


def _train_ensemble(cfg: TrainConfig, spectra, lengths, norm, **kwargs):
    """Train ``cfg.members`` nets one after the other (seeds ``cfg.seed + i``, each
    exactly the single-net run of that seed) and return their :class:`.model.EnsembleNet`.

    The info's ``history`` holds every member's, each entry marked with its
    ``member``; ``train_seconds`` is their sum.
    """
    if not isinstance(cfg.members, int) or cfg.members < 2:
        raise ValueError(f"{cfg.name}: members must be an integer >= 1, got {cfg.members!r}")
    nets, history, seconds = [], [], 0.0
    for i in range(cfg.members):
        one = replace(cfg, name=f"{cfg.name}.m{i}", seed=cfg.seed + i, members=1)
        net, info = train(one, spectra, lengths, norm, **kwargs)
        nets.append(net)
        history += [dict(h, member=i) for h in info["history"]]
        seconds += info["train_seconds"]
    model = EnsembleNet(nets).eval()
    return model, run_info(cfg, model, seconds, history)
