"""MUSDB18-7 loading, caching and on-the-fly remix augmentation.

Decoded audio is cached as ``.npy`` (never inside git: the default cache lives in
``runs/cache``, which is git-ignored).  Training works on complex STFTs of the
stems on the runtime grid (first ``model_bins`` bins), precomputed once with
:func:`stemboard.dsp.stft`; because the STFT is linear, the STFT of a remixed,
gain-scaled, channel-swapped mixture is the matching sum of stem STFTs, so
augmentation needs no STFT inside the training loop.  Crops are at hop
granularity.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stemboard.dsp import StftGrid, num_frames, stft

STEMS = ("vocals", "drums", "bass", "other")
SAMPLE_RATE = 44100


def decode_musdb(data_root, cache_dir, split: str, log=print) -> list[dict]:
    """Decode the ``split`` ("train"/"valid") tracks of MUSDB18-7 and cache them.

    Returns a list of ``{"name", "stems"}`` where ``stems`` is float32
    (4, 2, samples) in :data:`STEMS` order.  The mixture is the sum of stems.
    """
    cache = Path(cache_dir) / f"musdb_{split}"
    index = cache / "index.json"
    if index.is_file():
        names = json.loads(index.read_text())
        return [{"name": n, "stems": np.load(cache / f"{i:03d}.npy")} for i, n in enumerate(names)]
    import musdb

    root = Path(data_root) / "musdb18-7"
    db = musdb.DB(root=str(root), subsets="train", split=split)
    if not db.tracks:
        raise FileNotFoundError(f"no MUSDB18 tracks found under {root}")
    cache.mkdir(parents=True, exist_ok=True)
    out, names = [], []
    for i, track in enumerate(db.tracks):
        stems = np.stack([track.targets[s].audio.T for s in STEMS]).astype(np.float32)
        if track.rate != SAMPLE_RATE:
            raise ValueError(f"{track.name}: sample rate {track.rate}, expected {SAMPLE_RATE}")
        np.save(cache / f"{i:03d}.npy", stems)
        names.append(track.name)
        out.append({"name": track.name, "stems": stems})
    index.write_text(json.dumps(names))
    log(f"decoded {len(out)} {split} tracks into {cache}")
    return out


def resample_ratio(semitones: float, max_den: int = 16):
    """The small-integer (up, down) resampling pair closest to a pitch shift.

    Resampling by ``up/down`` and playing back at the same rate scales pitch and
    tempo by ``down/up``: +2 semitones -> (8, 9), i.e. 2.04 semitones up and
    12.5 % faster.  Small integers keep the polyphase filter short.
    """
    from fractions import Fraction

    r = Fraction(2.0 ** (-semitones / 12.0)).limit_denominator(max_den)
    if r == 1:
        raise ValueError(f"pitch shift {semitones} semitones rounds to no shift")
    return r.numerator, r.denominator


def pitch_shifted(tracks, semitones, log=print, *, lazy: bool = False) -> list[dict]:
    """Pitch- and tempo-shifted copies of ``tracks`` by resampling (Demucs-style).

    Each shift in ``semitones`` gives one copy of every track, every stem
    resampled by :func:`resample_ratio` (pitch and tempo change together, as on
    a turntable), so the mixture stays the sum of its stems.  With ten minutes
    of real audio the network sees each singer and instrument in only one
    register; shifted copies are new, still natural-sounding examples.

    ``lazy=True`` returns ``{"name", "samples", "make"}`` entries instead of
    audio: :func:`stem_spectra` resamples each copy only when it fills that
    copy's rows, so several copies never sit in memory as audio at once.
    """
    from scipy.signal import resample_poly

    out = []
    for st in semitones:
        up, down = resample_ratio(st)
        for t in tracks:
            def make(stems=t["stems"], up=up, down=down):
                return resample_poly(stems, up, down, axis=-1).astype(np.float32)
            entry = {"name": f"{t['name']} [{st:+g} st]",
                     "samples": -(-t["stems"].shape[-1] * up // down)}   # resample_poly's length
            entry.update({"make": make} if lazy else {"stems": make()})
            out.append(entry)
    if semitones:
        log(f"pitch/tempo copies: {len(out)} excerpts ({', '.join(f'{s:+g}' for s in semitones)} "
            "semitones)")
    return out


def track_frames(tracks, grid: StftGrid) -> np.ndarray:
    """Frames of every track on ``grid``, (tracks,) int64; a track is ``{"stems"}`` or
    ``{"samples", "make"}`` (:func:`pitch_shifted` with ``lazy=True``)."""
    return np.array([num_frames(t["samples"] if "make" in t else t["stems"].shape[-1], grid)
                     for t in tracks], np.int64)


def stem_spectra(tracks, grid: StftGrid, model_bins: int):
    """Complex STFTs of every stem, (tracks, 4, 2, frames, model_bins) complex64.

    Tracks shorter than the longest are zero-padded at the end; ``lengths``
    holds the number of valid frames per track.  The output is allocated once
    and filled track by track (the pitch-shifted copies make it several GB);
    a track given as ``{"samples", "make"}`` (``pitch_shifted(..., lazy=True)``)
    has its audio made only when its rows are filled.
    """
    lengths = track_frames(tracks, grid)
    n = int(lengths.max()) if len(tracks) else 0
    out = np.zeros((len(tracks), len(STEMS), 2, n, model_bins), np.complex64)
    for i, t in enumerate(tracks):
        s = t["make"]() if "make" in t else t["stems"]
        spec = stft(s.reshape(-1, s.shape[-1]), grid)[:, :, :model_bins]
        out[i, :, :, : spec.shape[1]] = spec.reshape(s.shape[0], s.shape[1], spec.shape[1],
                                                     model_bins)
    return out, lengths


class RemixSampler:
    """Draws (mixture magnitude, stem magnitudes) training crops.

    Each batch item is one audio channel.  With probability ``p_remix`` every
    stem comes from an independently chosen song, channel and crop offset
    (Open-Unmix style incoherent remix); otherwise the four stems come from the
    same song, channel and offset.  Every stem gets a random gain
    (``gain_db`` range), and a stem is occasionally silenced (``p_drop``).

    With ``stereo_pair=True`` each item also carries the *other* channel of the
    same stem segments (same song, offset and gain per stem; the drawn channel is
    "self", so the channel choice stays a channel swap), and :meth:`batch`
    returns a third array: the other channel's mixture magnitude.  The random
    draws are the same as without it.

    With ``phase_sensitive=True`` the stem targets are not the stem magnitudes
    ``|S|`` but their projections on the mixture's phase,
    ``|S| cos(angle S - angle X)`` (Erdogan et al. 2015's phase-sensitive
    target).  The separated stem is ``mask * X`` with the mixture's phase, so
    the squared error against this target is, up to a constant, the complex
    error ``|mask * X - S|^2`` that SDR measures.  The random draws are the same.
    ``phase_residual=True`` adds a last array, (batch, stems, frames): each
    frame's ``sum(|S|^2 - target^2)`` over bins, which turns that squared error
    into the complex error itself (the ``sdr`` loss needs it).

    With ``mid_side=True`` an item's "channel" is the mid ``(L + R) / 2`` or the
    side ``(L - R) / 2`` signal instead of left or right: what the runtime feeds a
    model whose manifest says ``"stereo_mode": "mid_side"``.  All stems of an item
    take the same one even in a remix (a mid signal is the mid of every stem),
    so the random draws are the same but the per-stem channel draws of remixes
    are not used.  With ``stereo_pair`` as well, the other signal is the side
    for a mid item and the mid for a side item: how much of a bin's energy is
    off-centre is the cue that tells a centred voice from wide instruments.

    With ``teacher`` (:func:`.distill.teacher_magnitudes`, shaped like
    ``spectra`` but magnitudes) the crops that are not remixed keep the song's
    own mixture up to one gain: all four stems take the same gain and none is
    dropped, since the teacher's stems are its estimate for that mixture only.
    Their targets are ``(1 - distill) |S| + distill |T|`` (``|T|`` the teacher's
    stem magnitude times the same gain): the squared error to that blend is the
    ``1 - distill`` / ``distill`` weighted sum of the errors to the true and the
    teacher's stems, up to a constant.  Remixed crops keep the true targets.
    The random draws differ from a run without a teacher, but not with
    ``distill``, so ``distill=0`` is the like-for-like control.
    """

    def __init__(self, spectra, lengths, frames: int, *, p_remix=0.5, gain_db=(-6.0, 3.0),
                 p_drop=0.1, seed=0, stereo_pair=False, eq_db=0.0, track_weights=None,
                 stem_gain=None, phase_sensitive=False, mid_side=False, phase_residual=False,
                 stem_gain_db=None, teacher=None, distill=0.0):
        self.spectra = spectra
        self.teacher = teacher
        self.distill = float(distill)
        if teacher is not None:
            if teacher.shape != spectra.shape:
                raise ValueError(f"teacher shape {teacher.shape} != spectra shape {spectra.shape}")
            if mid_side or stereo_pair or phase_sensitive:
                raise ValueError("a teacher's targets are left/right stem magnitudes: "
                                 "not for mid_side, stereo_pair or phase-sensitive training")
        if not 0.0 <= self.distill <= 1.0:
            raise ValueError(f"distill must be in [0, 1], got {distill}")
        if self.distill and teacher is None:
            raise ValueError("distill > 0 needs teacher targets")
        self.mid_side = bool(mid_side)
        self.phase_sensitive = bool(phase_sensitive)
        self.phase_residual = bool(phase_residual)
        if self.phase_residual and not self.phase_sensitive:
            raise ValueError("phase_residual needs phase_sensitive targets")
        self.lengths = lengths
        self.frames = frames
        self.p_remix = p_remix
        self.gain_db = gain_db
        # Per-stem gain ranges {stem index: (lo, hi) dB} replacing gain_db for those
        # stems; one draw per stem either way, so other runs' random stream is unchanged.
        self.stem_gain_db = {}
        for s, rng_db in (stem_gain_db or {}).items():
            lo, hi = (float(v) for v in rng_db)
            if not (0 <= s < spectra.shape[1]) or lo > hi:
                raise ValueError(f"stem_gain_db: bad entry {s}: {rng_db!r}")
            self.stem_gain_db[s] = (lo, hi)
        self.p_drop = p_drop
        self.stereo_pair = bool(stereo_pair)
        self.eq_db = float(eq_db)
        # Optional sampling weights per track (e.g. to set the share of synthetic
        # tracks); None keeps uniform draws and the random stream of older runs.
        self.track_p = None
        if track_weights is not None:
            w = np.asarray(track_weights, np.float64)
            if w.shape != (spectra.shape[0],) or (w < 0).any() or w.sum() <= 0:
                raise ValueError("track_weights must be one non-negative weight per track")
            self.track_p = w / w.sum()
        # Optional fixed gain per (track, stem), e.g. 0 to leave the synthetic
        # excerpts' proxy vocals out.
        self.stem_gain = None
        if stem_gain is not None:
            self.stem_gain = np.asarray(stem_gain, np.float32)
            if self.stem_gain.shape != spectra.shape[:2]:
                raise ValueError(f"stem_gain must have shape {spectra.shape[:2]}")
        self.rng = np.random.default_rng(seed)
        # Log-frequency position of each bin in [0, 1] for the random EQ curves.
        bins = spectra.shape[-1]
        self._eq_x = np.log2(np.arange(bins) + 1.0) / np.log2(bins)

    def _track(self, n_tracks):
        if self.track_p is None:
            return self.rng.integers(n_tracks)
        return self.rng.choice(n_tracks, p=self.track_p)

    def _eq(self):
        """A random smooth EQ curve (bins,) float32: 6 log-spaced points, +-eq_db dB.

        Real stems arrive with every kind of tone shaping; tilting each stem's
        spectrum independently keeps the network from learning the 80 training
        songs' particular balances.  Drawn only when ``eq_db > 0`` so the random
        stream of older runs is unchanged.
        """
        pts = self.rng.uniform(-self.eq_db, self.eq_db, 6)
        db = np.interp(self._eq_x, np.linspace(0.0, 1.0, 6), pts)
        return (10.0 ** (db / 20.0)).astype(np.float32)

    def _mid_side(self, tr, s, which, off, F):
        """Stem ``s``'s mid (``which`` 0) or side (1) spectrum over ``F`` frames from ``off``."""
        lr = self.spectra[tr, s, :, off: off + F]
        sign = np.float32(1.0 if which == 0 else -1.0)
        return np.float32(0.5) * (lr[0] + sign * lr[1])

    def batch(self, size: int):
        n_tracks, n_stems = self.spectra.shape[:2]
        rng = self.rng
        F = self.frames
        bins = self.spectra.shape[-1]
        stems = np.empty((size, n_stems, F, bins), np.complex64)
        other = np.empty((size, n_stems, F, bins), np.complex64) if self.stereo_pair else None
        taught = np.zeros(size, bool)
        tmag = np.zeros((size, n_stems, F, bins), np.float32) if self.teacher is not None else None
        for b in range(size):
            remix = rng.random() < self.p_remix
            common = None
            tr = self._track(n_tracks)
            ch = rng.integers(2)
            item_ch = ch
            off = rng.integers(0, max(1, self.lengths[tr] - F + 1))
            for s in range(n_stems):
                if remix:
                    tr = self._track(n_tracks)
                    ch = rng.integers(2)
                    off = rng.integers(0, max(1, self.lengths[tr] - F + 1))
                if self.mid_side:
                    seg = self._mid_side(tr, s, item_ch, off, F)
                else:
                    seg = self.spectra[tr, s, ch, off: off + F]
                if seg.shape[0] < F:
                    seg = np.pad(seg, ((0, F - seg.shape[0]), (0, 0)))
                if tmag is not None and not remix:
                    # The teacher's crop: one gain for the whole mixture, nothing dropped.
                    if common is None:
                        common = np.float32(10.0 ** (rng.uniform(*self.gain_db) / 20.0))
                    g = common
                    t = np.asarray(self.teacher[tr, s, ch, off: off + F], np.float32)
                    tmag[b, s, : t.shape[0]] = t * g
                    taught[b] = True
                    stems[b, s] = seg * g
                    continue
                g = np.float32(10.0 ** (rng.uniform(*self.stem_gain_db.get(s, self.gain_db)) / 20.0))
                if rng.random() < self.p_drop:
                    g = np.float32(0.0)
                if self.stem_gain is not None:
                    g = g * self.stem_gain[tr, s]
                if self.eq_db > 0:
                    g = g * self._eq()
                stems[b, s] = seg * g
                if other is not None:
                    seg2 = (self._mid_side(tr, s, 1 - item_ch, off, F) if self.mid_side
                            else self.spectra[tr, s, 1 - ch, off: off + F])
                    if seg2.shape[0] < F:
                        seg2 = np.pad(seg2, ((0, F - seg2.shape[0]), (0, 0)))
                    other[b, s] = seg2 * g
        mixc = stems.sum(axis=1)  # (B, F, bins) complex
        mix = np.abs(mixc)
        if self.phase_sensitive:
            # Re(S conj(X)) / |X| = |S| cos(angle S - angle X); 0 where X is silent.
            target = (stems * np.conj(mixc)[:, None]).real / np.maximum(mix, 1e-12)[:, None]
        else:
            target = np.abs(stems)
            if taught.any() and self.distill:
                a = np.float32(self.distill)
                target[taught] = (1 - a) * target[taught] + a * tmag[taught]
        out = (np.ascontiguousarray(mix.transpose(0, 2, 1)),
               np.ascontiguousarray(target.astype(np.float32).transpose(0, 1, 3, 2)))
        if other is not None:
            mix2 = np.abs(other.sum(axis=1))
            out += (np.ascontiguousarray(mix2.transpose(0, 2, 1)),)
        if self.phase_residual:
            # |S|^2 - target^2 summed over bins, (B, stems, frames): the part of each
            # stem's energy no mask on the mixture's phase can reach, so that
            # sum((m|X| - target)^2) + residual is the complex error |m X - S|^2.
            resid = (np.abs(stems) ** 2 - target ** 2).sum(axis=3)
            out += (np.ascontiguousarray(np.maximum(resid, 0.0).astype(np.float32)),)
        return out
