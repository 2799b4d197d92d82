"""MIDI maps, sample-accurate offline automation (tempo changes included), live control."""
import math
import queue

import mido
import numpy as np
import pytest
from pedalboard import Gain

from conftest import SR, music_like
from stemboard.plugin.ab import ABSwitch
from stemboard.plugin.midi import (LiveMidi, MidiController, MidiMap, MidiMapError,
                                   automate, midi_file_events)
from stemboard.plugin.stemsplit import StemSplit

MAP = {"version": 1, "mappings": [
    {"cc": 20, "param": "gain:vocals", "min": -60, "max": 0},
    {"cc": 21, "param": "mix"},
    {"program": 3, "preset": "drumless"},
]}


def tempo_change_file(path, cc_tick=1440, value=0):
    """120 bpm for two beats (1.0 s), then 60 bpm: tick 1440 is 2.0 s (1.5 s at 120 bpm)."""
    mf = mido.MidiFile(type=1, ticks_per_beat=480)
    tempo = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0),
                            mido.MetaMessage("set_tempo", tempo=1000000, time=960)])
    ctl = mido.MidiTrack([mido.Message("control_change", control=20, value=value,
                                       time=cc_tick),
                          mido.MetaMessage("end_of_track", time=0)])
    mf.tracks += [tempo, ctl]
    mf.save(str(path))
    return path


def blocks(x, n):
    return (x[:, i:i + n] for i in range(0, x.shape[1], n))


def test_tick_to_sample_with_tempo_change(tmp_path):
    path = tempo_change_file(tmp_path / "auto.mid")
    (pos, msg), = midi_file_events(path, SR)
    assert msg.type == "control_change" and pos == 2 * SR
    # Same answer as mido's own playback clock.
    t = 0.0
    for m in mido.MidiFile(str(path)):
        t += m.time
        if m.type == "control_change":
            assert round(t * SR) == pos


def test_cc_mute_at_2s_equals_spliced_renders(tmp_path, model_path):
    x = music_like(channels=1, seconds=2.4)
    t0 = 2 * SR
    a = StemSplit({"drums": [Gain(-4.0)]}, model=model_path)
    ref_a = a(x, SR)
    a.mute("vocals")
    ref_b = a(x, SR)
    split = StemSplit({"drums": [Gain(-4.0)]}, model=model_path, ramp_ms=5.0)
    events = midi_file_events(tempo_change_file(tmp_path / "auto.mid"), SR)
    out = np.concatenate([y for y, _ in automate(split, blocks(x, 3000), SR, events,
                                                  MidiController(split, MAP))], axis=1)
    assert out.shape == x.shape
    ramp = int(round(0.005 * SR))
    # Exact outside the documented ramp [t0, t0 + ramp).
    assert np.abs(out[:, :t0] - ref_a[:, :t0]).max() < 1e-6
    assert np.abs(out[:, t0 + ramp:] - ref_b[:, t0 + ramp:]).max() < 1e-6
    assert np.abs(ref_a[:, t0 + ramp:] - ref_b[:, t0 + ramp:]).max() > 1e-2  # vocals audible
    # Inside it: a linear blend from A to B.
    w = np.arange(1, ramp + 1) / (ramp + 1)
    blend = ref_a[:, t0:t0 + ramp] + w * (ref_b[:, t0:t0 + ramp] - ref_a[:, t0:t0 + ramp])
    assert np.abs(out[:, t0:t0 + ramp] - blend).max() < 1e-6


def test_automation_is_independent_of_block_size(tmp_path, model_path):
    x = music_like(channels=2, seconds=0.6)
    mf = mido.MidiFile(ticks_per_beat=96)
    mf.tracks.append(mido.MidiTrack([
        mido.Message("control_change", control=21, value=64, time=37),
        mido.MetaMessage("set_tempo", tempo=300000, time=0),
        mido.Message("control_change", control=20, value=100, time=50),
        mido.Message("program_change", program=3, time=11)]))
    events = midi_file_events(mf, SR)
    assert [p for p, _ in events] == [
        round(37 / 96 * 0.5 * SR), round((37 / 96 * 0.5 + 50 / 96 * 0.3) * SR),
        round((37 / 96 * 0.5 + 61 / 96 * 0.3) * SR)]
    outs = []
    for n in (512, 7000):
        split = StemSplit(model=model_path)
        outs.append(np.concatenate([y for y, _ in automate(
            split, blocks(x, n), SR, events, MidiController(split, MAP))], axis=1))
        assert split.gains_db["drums"] == -math.inf and split.mix == 1.0  # the preset's
    assert np.abs(outs[0] - outs[1]).max() < 1e-6


def test_cc_range_mapping_and_program_change(model_path):
    split = StemSplit(model=model_path)
    ctl = MidiController(split, MAP)
    ctl.handle(mido.Message("control_change", control=20, value=127))
    assert split.gains_db["vocals"] == pytest.approx(0.0)
    ctl.handle(mido.Message("control_change", control=20, value=127 // 2))
    assert split.gains_db["vocals"] == pytest.approx(-60 + 60 * 63 / 127)
    ctl.handle(mido.Message("control_change", control=20, value=0))
    assert split.gains_db["vocals"] == -math.inf
    ctl.handle(mido.Message("control_change", control=21, value=0))
    assert split.mix == 0.0
    ctl.handle(mido.Message("program_change", program=3))
    assert split.gains_db == {"vocals": 0.0, "drums": -math.inf, "bass": 0.0, "other": 0.0}
    assert split.mix == 1.0
    ctl.handle(mido.MetaMessage("set_tempo", tempo=1))  # ignored
    ctl.handle(mido.Message("control_change", control=99, value=5))  # unmapped
    assert ctl.handled == 5


def test_note_and_cc_drive_ab_switch():
    ab = ABSwitch([Gain(0.0)], [Gain(-6.0)])
    ctl = MidiController(ab, {"mappings": [{"note": 60, "param": "ab"},
                                           {"cc": 80, "param": "ab"},
                                           {"note": 62, "param": "ab", "action": "a"}]})
    ctl.handle(mido.Message("note_on", note=60, velocity=100))
    assert ab.selected == "b"
    ctl.handle(mido.Message("note_on", note=60, velocity=0))  # a note-off: ignored
    assert ab.selected == "b"
    ctl.handle(mido.Message("note_on", note=62, velocity=1))
    assert ab.selected == "a"
    ctl.handle(mido.Message("control_change", control=80, value=64))
    assert ab.selected == "b"
    ctl.handle(mido.Message("control_change", control=80, value=63))
    assert ab.selected == "a"


@pytest.mark.parametrize("bad, words", [
    ({"mappings": [{"cc": 200, "param": "mix"}]}, "'cc'"),
    ({"mappings": [{"cc": 1, "param": "volume"}]}, "'volume'"),
    ({"mappings": [{"cc": 1, "parm": "mix"}]}, "'parm'"),
    ({"mappings": [{"cc": 1, "note": 2, "param": "ab"}]}, "exactly one"),
    ({"mappings": [{"note": 1, "param": "mix"}]}, "'mix'"),
    ({"mappings": [{"cc": 1, "param": "mix", "max": 2}]}, "'max'"),
    ({"mappings": [{"program": 1}]}, "'preset'"),
    ({"channel": 16, "mappings": []}, "'channel'"),
    ({"version": 9, "mappings": []}, "version 9"),
])
def test_map_validation_names_the_problem(bad, words):
    with pytest.raises(MidiMapError, match=words):
        MidiMap.from_dict(bad)


def test_map_checked_against_target(model_path):
    split = StemSplit(model=model_path)
    with pytest.raises(MidiMapError, match="'piano'"):
        MidiController(split, {"mappings": [{"cc": 1, "param": "gain:piano"}]})
    with pytest.raises(MidiMapError, match="A/B switch"):
        MidiController(split, {"mappings": [{"cc": 1, "param": "ab"}]})
    with pytest.raises(MidiMapError, match="unknown preset"):
        MidiController(split, {"mappings": [{"program": 1, "preset": "nope"}]})


def test_live_control_from_queue(model_path):
    x = music_like(channels=1, seconds=0.5)
    split = StemSplit(model=model_path)
    q = queue.Queue()
    live = LiveMidi(MidiController(split, MAP), q)
    outs = []
    for i, y in enumerate(live.stream(split, blocks(x, 4096), SR)):
        outs.append(y)
        if i == 2:
            q.put(mido.Message("control_change", control=20, value=0))
    assert split.gains_db["vocals"] == -math.inf and q.empty()
    out = np.concatenate(outs, axis=1)
    ref = StemSplit(model=model_path)(x, SR)
    # The message was read before block 3, so the mute starts at sample 3 * 4096.
    t0 = 3 * 4096
    assert np.abs(out[:, :t0] - ref[:, :t0]).max() < 1e-6
    assert np.abs(out[:, t0 + 300:] - ref[:, t0 + 300:]).max() > 1e-3


def test_live_control_from_virtual_port(model_path):
    try:
        port = mido.open_input("stemboard-test", virtual=True)
        out = mido.open_output("stemboard-test")
    except Exception as e:  # no backend (python-rtmidi is optional) or no virtual ports
        pytest.skip(f"no virtual MIDI ports here: {e}")
    with port, out:
        split = StemSplit(model=model_path)
        live = LiveMidi(MidiController(split, MAP), port)
        out.send(mido.Message("control_change", control=20, value=0))
        import time
        for _ in range(50):
            if live.poll():
                break
            time.sleep(0.01)
        assert split.gains_db["vocals"] == -math.inf
