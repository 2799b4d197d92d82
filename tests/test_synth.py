"""Synthetic MIDI-rendered training excerpts (stemboard.train.synth)."""
import sys
from pathlib import Path

import numpy as np
import pytest

from stemboard.train import synth
from stemboard.train.data import SAMPLE_RATE, STEMS

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HAVE_MIDI = (DATA / "groove-midi" / "info.csv").is_file() and any((DATA / "pop909").glob("*.mid"))
# TimGM6mb loads in ~40 ms against ~1 s for FluidR3, so the tests prefer it.
SOUNDFONT = next((p for p in (synth.SOUNDFONT_DIR / "TimGM6mb.sf2",
                              synth.SOUNDFONT_DIR / "FluidR3_GM.sf2") if p.is_file()), None)
SECONDS = 2.0


# --------------------------------------------------------------------------- #
# MIDI handling (mido only)
# --------------------------------------------------------------------------- #
def test_read_midi_follows_tempo_changes(tmp_path):
    mido = pytest.importorskip("mido")
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    # Tempo lives in the first track, as in POP909: 120 bpm, then 60 bpm from beat 2.
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0),
                                      mido.MetaMessage("set_tempo", tempo=1000000, time=480)]))
    mid.tracks.append(mido.MidiTrack([
        mido.MetaMessage("track_name", name="PIANO", time=0),
        mido.Message("note_on", note=60, velocity=90, time=0),
        mido.Message("note_off", note=60, velocity=0, time=480),       # 0.0 .. 0.5 s
        mido.Message("note_on", note=64, velocity=80, time=480),       # 1.5 s
        mido.Message("control_change", control=64, value=127, time=0),
        mido.Message("note_on", note=64, velocity=0, time=240),        # key up at 2.0 s
        mido.Message("control_change", control=64, value=0, time=240),  # pedal up at 2.5 s
    ]))
    path = tmp_path / "tempo.mid"
    mid.save(path)
    notes, pedal = synth.read_midi(str(path))["PIANO"]
    np.testing.assert_allclose(notes, [[0.0, 0.5, 60, 90], [1.5, 2.0, 64, 80]])
    np.testing.assert_allclose(pedal, [[1.5, 2.5]])
    np.testing.assert_allclose(synth.apply_sustain(notes, pedal)[:, 1], [0.5, 2.5])


def test_sustain_stops_at_restrike():
    notes = np.array([[0.0, 0.2, 60, 80], [1.0, 1.2, 60, 80], [0.0, 0.2, 67, 80]])
    out = synth.apply_sustain(notes, np.array([[0.1, 3.0]]))
    np.testing.assert_allclose(out[:, 1], [1.0, 3.0, 3.0])


def test_split_bass_takes_lowest_new_key():
    piano = np.array([
        [0.0, 1.0, 36, 80], [0.0, 1.0, 48, 80], [0.0, 1.0, 60, 80],  # chord: 36 is bass
        [0.5, 0.7, 50, 80],                                          # over a held 36: not bass
        [1.0, 2.0, 40, 80], [1.0, 2.0, 64, 80],                      # new chord: 40 is bass
        [2.5, 2.6, 70, 80],                                          # above the split: not bass
    ])
    assert synth.split_bass(piano).tolist() == [True, False, False, False, True, False, False]


def test_bass_line_register_and_monophony():
    bass = np.array([[0.0, 2.0, 47, 80], [1.0, 3.0, 52, 80], [2.0, 2.5, 30, 80]])
    line = synth.bass_line(bass)
    lo, hi = synth.BASS_RANGE
    assert ((line[:, 2] >= lo) & (line[:, 2] <= hi)).all()
    assert line[0, 2] - line[1, 2] == 47 - 52           # contour kept by the octave move
    assert (line[:-1, 1] <= line[1:, 0]).all()           # each note ends before the next


def test_missing_soundfont_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="soundfont not found"):
        synth.render_synthetic(DATA, tmp_path, count=1, soundfont=tmp_path / "nope.sf2")
    monkeypatch.setattr(synth, "SOUNDFONT_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="apt-get install fluid-soundfont-gm"):
        synth.find_soundfont()


def test_missing_tinysoundfont_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "tinysoundfont", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install --no-deps tinysoundfont"):
        synth._import_tinysoundfont()


# --------------------------------------------------------------------------- #
# rendering (tinysoundfont + a GM soundfont + the MIDI data)
# --------------------------------------------------------------------------- #
needs_render = pytest.mark.skipif(SOUNDFONT is None or not HAVE_MIDI,
                                  reason="needs a GM soundfont in /usr/share/sounds/sf2 and "
                                         "../shared/data/{groove-midi,pop909}")


def _render(cache, **kw):
    pytest.importorskip("tinysoundfont", reason="pip install --no-deps tinysoundfont (its "
                        "pyaudio dependency does not build everywhere)")
    args = {"count": 3, "seconds": SECONDS, "soundfont": SOUNDFONT, "seed": 0,
            "log": lambda *a: None}
    return synth.render_synthetic(DATA, cache, **{**args, **kw})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    cache = tmp_path_factory.mktemp("synth_cache")
    return cache, _render(cache)


@needs_render
def test_format_matches_decode_musdb(rendered):
    _, tracks = rendered
    n = int(round(SECONDS * SAMPLE_RATE))
    assert len(tracks) == 3 and len({t["name"] for t in tracks}) == 3
    for t in tracks:
        assert set(t) == {"name", "stems"} and isinstance(t["name"], str)
        s = t["stems"]
        assert s.shape == (len(STEMS), 2, n) and s.dtype == np.float32
        assert np.isfinite(s).all()
        rms_db = 10 * np.log10(np.mean(np.square(s, dtype=np.float64), axis=(1, 2)))
        assert (rms_db > -40).all(), f"{t['name']}: a silent stem, RMS {rms_db}"
        assert np.abs(s).max() <= synth.STEM_PEAK + 1e-6
        assert np.abs(s.sum(axis=0)).max() <= synth.MIX_PEAK + 1e-6


@needs_render
def test_cache_round_trip(rendered):
    cache, tracks = rendered
    logs = []
    again = _render(cache, log=logs.append)
    assert logs == []  # loaded, not rendered
    assert [t["name"] for t in again] == [t["name"] for t in tracks]
    for a, b in zip(tracks, again):
        np.testing.assert_array_equal(a["stems"], b["stems"])
    assert (cache / f"synth_n3_s{SECONDS:g}_seed0_{SOUNDFONT.stem}" / "index.json").is_file()


@needs_render
def test_seed_determinism(rendered, tmp_path):
    _, tracks = rendered
    same = _render(tmp_path / "same", count=2)  # excerpt i does not depend on count
    for a, b in zip(tracks, same):
        np.testing.assert_array_equal(a["stems"], b["stems"])
    other = _render(tmp_path / "other", seed=1, count=2)
    for a, b in zip(tracks, other):
        assert not np.allclose(a["stems"], b["stems"])


@needs_render
def test_drums_have_onsets_over_time(rendered):
    for t in rendered[1]:
        d = t["stems"][STEMS.index("drums")].mean(axis=0).astype(np.float64)
        hop = SAMPLE_RATE // 100
        frames = d[: d.size // hop * hop].reshape(-1, hop)
        env = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        onsets = np.count_nonzero(np.diff(env) > 6.0)   # 10 ms energy jumps of 6 dB
        quarters = np.array([10 * np.log10(np.mean(q**2) + 1e-12) for q in np.array_split(d, 4)])
        assert onsets >= 4, t["name"]
        assert np.count_nonzero(quarters > quarters.max() - 20) >= 3, (t["name"], quarters)


@needs_render
def test_bass_is_darker_than_other(rendered):
    for t in rendered[1]:
        mono = t["stems"].mean(axis=1)
        mag = np.abs(np.fft.rfft(mono, axis=-1))
        freqs = np.fft.rfftfreq(mono.shape[-1], 1 / SAMPLE_RATE)
        centroid = (mag * freqs).sum(-1) / mag.sum(-1)
        assert centroid[STEMS.index("bass")] < centroid[STEMS.index("other")], (t["name"], centroid)
