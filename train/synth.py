"""Synthetic multitrack excerpts rendered from MIDI with a General MIDI soundfont.

MUSDB18-7 holds only about ten minutes of audio; this module stretches the
training data with excerpts whose four stems are *known exactly* because each
is rendered separately from MIDI:

* **drums**: a Groove MIDI performance (train split of ``info.csv``), played
  through a random GM drum kit (bank 128, MIDI channel 10).
* **bass**: the lowest line of a POP909 song's PIANO track (the lowest key held
  at each onset, below G3), moved into a bass register and played with a random
  GM bass program (32-35, 38, 39; see :data:`BASS_PROGRAMS`).
* **other**: the rest of the PIANO track plus the BRIDGE track, each with its own
  random program from pianos, organs, guitars, string ensembles and synth pads
  (:data:`OTHER_PROGRAMS`).
* **vocals**: the POP909 MELODY track (the sung line) played with a voice-like
  program, GM 52 "Choir Aahs", 53 "Voice Oohs", 54 "Synth Voice" or 85
  "Lead 6 (voice)", with a random vibrato.  This is a *proxy*: it has the pitch
  contour, phrasing, register and vowel-like timbre of a voice but no
  consonants, lyrics or breath, so it cannot replace real vocals; it only adds
  melodic variety next to them.

Drums and the pitched parts come from unrelated songs with unrelated tempi (the
trainer already mixes stems of different songs); each stem keeps its own file's
timing, tempo changes included.  The output matches
:func:`stemboard.train.data.decode_musdb`: a list of
``{"name", "stems"}`` with ``stems`` float32 (4, 2, samples) in :data:`STEMS`
order at 44100 Hz, cached as ``.npy`` under ``cache_dir``.

``tinysoundfont`` (``pip install --no-deps tinysoundfont``) is imported only
when rendering, so importing this module needs nothing beyond the runtime deps.
"""
from __future__ import annotations

import csv
import functools
import json
import time
from pathlib import Path

import numpy as np

from stemboard.train.data import SAMPLE_RATE, STEMS

SOUNDFONT_DIR = Path("/usr/share/sounds/sf2")
#: Soundfonts tried in order when ``soundfont=None``.
DEFAULT_SOUNDFONTS = ("FluidR3_GM.sf2", "TimGM6mb.sf2")

#: GM bass programs (0-based): acoustic, finger, pick, fretless, synth 1/2.  The
#: slap basses (36, 37) are left out: FluidR3's slap presets are mostly click
#: (spectral centroid 2-3.5 kHz over 200 test excerpts, brighter than the
#: "other" stem in about 2 of 3 excerpts), which would teach the model that
#: bright attacks are bass.
BASS_PROGRAMS = (32, 33, 34, 35, 38, 39)
#: GM programs for "other" (0-based): pianos/e-pianos/clavinet 0-7, organs 16-20,
#: guitars 24-30 (no 31 "harmonics", it is mostly noise), string ensembles and
#: synth strings 48-51, synth pads 88-90, 92, 93, 95.  Pads 91 "choir" and 94
#: "halo" are left out: they sound like voices and would teach the model to put
#: voices into "other".
OTHER_PROGRAMS = (*range(0, 8), *range(16, 21), *range(24, 31), *range(48, 52),
                  88, 89, 90, 92, 93, 95)
#: Voice-like GM programs (0-based) for the vocal proxy: choir aahs, voice oohs,
#: synth voice, lead 6 (voice).
VOCAL_PROGRAMS = (52, 53, 54, 85)
#: GM drum kits (bank 128 presets): standard, room, power, electronic, TR-808,
#: jazz, brush.  Kits missing from a soundfont are skipped.
DRUM_KITS = (0, 8, 16, 24, 25, 32, 40)

#: Groove MIDI uses Roland TD-11 pitches; these three are not GM drum sounds
#: (hi-hat edge hits and the floor-tom rim) and are mapped as in the Groove
#: MIDI paper's table.  The other TD-11 pitches are valid GM sounds.
GROOVE_TO_GM = {22: 42, 26: 46, 58: 43}

DRUM_CHANNEL = 9            # MIDI channel 10
FLUSH_SAMPLES = 4096        # rendered and dropped after a reset (see render_part)
MELODIC_CHANNEL = 0
#: Drum note-offs are ignored (GM one-shot behaviour); a drum voice is released
#: this long after its onset so that a looped sample cannot ring forever.
DRUM_HOLD_S = 2.0
#: Rendering starts this long before the window (and the pre-roll is dropped)
#: so notes already sounding at the window start enter it decayed, not with a
#: fresh attack.  Pitched notes begun before the pre-roll start at its start.
PREROLL_S = 1.0
BASS_SPLIT_PITCH = 55       # G3: lowest notes below this can be bass notes
BASS_RANGE = (28, 52)       # E1..E3: where the bass line is folded to
#: The MUSDB18-7 training stems' median RMS is about -23 dBFS (-22 to -24 per
#: stem, measured on the decoded cache); synthetic stems are normalised there
#: with a random +-3 dB so no stem dominates.
TARGET_RMS_DB = -23.0
GAIN_SPREAD_DB = 3.0
STEM_PEAK = 0.9             # per-stem peak ceiling
MIX_PEAK = 0.98             # ceiling for the sum of the stems
#: Random pan ranges (-1 left .. 1 right): vocals, drums and bass stay near the
#: centre as in most mixes, "other" spreads wider.
PAN_RANGE = {"vocals": 0.3, "drums": 0.2, "bass": 0.2, "other": 0.7}
MIN_COVERAGE = 0.3          # fraction of the window a pitched stem must sound
MIN_DRUM_SPREAD = 0.75      # fraction of 0.5 s bins of the window with a drum onset


# --------------------------------------------------------------------------- #
# soundfont
# --------------------------------------------------------------------------- #
def find_soundfont(soundfont=None) -> Path:
    """Resolve the soundfont path.

    ``None`` picks the first existing of :data:`DEFAULT_SOUNDFONTS` in
    :data:`SOUNDFONT_DIR`.  Raises :class:`FileNotFoundError` with an install
    hint when nothing is found.
    """
    if soundfont is not None:
        path = Path(soundfont)
        if not path.is_file():
            raise FileNotFoundError(f"soundfont not found: {path}")
        return path
    for name in DEFAULT_SOUNDFONTS:
        path = SOUNDFONT_DIR / name
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"no General MIDI soundfont found (looked for {', '.join(DEFAULT_SOUNDFONTS)} in "
        f"{SOUNDFONT_DIR}); install one with `apt-get install fluid-soundfont-gm` "
        "(or timgm6mb-soundfont), or pass soundfont=PATH")


def _import_tinysoundfont():
    try:
        import tinysoundfont
    except ImportError as e:
        raise ImportError(
            "synthetic stems need tinysoundfont: `pip install --no-deps tinysoundfont` "
            "(without --no-deps pip tries to build pyaudio, which is not needed)") from e
    return tinysoundfont


@functools.lru_cache(maxsize=2)
def _load_synth(path: str):
    """Load a soundfont once per process: (synth, sfid, drum kits, melodic programs).

    FluidR3 takes ~1 s to load, so it is cached.  The available kits/programs
    are listed so that random choices never hit a preset the soundfont lacks.
    """
    tsf = _import_tinysoundfont()
    synth = tsf.Synth(samplerate=SAMPLE_RATE)
    sfid = synth.sfload(path)
    kits = tuple(k for k in DRUM_KITS if synth.sfpreset_name(sfid, 128, k) is not None)
    programs = frozenset(p for p in range(128) if synth.sfpreset_name(sfid, 0, p) is not None)
    if not kits or not programs:
        raise ValueError(f"{path} is not a General MIDI soundfont (no drum kit or programs)")
    return synth, sfid, kits, programs


# --------------------------------------------------------------------------- #
# MIDI reading
# --------------------------------------------------------------------------- #
def _tick_seconds(ticks, tempo_changes, ticks_per_beat: int) -> np.ndarray:
    """Absolute ticks to seconds through a piecewise-constant tempo map.

    Parameters
    ----------
    ticks : array (n,) of absolute ticks.
    tempo_changes : list of (tick, microseconds per beat), sorted by tick.
    """
    ticks = np.asarray(ticks, np.float64)
    starts = np.array([0.0] + [t for t, _ in tempo_changes], np.float64)
    # Before the first set_tempo MIDI's default applies: 500000 us/beat (120 bpm).
    tempos = np.array([500000.0] + [u for _, u in tempo_changes], np.float64)
    sec_per_tick = tempos / (1e6 * ticks_per_beat)
    seg_sec = np.concatenate([[0.0], np.cumsum(np.diff(starts) * sec_per_tick[:-1])])
    i = np.searchsorted(starts, ticks, side="right") - 1
    return seg_sec[i] + (ticks - starts[i]) * sec_per_tick[i]


def _track_notes(track):
    """Pair note-ons with note-offs of one track (absolute ticks).

    Returns ``(notes, pedal)``: notes (n, 4) float64 rows ``(on_tick, off_tick,
    pitch, velocity)`` with ``off`` the key release; pedal (m, 2) ``(down, up)``
    tick intervals of the sustain pedal (CC64 >= 64).
    """
    tick, open_notes, notes = 0, {}, []
    pedal, down = [], None
    for msg in track:
        tick += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            open_notes.setdefault((msg.channel, msg.note), []).append((tick, msg.velocity))
        elif msg.type in ("note_off", "note_on"):
            stack = open_notes.get((msg.channel, msg.note))
            if stack:  # FIFO: overlapping same-pitch notes end in order
                on, vel = stack.pop(0)
                notes.append((on, tick, msg.note, vel))
        elif msg.type == "control_change" and msg.control == 64:
            if msg.value >= 64 and down is None:
                down = tick
            elif msg.value < 64 and down is not None:
                pedal.append((down, tick))
                down = None
    for (_, pitch), stack in open_notes.items():  # unterminated notes end with the track
        notes.extend((on, tick, pitch, vel) for on, vel in stack)
    if down is not None:
        pedal.append((down, tick))
    notes = np.array(sorted(notes), np.float64).reshape(-1, 4)
    return notes, np.array(pedal, np.float64).reshape(-1, 2)


@functools.lru_cache(maxsize=512)  # mido parsing is most of the cost; files repeat
def read_midi(path) -> dict:
    """Notes of every track of a MIDI file, in seconds.

    Tempo changes (``set_tempo`` in any track, as type-1 files keep them in the
    first track) are honoured.

    Returns
    -------
    dict mapping track name (``"track{i}"`` when unnamed; repeated names are
    merged) to ``(notes, pedal)``: notes (n, 4) float64 rows ``(start_s, end_s,
    pitch, velocity)`` sorted by start, ``end_s`` being the key release; pedal
    (m, 2) sustain-pedal ``(down_s, up_s)`` intervals.  Arrays are read-only
    (the result is cached).
    """
    import mido

    mid = mido.MidiFile(str(path))
    if mid.type == 2:
        raise ValueError(f"{path}: type-2 MIDI (independent sequences) is not supported")
    tempo_changes = []
    for track in mid.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempo_changes.append((tick, msg.tempo))
    tempo_changes.sort()
    out = {}
    for i, track in enumerate(mid.tracks):
        notes, pedal = _track_notes(track)
        if not len(notes):
            continue
        notes[:, :2] = _tick_seconds(notes[:, :2], tempo_changes, mid.ticks_per_beat)
        pedal = _tick_seconds(pedal, tempo_changes, mid.ticks_per_beat).reshape(-1, 2)
        name = track.name.strip() or f"track{i}"
        if name in out:
            notes = np.concatenate([out[name][0], notes])
            pedal = np.concatenate([out[name][1], pedal])
        notes = notes[np.argsort(notes[:, 0], kind="stable")]
        notes.setflags(write=False)
        pedal.setflags(write=False)
        out[name] = (notes, pedal)
    return out


def apply_sustain(notes, pedal) -> np.ndarray:
    """Extend note ends held by the sustain pedal.

    A note whose key is released while the pedal is down ends when the pedal
    comes up, but never after the next onset of the same pitch (a re-struck key
    restarts the note).  ``notes`` (n, 4) as from :func:`read_midi`; returns a
    new (n, 4) array.
    """
    notes = np.array(notes, np.float64)
    if len(pedal) and len(notes):
        pedal = pedal[np.argsort(pedal[:, 0])]
        j = np.searchsorted(pedal[:, 0], notes[:, 1], side="right") - 1
        held = (j >= 0) & (notes[:, 1] < pedal[np.maximum(j, 0), 1])
        notes[held, 1] = pedal[j[held], 1]
    order = np.lexsort((notes[:, 0], notes[:, 2]))  # by pitch, then start
    nxt = np.full(len(notes), np.inf)
    same = notes[order[1:], 2] == notes[order[:-1], 2]
    nxt[order[:-1][same]] = notes[order[1:][same], 0]
    notes[:, 1] = np.maximum(np.minimum(notes[:, 1], nxt), notes[:, 0] + 0.01)
    return notes


# --------------------------------------------------------------------------- #
# parts
# --------------------------------------------------------------------------- #
def split_bass(piano, *, split_pitch: int = BASS_SPLIT_PITCH, onset_tol: float = 0.04):
    """Split piano notes into a bass line and the rest.

    Onsets within ``onset_tol`` seconds form one chord.  The chord's lowest note
    is a bass note when it is below ``split_pitch`` and no lower key is still
    held from before (so right-hand notes played over a held left-hand root,
    and the upper notes of the chord, stay in "other").

    Parameters
    ----------
    piano : (n, 4) notes ``(start_s, end_s, pitch, velocity)`` sorted by start,
        with key-release ends (before :func:`apply_sustain`, so "held" means the
        key, not the pedal).

    Returns
    -------
    is_bass : (n,) bool mask.
    """
    n = len(piano)
    is_bass = np.zeros(n, bool)
    if not n:
        return is_bass
    start, end, pitch = piano[:, 0], piano[:, 1], piano[:, 2]
    chord = np.concatenate([[0], np.cumsum(np.diff(start) > onset_tol)])
    bounds = np.flatnonzero(np.diff(np.concatenate([[-1], chord, [chord[-1] + 1]])))
    for a, b in zip(bounds[:-1], bounds[1:]):
        low = a + int(np.argmin(pitch[a:b]))
        if pitch[low] >= split_pitch:
            continue
        t = start[a]
        earlier = slice(0, a)  # notes are sorted by start: earlier chords are a prefix
        held_lower = (end[earlier] > t + onset_tol) & (pitch[earlier] < pitch[low])
        if not held_lower.any():
            is_bass[low] = True
    return is_bass


def bass_line(bass, lo: int = BASS_RANGE[0], hi: int = BASS_RANGE[1]) -> np.ndarray:
    """Turn piano bass notes into a monophonic line in a bass register.

    The whole line moves by octaves so its median pitch lands in the middle of
    ``[lo, hi]`` (keeping its contour); notes still outside are folded by
    octaves.  Each note is cut at the next bass onset (one string, one note).
    ``bass`` (n, 4) sorted by start with pedal-extended ends; returns (n, 4).
    """
    bass = np.array(bass, np.float64)
    if not len(bass):
        return bass
    centre = (lo + hi) / 2
    bass[:, 2] += 12 * np.round((centre - np.median(bass[:, 2])) / 12)
    while (low := bass[:, 2] < lo).any():
        bass[low, 2] += 12
    while (high := bass[:, 2] > hi).any():
        bass[high, 2] -= 12
    nxt = np.append(bass[1:, 0], np.inf)
    bass[:, 1] = np.maximum(np.minimum(bass[:, 1], nxt - 0.005), bass[:, 0] + 0.01)
    return bass


def _coverage(notes, t0: float, seconds: float, step: float = 0.1) -> float:
    """Fraction of ``step``-second bins of ``[t0, t0+seconds)`` where a note sounds."""
    nbins = max(1, int(np.ceil(seconds / step)))
    a = np.clip(np.floor((notes[:, 0] - t0) / step), 0, nbins).astype(int)
    b = np.clip(np.ceil((notes[:, 1] - t0) / step), 0, nbins).astype(int)
    diff = np.zeros(nbins + 1)
    np.add.at(diff, a, 1)
    np.add.at(diff, b, -1)
    return float(np.mean(np.cumsum(diff)[:nbins] > 0))


def _onset_spread(starts, t0: float, seconds: float, step: float = 0.5) -> float:
    """Fraction of ``step``-second bins of the window that hold an onset."""
    nbins = max(1, int(np.ceil(seconds / step)))
    inside = starts[(starts >= t0) & (starts < t0 + seconds)]
    return len(np.unique(((inside - t0) // step).astype(int))) / nbins


def _window(notes, t0: float, t1: float) -> np.ndarray:
    """Notes overlapping ``[t0, t1)``, times shifted so ``t0`` is 0 (starts clipped at 0)."""
    keep = (notes[:, 1] > t0) & (notes[:, 0] < t1)
    out = np.array(notes[keep], np.float64)
    out[:, :2] = np.maximum(out[:, :2] - t0, 0.0)
    return out


def _vary_velocity(notes, rng, scale=(0.7, 1.15), jitter: float = 6.0) -> np.ndarray:
    """Random per-stem velocity scale plus per-note jitter (changes timbre, not only level)."""
    notes = np.array(notes, np.float64)
    vel = notes[:, 3] * rng.uniform(*scale) + rng.normal(0.0, jitter, len(notes))
    notes[:, 3] = np.clip(np.round(vel), 1, 127)
    return notes


# --------------------------------------------------------------------------- #
# sources
# --------------------------------------------------------------------------- #
@functools.lru_cache(maxsize=4)
def _groove_pool(root: str, seconds: float) -> tuple:
    """Train-split Groove MIDI files ``(id, path, duration_s)``.

    Files at least ``seconds`` long are preferred (short fills would have to be
    looped); if none is, all train files are returned and looped.
    """
    root = Path(root)
    with open(root / "info.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    pool = [(r["id"], str(root / r["midi_filename"]), float(r["duration"])) for r in rows]
    if not pool:
        raise FileNotFoundError(f"no train-split files in {root / 'info.csv'}")
    long_enough = [p for p in pool if p[2] >= seconds]
    return tuple(long_enough or pool)


def _pop_pool(root: str) -> tuple:
    songs = tuple(sorted(str(p) for p in Path(root).glob("*.mid")))
    if not songs:
        raise FileNotFoundError(f"no POP909 .mid files in {root}")
    return songs


def _drum_part(rng, pool, seconds: float, tries: int = 20):
    """A random Groove MIDI window with onsets spread over it.

    Returns ``(notes, source)``: notes (n, 4) relative to the window start minus
    :data:`PREROLL_S` (GM pitches, ends at onset + :data:`DRUM_HOLD_S`).
    """
    for _ in range(tries):
        gid, path, duration = pool[rng.integers(len(pool))]
        tracks = read_midi(path)
        if not tracks:
            continue
        notes = np.concatenate([n for n, _ in tracks.values()])
        notes[:, 2] = [GROOVE_TO_GM.get(int(p), int(p)) for p in notes[:, 2]]
        notes = notes[np.argsort(notes[:, 0], kind="stable")]
        period = max(duration, notes[-1, 0] + 0.05)
        if period < seconds + PREROLL_S:  # loop short patterns to fill the window
            reps = int(np.ceil((seconds + PREROLL_S) / period))
            notes = np.concatenate([notes + [k * period, k * period, 0, 0] for k in range(reps)])
            period *= reps
        t0 = rng.uniform(0.0, max(0.0, period - seconds))
        if _onset_spread(notes[:, 0], t0, seconds) < MIN_DRUM_SPREAD:
            continue
        notes[:, 1] = notes[:, 0] + DRUM_HOLD_S
        # Hits older than the pre-roll have died away; re-striking them would add false onsets.
        notes = notes[notes[:, 0] >= t0 - PREROLL_S]
        return _window(notes, t0 - PREROLL_S, t0 + seconds), f"{gid}@{t0:.2f}"
    raise RuntimeError(f"no Groove MIDI window with enough onsets after {tries} tries")


def _pitched_parts(rng, songs, seconds: float, tries: int = 20):
    """Vocals, bass and two "other" parts from a random POP909 song window.

    Returns ``(parts, source)`` where parts maps ``"vocals"``, ``"bass"``,
    ``"piano"``, ``"bridge"`` to (n, 4) notes relative to the window start minus
    :data:`PREROLL_S`.
    """
    for _ in range(tries):
        path = songs[rng.integers(len(songs))]
        tracks = read_midi(path)
        if not {"MELODY", "PIANO"} <= tracks.keys():
            continue
        piano, pedal = tracks["PIANO"]
        is_bass = split_bass(piano)
        piano = apply_sustain(piano, pedal)
        full = {
            "vocals": apply_sustain(*tracks["MELODY"]),
            "bass": bass_line(piano[is_bass]),
            "piano": piano[~is_bass],
            "bridge": apply_sustain(*tracks["BRIDGE"]) if "BRIDGE" in tracks else piano[:0],
        }
        song_end = max(float(n[:, 1].max()) for n in full.values() if len(n))
        other = np.concatenate([full["piano"], full["bridge"]])
        for _ in range(10):
            t0 = rng.uniform(0.0, max(0.0, song_end - seconds))
            if all(_coverage(n, t0, seconds) >= MIN_COVERAGE
                   for n in (full["vocals"], full["bass"], other)):
                parts = {k: _window(n, t0 - PREROLL_S, t0 + seconds) for k, n in full.items()}
                return parts, f"pop909/{Path(path).stem}@{t0:.2f}"
    raise RuntimeError(f"no POP909 window with melody, bass and accompaniment after {tries} tries")


# --------------------------------------------------------------------------- #
# rendering
# --------------------------------------------------------------------------- #
def _note_events(notes, sr: int = SAMPLE_RATE) -> list:
    """(sample, order, kind, key, value) events; note-offs sort before note-ons at a tie."""
    ev = []
    for start, end, pitch, vel in notes:
        ev.append((int(round(start * sr)), 1, "on", int(pitch), int(vel)))
        ev.append((int(round(end * sr)), 0, "off", int(pitch), 0))
    return ev


def _vibrato_events(rng, n: int, sr: int = SAMPLE_RATE, block: int = 256) -> list:
    """Pitch-wheel events for a sung-like vibrato (4.5-6.5 Hz, 15-45 cents).

    Updated every ``block`` samples (~170 Hz, far above the vibrato rate).  The
    wheel spans +-2 semitones (GM default), so 8192 steps = 200 cents.
    """
    rate, depth, phase = rng.uniform(4.5, 6.5), rng.uniform(15.0, 45.0), rng.uniform(0, 2 * np.pi)
    t = np.arange(0, n, block)
    cents = depth * np.sin(2 * np.pi * rate * t / sr + phase)
    wheel = np.clip(np.round(8192 + cents / 200.0 * 8192), 0, 16383).astype(int)
    return [(int(s), 2, "bend", 0, int(w)) for s, w in zip(t, wheel)]


def render_part(synth, sfid: int, notes, n: int, *, program: int, drums: bool = False,
                events=()) -> np.ndarray:
    """Render notes with one GM program (or drum kit) to stereo float32.

    Parameters
    ----------
    synth, sfid : a loaded ``tinysoundfont.Synth`` and its soundfont id.
    notes : (k, 4) ``(start_s, end_s, pitch, velocity)``, times from sample 0.
    n : number of output samples.
    program : GM program (0-based), or drum kit preset when ``drums``.
    events : extra ``(sample, order, kind, key, value)`` events (pitch bends).

    Returns
    -------
    (2, n) float32.
    """
    chan = DRUM_CHANNEL if drums else MELODIC_CHANNEL
    # Reset channels (program, pitch wheel) and stop the previous part's voices.
    # TinySoundFont's reset only puts voices into a very fast release, so render
    # that away: voices still fading would take voice slots, which changes the
    # order voices are summed in and makes the output depend on history.
    synth.soundfonts[sfid].reset()
    synth.generate_simple(FLUSH_SAMPLES)
    synth.program_select(chan, sfid, 128 if drums else 0, program, is_drums=drums)
    out = np.zeros((n, 2), np.float32)
    buf = memoryview(out.reshape(-1)).cast("B")
    frame = 2 * out.itemsize
    pos = 0
    for sample, _, kind, key, value in sorted([*_note_events(notes), *events]):
        sample = min(max(sample, 0), n)
        if sample > pos:
            synth.generate_simple(sample - pos, buffer=buf[pos * frame: sample * frame])
            pos = sample
        if sample >= n:
            break
        if kind == "on":
            synth.noteon(chan, key, value)
        elif kind == "off":
            synth.noteoff(chan, key)
        else:
            synth.pitchbend(chan, value)
    if pos < n:
        synth.generate_simple(n - pos, buffer=buf[pos * frame:])
    return np.ascontiguousarray(out.T)


def _pan(x, p: float) -> np.ndarray:
    """Constant-power balance of a (2, n) signal; ``p`` in [-1, 1] (0 = unchanged)."""
    angle = (p + 1.0) * np.pi / 4.0
    return x * (np.sqrt(2.0) * np.array([[np.cos(angle)], [np.sin(angle)]], np.float32))


def _normalise(x, target_db: float, peak: float = STEM_PEAK) -> np.ndarray:
    """Scale (2, n) audio to ``target_db`` dBFS RMS, then down if its peak exceeds ``peak``."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    if rms < 1e-7:
        return x
    x = x * np.float32(10.0 ** (target_db / 20.0) / rms)
    top = float(np.abs(x).max())
    return x * np.float32(peak / top) if top > peak else x


def synth_excerpt(rng, data_root, synth_state, seconds: float):
    """Render one synthetic excerpt.

    Parameters
    ----------
    rng : numpy Generator (all random choices come from it).
    data_root : folder with ``groove-midi/`` and ``pop909/``.
    synth_state : ``(synth, sfid, kits, programs)`` from :func:`_load_synth`.

    Returns
    -------
    stems : (4, 2, round(seconds * 44100)) float32 in :data:`STEMS` order.
    meta : dict of sources and programs.
    """
    synth, sfid, kits, programs = synth_state
    root = Path(data_root)
    n = int(round(seconds * SAMPLE_RATE))
    pre = int(round(PREROLL_S * SAMPLE_RATE))
    drums, drum_src = _drum_part(rng, _groove_pool(str(root / "groove-midi"), seconds), seconds)
    parts, pop_src = _pitched_parts(rng, _pop_pool(str(root / "pop909")), seconds)

    # One key change for all pitched parts keeps them in harmony with each other.
    shift = int(rng.integers(-3, 4))
    for k in parts:
        parts[k][:, 2] += shift
    if np.median(parts["vocals"][:, 2]) > 64 and rng.random() < 0.3:
        parts["vocals"][:, 2] -= 12  # a lower (male) singing range now and then

    def pick(pool):
        pool = [p for p in pool if p in programs]
        return int(pool[rng.integers(len(pool))])

    prog = {"vocals": pick(VOCAL_PROGRAMS), "bass": pick(BASS_PROGRAMS),
            "piano": pick(OTHER_PROGRAMS), "bridge": pick(OTHER_PROGRAMS),
            "drums": int(kits[rng.integers(len(kits))])}
    vib = _vibrato_events(rng, pre + n)
    audio = {
        "vocals": render_part(synth, sfid, _vary_velocity(parts["vocals"], rng), pre + n,
                              program=prog["vocals"], events=vib),
        "drums": render_part(synth, sfid, _vary_velocity(drums, rng), pre + n,
                             program=prog["drums"], drums=True),
        "bass": render_part(synth, sfid, _vary_velocity(parts["bass"], rng), pre + n,
                            program=prog["bass"]),
    }
    # "other" is two instruments: balance them before the stem is normalised.
    other = np.zeros((2, pre + n), np.float32)
    for k in ("piano", "bridge"):
        if len(parts[k]):
            x = render_part(synth, sfid, _vary_velocity(parts[k], rng), pre + n, program=prog[k])
            x = _pan(x, rng.uniform(-PAN_RANGE["other"], PAN_RANGE["other"]))
            other += _normalise(x, rng.uniform(-6.0, 0.0), peak=1.0)
    audio["other"] = other

    stems = np.empty((len(STEMS), 2, n), np.float32)
    for i, name in enumerate(STEMS):
        x = audio[name][:, pre:]
        if name != "other":
            x = _pan(x, rng.uniform(-PAN_RANGE[name], PAN_RANGE[name]))
        level = TARGET_RMS_DB + rng.uniform(-GAIN_SPREAD_DB, GAIN_SPREAD_DB)
        stems[i] = _normalise(x, level)
    top = float(np.abs(stems.sum(axis=0)).max())
    if top > MIX_PEAK:
        stems *= np.float32(MIX_PEAK / top)
    meta = {"pop909": pop_src, "groove": drum_src, "transpose": shift, "programs": prog}
    return stems, meta


def _silent(stems, floor_db: float = -60.0) -> bool:
    rms = np.sqrt(np.mean(np.square(stems, dtype=np.float64), axis=(1, 2)))
    return bool((rms < 10.0 ** (floor_db / 20.0)).any() or not np.isfinite(stems).all())


def render_synthetic(data_root, cache_dir, *, count: int = 200, seconds: float = 7.0,
                     soundfont=None, seed: int = 0, log=print) -> list[dict]:
    """Render ``count`` synthetic excerpts (or load them from the cache).

    Parameters
    ----------
    data_root : folder holding ``groove-midi/`` (with ``info.csv``) and ``pop909/``.
    cache_dir : the excerpts go to ``cache_dir/synth_n{count}_s{seconds}_seed{seed}_{sf}``
        as ``NNNN.npy`` plus ``index.json`` (names, written last) and ``meta.json``
        (sources and programs per excerpt); a later call with the same
        arguments loads them.
    count : number of excerpts.
    seconds : excerpt length.
    soundfont : SF2 path; ``None`` picks :data:`DEFAULT_SOUNDFONTS`.
    seed : excerpt ``i`` is drawn from ``default_rng([seed, i])``, so it does
        not depend on ``count``.
    log : progress callback.

    Returns
    -------
    list of ``{"name": str, "stems": float32 (4, 2, round(seconds * 44100))}``
    in :data:`STEMS` order, like :func:`~stemboard.train.data.decode_musdb`.
    """
    if count < 1 or seconds <= 0:
        raise ValueError(f"count must be >= 1 and seconds > 0, got {count}, {seconds}")
    sf = find_soundfont(soundfont)
    key = f"n{count}_s{seconds:g}_seed{seed}_{sf.stem}"
    cache = Path(cache_dir) / f"synth_{key}"
    index = cache / "index.json"
    if index.is_file():
        names = json.loads(index.read_text())
        return [{"name": nm, "stems": np.load(cache / f"{i:04d}.npy")}
                for i, nm in enumerate(names)]

    root = Path(data_root)
    for sub in ("groove-midi", "pop909"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f"MIDI data folder not found: {root / sub}")
    state = _load_synth(str(sf))
    cache.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    out, names, metas = [], [], []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        for _ in range(5):  # a silent stem (e.g. a program with no sound) is redrawn
            stems, meta = synth_excerpt(rng, root, state, seconds)
            if not _silent(stems):
                break
        else:
            raise RuntimeError(f"excerpt {i}: could not render non-silent stems")
        name = f"synth{i:04d}_{meta['pop909'].split('@')[0].replace('/', '-')}"
        np.save(cache / f"{i:04d}.npy", stems)
        out.append({"name": name, "stems": stems})
        names.append(name)
        metas.append({"name": name, **meta})
        if (i + 1) % 50 == 0 and i + 1 < count:
            log(f"synth: {i + 1}/{count} excerpts, {time.perf_counter() - t_start:.1f} s")
    (cache / "meta.json").write_text(json.dumps(metas, indent=1))
    index.write_text(json.dumps(names))
    log(f"rendered {count} synthetic {seconds:g} s excerpts ({sf.name}) into {cache} "
        f"in {time.perf_counter() - t_start:.1f} s")
    return out
