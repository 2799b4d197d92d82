"""MIDI maps, sample-accurate offline automation (tempo changes included), live control."""
import json
import math
import queue

import mido
import numpy as np
import pytest
from pedalboard import Gain

from conftest import SR, music_like
from stemboard.cli import main
from stemboard.plugin.ab import ABSwitch
from stemboard.plugin.chain import Chain
from stemboard.plugin.midi import (LiveMidi, MidiController, MidiMap, MidiMapError,
                                   automate, midi_file_events)
from stemboard.plugin.stemsplit import StemSplit
from stemboard.plugin.presets import stemsplit_from_preset
from stemboard.presets import load_preset

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


# The README's map: stem gain, mix, an A/B note and a program change in one.
AB_MAP = {"version": 1, "mappings": [
    {"cc": 20, "param": "gain:vocals", "min": -60, "max": 6},
    {"cc": 21, "param": "mix"},
    {"note": 60, "param": "ab"},
    {"program": 0, "preset": "karaoke"},
]}


def cc(control, value):
    return mido.Message("control_change", control=control, value=value)


def test_one_map_switches_ab_and_edits_the_side_playing(model_path):
    a, b = StemSplit(model=model_path), StemSplit(model=model_path)
    ab = ABSwitch(a, b)
    ctl = MidiController(ab, AB_MAP)
    ctl.handle(cc(20, 0))
    assert a.gains_db["vocals"] == -math.inf and b.gains_db["vocals"] == 0.0
    ctl.handle(mido.Message("note_on", note=60, velocity=90))
    assert ab.selected == "b" and ab.stem_controls() is b
    ctl.handle(cc(20, 127))
    ctl.handle(cc(21, 0))
    assert b.gains_db["vocals"] == pytest.approx(6.0) and b.mix == 0.0
    assert a.gains_db["vocals"] == -math.inf and a.mix == 1.0  # A keeps its settings
    ctl.handle(mido.Message("note_on", note=60, velocity=90))
    ctl.handle(mido.Message("program_change", program=0))
    assert ab.selected == "a" and a.mix == 1.0
    assert b.gains_db["vocals"] == pytest.approx(6.0)
    assert ctl.handled == 6


def test_ab_automation_lands_on_the_sample(model_path):
    """Toggle to B at 0.2 s, then mute B's vocals at 0.4 s: B, then B muted, exactly."""
    x = music_like(channels=2, seconds=0.6)
    t1, t2 = int(0.2 * SR), int(0.4 * SR)
    split = lambda: StemSplit({"drums": [Gain(-6.0)]}, model=model_path)  # noqa: E731
    a_out = split()(x, SR)
    b = split()
    b_out = b(x, SR)
    b.mute("vocals")
    b_muted = b(x, SR)
    ab = ABSwitch(split(), split(), crossfade_ms=5.0)
    events = [(t1, mido.Message("note_on", note=60, velocity=1)), (t2, cc(20, 0))]
    out = np.concatenate([y for y, _ in automate(ab, blocks(x, 2048), SR, events,
                                                  MidiController(ab, AB_MAP))], axis=1)
    fade = int(round(0.005 * SR))
    assert np.abs(out[:, :t1] - a_out[:, :t1]).max() < 1e-5
    assert np.abs(out[:, t1 + fade:t2] - b_out[:, t1 + fade:t2]).max() < 1e-5
    assert np.abs(out[:, t2 + fade:] - b_muted[:, t2 + fade:]).max() < 1e-5
    assert np.abs(b_out[:, t2 + fade:] - b_muted[:, t2 + fade:]).max() > 1e-2


def test_chain_target_routes_each_mapping_to_its_part(model_path):
    split = StemSplit(model=model_path)
    ab = ABSwitch([Gain(0.0)], [Gain(-6.0)])
    ctl = MidiController(Chain([Gain(0.0), split, Chain([ab])]), AB_MAP)
    ctl.handle(mido.Message("note_on", note=60, velocity=1))
    ctl.handle(cc(20, 0))
    assert ab.selected == "b" and split.gains_db["vocals"] == -math.inf
    with pytest.raises(MidiMapError, match=r"mappings\[0\].*has 2 \(StemSplit, StemSplit\)"):
        MidiController(Chain([StemSplit(model=model_path), StemSplit(model=model_path)]),
                       {"mappings": [{"cc": 20, "param": "gain:vocals"}]})


def test_ab_stem_controls_are_checked_up_front(model_path, model_factory):
    two = model_factory(stems=("vocals", "accompaniment"))
    with pytest.raises(MidiMapError, match=r"side 'a' \(list\) has no part with stem gains"):
        MidiController(ABSwitch([Gain(0.0)], StemSplit(model=model_path)), AB_MAP)
    mixed = ABSwitch(StemSplit(model=model_path), StemSplit(model=two))
    with pytest.raises(MidiMapError, match=r"unknown stem 'drums'.*'accompaniment'"):
        MidiController(mixed, {"mappings": [{"cc": 1, "param": "gain:drums"}]})
    with pytest.raises(MidiMapError, match=r"mappings\[0\].*'drums'"):
        MidiController(mixed, {"mappings": [{"program": 1, "preset": "drumless"}]})
    with pytest.raises(MidiMapError, match="A/B switch"):
        MidiController(StemSplit(model=model_path), AB_MAP)


def test_midi_gains_stay_in_the_gain_range(model_path):
    """Map bounds outside -120..+24 dB are refused, so no CC value can exceed them."""
    for bound in ({"max": 30}, {"min": -200}, {"max": float("nan")}):
        with pytest.raises(MidiMapError, match="dB"):
            MidiMap.from_dict({"mappings": [{"cc": 1, "param": "gain:vocals", **bound}]})
    ab = ABSwitch(StemSplit(model=model_path), StemSplit(model=model_path))
    ctl = MidiController(ab, {"mappings": [{"cc": 1, "param": "gain:vocals", "min": -120,
                                            "max": 24}]})
    ctl.handle(cc(1, 127))
    assert ab.stem_controls("a").gains_db["vocals"] == 24.0


def test_render_cli_ab_side_b(tmp_path, model_path, capsys):
    from pedalboard.io import AudioFile

    x = music_like(channels=2, seconds=0.8)
    song = tmp_path / "song.wav"
    with AudioFile(str(song), "w", SR, 2, bit_depth=32) as f:
        f.write(x)
    (tmp_path / "map.json").write_text(json.dumps(AB_MAP))
    mf = mido.MidiFile(ticks_per_beat=100)  # 120 bpm: 100 ticks are 0.5 s
    mf.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=64, time=40)]))
    mf.save(str(tmp_path / "moves.mid"))
    base = ["render", str(song), "-o", str(tmp_path / "out.wav"), "--preset", "vocals-up-3db",
            "--automation", str(tmp_path / "moves.mid"), "--midi-map", str(tmp_path / "map.json"),
            "--model", model_path, "-q"]
    assert main(base) == 1
    err = capsys.readouterr().err
    assert "mappings[2] switches A/B" in err and "--b PRESET" in err
    assert not (tmp_path / "out.wav").exists()
    assert main(base + ["--b", "karaoke"]) == 0
    with AudioFile(str(tmp_path / "out.wav")) as f:
        y = f.read(f.frames)
    t = int(0.2 * SR) + int(round(0.010 * SR))  # after ABSwitch's default 10 ms crossfade
    want_a = stemsplit_from_preset(load_preset("vocals-up-3db"), model=model_path)(x, SR)
    want_b = stemsplit_from_preset(load_preset("karaoke"), model=model_path)(x, SR)
    assert np.abs(y[:, :int(0.2 * SR)] - want_a[:, :int(0.2 * SR)]).max() < 1e-5
    assert np.abs(y[:, t:] - want_b[:, t:]).max() < 1e-5
    assert main(["render", str(song), "-o", str(tmp_path / "o2.wav"), "--preset", "karaoke",
                 "--b", "drumless", "--model", model_path, "-q"]) == 1
    assert "--b is only used with --automation" in capsys.readouterr().err


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
