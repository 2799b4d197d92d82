"""Evaluation on the MUSDB18-7 valid excerpts through the shipped runtime path.

A model is scored on what users get: :func:`onnx_system` separates each
track with :class:`stemboard.plugin.StemSeparator` (the engine, its kernels
and the manifest's stereo mode, normalisation and high-band rule), not with a
second offline path. :func:`mask_system` is the plain numpy reference
(:func:`stemboard.dsp.stft`, ``MaskModel.masks``, the hold-top-bin rule,
:func:`stemboard.dsp.istft`): a test oracle for the engine and what
``bench/postproc.py`` needs the masks of; the oracle masks (IBM/IRM) are
scored through it too.
"""
from __future__ import annotations

import time

import numpy as np

from stemboard.dsp import StftGrid, from_mid_side, istft, stft, to_mid_side

from stemboard.plugin.separator import StemSeparator
from stemboard.train.data import STEMS

# Vocal activity per STFT frame (fixed before looking at any results, not tuned):
# truth: the vocal stem's frame energy is >= VAD_SHARE of the mixture's frame energy;
# prediction: the separated vocals' frame energy is >= VAD_SHARE of the mixture's.
# Frames more than 60 dB below the track's loudest frame are left out (silence).
VAD_SHARE = 0.1


def extend_masks(masks, n_bins):
    """(B,S,model_bins,T) -> (B,S,n_bins,T) with the hold_top_bin rule."""
    b = masks.shape[2]
    if b == n_bins:
        return masks
    top = np.repeat(masks[:, :, b - 1: b], n_bins - b, axis=2)
    return np.concatenate([masks, top], axis=2)


def model_masks(model, spec, mode=None):
    """Masks for every frame of ``spec`` (channels, frames, bins) -> (ch, S, bins, frames)."""
    m = model.manifest
    mag = np.abs(spec[:, :, : m.model_bins]).transpose(0, 2, 1)
    mag = np.pad(mag, ((0, 0), (0, 0), (m.context_frames, m.lookahead_frames)))
    masks = model.masks(np.ascontiguousarray(mag, np.float32), mask_mode=mode or "soft")
    return extend_masks(masks, spec.shape[2])


def apply_masks(spec, masks, length, grid):
    """spec (ch, frames, bins), masks (ch, S, bins, frames) -> (S, ch, length) audio."""
    out = []
    for s in range(masks.shape[1]):
        out.append(istft(spec * masks[:, s].transpose(0, 2, 1), length, grid))
    return np.stack(out)


def system_estimates(fn, spec, stem_specs, n, grid):
    """The stems (S, ch, n) of an :func:`evaluate_systems` system ``fn``, run in its
    ``stereo_mode`` as the runtime runs it.

    ``"mid_side"`` (two channels): the mid and side spectra are masked and the
    stems mapped back to left/right (STFT and masking are linear, so coding the
    spectra equals coding the audio).  ``stem_specs`` may be None for systems
    that do not use them.
    """
    if getattr(fn, "stereo_mode", "left_right") == "mid_side" and spec.shape[0] == 2:
        ms = to_mid_side(spec)
        coded = None if stem_specs is None else to_mid_side(stem_specs, axis=1)
        return from_mid_side(apply_masks(ms, fn(ms, coded), n, grid), axis=1)
    return apply_masks(spec, fn(spec, stem_specs), n, grid)


def oracle_masks(stem_specs, kind):
    """stem_specs (S, ch, frames, bins) -> (ch, S, bins, frames) oracle masks."""
    mag = np.abs(stem_specs).transpose(1, 0, 3, 2)
    if kind == "ibm":
        idx = mag.argmax(axis=1)
        out = np.zeros_like(mag)
        np.put_along_axis(out, idx[:, None], 1.0, axis=1)
        return out
    if kind == "irm":
        tot = mag.sum(axis=1, keepdims=True)
        return np.where(tot > 0, mag / np.maximum(tot, 1e-12), 1.0 / mag.shape[1])
    raise ValueError(kind)


class _CachedSolve:
    """Drop-in for ``numpy.linalg.solve`` that reuses the LU factors of a large matrix.

    museval's BSSEval v4 solves the same (references' Gram + eps*I) system once
    per estimated stem and again for every system scored on the same track;
    LAPACK's ``gesv`` is ``getrf`` + ``getrs``, so caching ``getrf`` gives the
    same numbers and saves most of museval's time.  Matrices are compared
    element for element before reuse.
    """

    def __init__(self, solve):
        self.solve = solve
        self.matrix = None
        self.lu = None

    def __call__(self, a, b):
        import scipy.linalg

        if a.ndim != 2 or a.shape[0] < 2048:
            return self.solve(a, b)
        if self.matrix is None or self.matrix.shape != a.shape or not np.array_equal(self.matrix, a):
            self.matrix = np.array(a, copy=True)
            self.lu = scipy.linalg.lu_factor(a, check_finite=False)
        return scipy.linalg.lu_solve(self.lu, b, check_finite=False)


_SOLVER = None


def museval_sdr_windows(refs, ests, rate=44100):
    """SDR per stem and 1 s window from ``museval.evaluate`` itself (slow), (S, nwin)."""
    global _SOLVER
    import museval

    original = np.linalg.solve
    if _SOLVER is None:
        _SOLVER = _CachedSolve(original)
    np.linalg.solve = _SOLVER
    try:
        sdr, _, _, _ = museval.evaluate(refs.transpose(0, 2, 1), ests.transpose(0, 2, 1),
                                        win=rate, hop=rate, padding=True)
    finally:
        np.linalg.solve = original
    return sdr


def sdr_windows(refs, ests, win=44100):
    """BSSEval v4 SDR per stem and 1 s window, (S, nwin), computed directly.

    refs/ests (S, ch, n).  In museval's v4 mode (``bss_eval`` with
    ``bsseval_sources_version=False``) SDR is ``||s_true||^2 / ||e_spat +
    e_interf + e_artif||^2`` and the three error terms add up to ``estimate -
    reference`` exactly, so the projection filters (a 4096 x 4096 solve per
    source, most of museval's time) cancel out of the SDR.  This reproduces
    museval's windowing (full windows only) and its silent-window rule (NaN for
    every source when any reference or estimate sums to zero over the window);
    :func:`evaluate_systems` checks it against :func:`museval_sdr_windows`.
    """
    R = np.asarray(refs, np.float64).transpose(0, 2, 1)   # (S, n, ch), museval layout
    E = np.asarray(ests, np.float64).transpose(0, 2, 1)
    n = R.shape[1]
    nwin = n // win if win < n else 1
    out = np.full((R.shape[0], nwin), np.nan)
    for t in range(nwin):
        sl = slice(t * win, min(t * win + win, n))
        r, e = R[:, sl], E[:, sl]
        if np.any(np.all(r.sum(axis=2) == 0, axis=1)) or np.any(np.all(e.sum(axis=2) == 0, axis=1)):
            continue
        num = np.sum(r ** 2, axis=(1, 2))
        den = np.sum((e - r) ** 2, axis=(1, 2))
        with np.errstate(divide="ignore"):
            out[:, t] = np.where(den == 0, np.inf, 10 * np.log10(num / np.where(den == 0, 1, den)))
    return out


def windows_differ(a, b) -> float:
    """Largest absolute difference of two (S, nwin) SDR tables; inf if their NaNs differ."""
    if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")
    return float(np.nanmax(np.abs(a - b))) if np.any(~np.isnan(a)) else 0.0


def bss_sdr(refs, ests, rate=44100):
    """BSSEval v4 SDR per stem: median over 1 s windows. refs/ests (S, ch, n) -> (S,)."""
    return np.nanmedian(sdr_windows(refs, ests, rate), axis=1)


#: How far the direct SDR may stray from museval's before evaluation stops (dB).
MUSEVAL_TOLERANCE_DB = 1e-6


def vad_frames(vocal_ref, vocal_est, mix, grid):
    """Per-frame VAD truth and prediction from time-domain signals (ch, n)."""
    def frame_energy(x):
        return (np.abs(stft(x, grid)) ** 2).sum(axis=(0, 2))

    e_mix = frame_energy(mix)
    e_voc = frame_energy(vocal_ref)
    e_est = frame_energy(vocal_est)
    truth = e_voc >= VAD_SHARE * e_mix
    pred = e_est >= VAD_SHARE * e_mix
    valid = e_mix > 1e-6 * max(e_mix.max(), 1e-30)
    return truth[valid], pred[valid]


def evaluate_systems(tracks, systems: dict, grid=StftGrid(), log=print, *,
                     museval_tracks: int = 1) -> dict:
    """Score systems on tracks.

    ``systems`` maps a name to :func:`onnx_system` (separates the mixture
    through the runtime), to a callable ``(spec, stem_specs) -> masks``
    (ch, S, bins, frames) such as :func:`oracle_system`, or to ``"mixture"``.  Returns per-system SDR tables
    (median over tracks), per-track SDRs and, for the systems with masks, VAD.

    SDR is :func:`sdr_windows` (BSSEval v4, computed directly); on the first
    ``museval_tracks`` tracks every system is also scored by ``museval.evaluate``
    itself, and a difference over :data:`MUSEVAL_TOLERANCE_DB` stops with an
    error.  Each row records the largest difference seen.
    """
    results = {name: {"per_track": [], "vad_truth": [], "vad_pred": [], "seconds": 0.0}
               for name in systems}
    for ti, t in enumerate(tracks):
        stems = t["stems"]                       # (S, ch, n)
        n = stems.shape[-1]
        mix = stems.sum(axis=0)
        spec = stft(mix, grid)
        stem_specs = None
        for name, fn in systems.items():
            t0 = time.time()
            if isinstance(fn, str) and fn == "mixture":
                est = np.repeat(mix[None], len(STEMS), axis=0)
            elif getattr(fn, "separates", False):
                est = fn(mix)
            else:
                if stem_specs is None:
                    stem_specs = np.stack([stft(s, grid) for s in stems])
                est = system_estimates(fn, spec, stem_specs, n, grid)
            results[name]["seconds"] += time.time() - t0
            windows = sdr_windows(stems, est)
            if ti < museval_tracks:
                diff = windows_differ(windows, museval_sdr_windows(stems, est))
                if not diff <= MUSEVAL_TOLERANCE_DB:
                    raise RuntimeError(f"{name} on {t['name']}: direct BSSEval v4 SDR differs "
                                       f"from museval.evaluate by {diff} dB")
                results[name]["museval_check"] = max(results[name].get("museval_check", 0.0),
                                                     diff)
            sdr = np.nanmedian(windows, axis=1)
            results[name]["eval_seconds"] = results[name].get("eval_seconds", 0.0) + time.time() - t0
            results[name]["per_track"].append([float(v) for v in sdr])
            if not isinstance(fn, str):
                tr, pr = vad_frames(stems[0], est[0], mix, grid)
                results[name]["vad_truth"].append(tr)
                results[name]["vad_pred"].append(pr)
        log(f"eval {ti + 1}/{len(tracks)} {t['name']}: " + ", ".join(
            f"{k} {np.mean(v['per_track'][-1]):.2f}" for k, v in results.items()))
    table = {}
    for name, r in results.items():
        per = np.array(r["per_track"])          # (tracks, S)
        med = np.nanmedian(per, axis=0)
        row = {s: round(float(v), 3) for s, v in zip(STEMS, med)}
        row["avg"] = round(float(np.mean(med)), 3)
        if r["vad_truth"]:
            tr = np.concatenate(r["vad_truth"])
            pr = np.concatenate(r["vad_pred"])
            row["vad_accuracy"] = round(float(np.mean(tr == pr)), 4)
            row["vad_vocal_frame_share"] = round(float(np.mean(tr)), 4)
        row["eval_seconds"] = round(r.get("eval_seconds", 0.0), 1)
        if "museval_check" in r:
            row["sdr_method"] = "direct BSSEval v4, checked against museval.evaluate"
            row["museval_check_tracks"] = min(museval_tracks, len(tracks))
            row["museval_max_abs_diff_db"] = r["museval_check"]
        row["per_track"] = {t["name"]: [round(v, 3) for v in p]
                            for t, p in zip(tracks, r["per_track"])}
        table[name] = row
    return table


def onnx_system(model, mode=None, stereo_mode=None):
    """The model as an :func:`evaluate_systems` system, through the shipped runtime.

    Parameters
    ----------
    model : MaskModel
    mode : {"soft", "binary"}, optional
        The separator's mask mode (default soft).
    stereo_mode : {"mid_side", "left_right"}, optional
        Default: the manifest's, as the runtime runs it. ``"left_right"`` for a
        mid/side model separates each channel on its own (a mono stream is never
        mid/side coded), which is what the model does without the coding.

    Returns
    -------
    callable
        ``(mix (ch, n)) -> stems (S, ch, n)`` in the model's stem order, with
        ``separates = True`` and ``stereo_mode`` set.
    """
    own = model.manifest.stereo_mode
    stereo_mode = stereo_mode or own
    if stereo_mode not in (own, "left_right"):
        raise ValueError(f"{model.path}: cannot run a {own} model as {stereo_mode}")

    def fn(mix):
        sep = StemSeparator(model, mask_mode=mode or "soft")
        parts = [mix] if stereo_mode == own else [ch for ch in mix]
        outs = [sep.separate(part, model.sample_rate) for part in parts]
        if stereo_mode == own:
            return np.stack([outs[0][s] for s in sep.stems])
        return np.stack([np.stack([o[s] for o in outs]) for s in sep.stems])
    fn.separates = True
    fn.stereo_mode = stereo_mode
    return fn


def mask_system(model, mode=None, stereo_mode=None):
    """The model's masks as an :func:`evaluate_systems` system: the numpy reference.

    Not what ships: a test oracle for :func:`onnx_system`, and the masks that
    ``bench/postproc.py`` post-processes. Run in ``stereo_mode`` (default: the
    manifest's)."""
    def fn(spec, _stem_specs):
        return model_masks(model, spec, mode)
    fn.stereo_mode = stereo_mode or model.manifest.stereo_mode
    return fn


def oracle_system(kind):
    def fn(_spec, stem_specs):
        return oracle_masks(stem_specs, kind)
    return fn


def separation_speed(model, seconds=60.0, repeats=5, seed=0) -> dict:
    """Whole separation (STFT + model + 4 ISTFTs) on ``seconds`` of stereo noise-like audio.

    Best of ``repeats`` runs each: on a shared machine the best run is the one
    least disturbed by other jobs.
    """
    grid = StftGrid(model.manifest.n_fft, model.manifest.hop)
    rng = np.random.default_rng(seed)
    x = (0.1 * rng.standard_normal((2, int(seconds * model.sample_rate)))).astype(np.float32)
    best_model, best_all = float("inf"), float("inf")
    m = model.manifest
    for _ in range(repeats):
        t0 = time.perf_counter()
        spec = stft(x, grid)
        mag = np.abs(spec[:, :, : m.model_bins]).transpose(0, 2, 1)
        mag = np.pad(mag, ((0, 0), (0, 0), (m.context_frames, m.lookahead_frames)))
        t1 = time.perf_counter()
        masks = model.masks(np.ascontiguousarray(mag, np.float32))
        t2 = time.perf_counter()
        masks = extend_masks(masks, spec.shape[2])
        apply_masks(spec, masks, x.shape[1], grid)
        t3 = time.perf_counter()
        best_model = min(best_model, t2 - t1)
        best_all = min(best_all, t3 - t0)
    # The package's own path (streaming engine with fused kernels) on the same audio,
    # as stemboard.separate runs it: a new separator per call on the loaded model.
    best_engine = float("inf")
    StemSeparator(model).separate(x[:, : model.sample_rate], model.sample_rate)
    for _ in range(repeats):
        t0 = time.perf_counter()
        StemSeparator(model).separate(x, model.sample_rate)
        best_engine = min(best_engine, time.perf_counter() - t0)
    return {"seconds_audio": seconds, "channels": 2, "repeats": repeats,
            "model_only_x_realtime": round(seconds / best_model, 1),
            "whole_separation_x_realtime": round(seconds / best_all, 1),
            "stemboard_separate_x_realtime": round(seconds / best_engine, 1)}
