"""Presets: built-ins, round trips, validation messages, versions, user folder."""
import json
import math

import numpy as np
import pytest

from conftest import SR, music_like
from stemboard.plugin import StemSeparator
from stemboard.plugin.presets import separator_from_preset, stemsplit_from_preset
from stemboard.plugin.stemsplit import StemSplit
from stemboard.presets import (PRESET_VERSION, Preset, PresetError, apply_preset,
                               list_presets, load_preset, save_preset)

BUILTIN = ["vocals-only", "karaoke", "drums-only", "drumless", "bass-only", "bassless",
           "vocals-up-3db"]


@pytest.fixture(autouse=True)
def user_dir(tmp_path, monkeypatch):
    d = tmp_path / "user-presets"
    monkeypatch.setenv("STEMBOARD_PRESET_DIR", str(d))
    return d


def test_builtins_listed_with_descriptions_and_live_forms():
    listed = list_presets()
    for name in BUILTIN:
        assert listed[name] and listed[f"{name}-live"]
        # The vocal presets use the best vocal model; the rest the 4-stem default.
        vocal = name in ("vocals-only", "karaoke", "vocals-up-3db")
        assert load_preset(name).model == ("hq-vocals-ft" if vocal else "offline")
        assert load_preset(f"{name}-live").model == "live"
    assert load_preset("acapella").name == "vocals-only"


def test_builtin_presets_build_the_right_mix(model_path):
    expect = {
        "karaoke": {"vocals": -math.inf, "drums": 0, "bass": 0, "other": 0},
        "vocals-only": {"vocals": 0, "drums": -math.inf, "bass": -math.inf,
                        "other": -math.inf},
        "drumless": {"vocals": 0, "drums": -math.inf, "bass": 0, "other": 0},
        "bass-only": {"vocals": -math.inf, "drums": -math.inf, "bass": 0,
                      "other": -math.inf},
        "vocals-up-3db": {"vocals": 3.0, "drums": 0, "bass": 0, "other": 0},
    }
    for name, gains in expect.items():
        # The preset names "offline"; the model is only loaded here, overridden.
        sep = separator_from_preset(load_preset(name), model_path)
        assert sep.gains_db == gains, name


def test_karaoke_plus_acapella_is_the_input(model_path):
    x = music_like(channels=1, seconds=0.3)
    k = separator_from_preset(load_preset("karaoke"), model_path)(x, SR)
    v = separator_from_preset(load_preset("vocals-only"), model_path)(x, SR)
    assert np.abs(k + v - x).max() < 1e-5
    assert np.abs(v).max() > 1e-3


def test_save_load_round_trip_in_user_folder(model_path, user_dir):
    sep = StemSeparator(model_path, gains_db={"drums": -math.inf, "bass": -2.5}, mix=0.8,
                        mask_mode="binary")
    path = save_preset(sep, "my-mix", description="drums out, bass down")
    assert path == user_dir / "my-mix.json"
    assert json.loads(path.read_text())["gains_db"]["drums"] == "-inf"
    assert list_presets()["my-mix"] == "drums out, bass down"
    p = load_preset("my-mix")
    assert p.model == model_path and p.mask_mode == "binary" and p.mix == 0.8
    again = separator_from_preset(p)
    assert again.gains_db == sep.gains_db and again.mix == 0.8
    assert again.mask_mode == "binary"
    # A StemSplit's state saves the same way, and presets apply to it.
    split = StemSplit(separator=StemSeparator(model_path))
    apply_preset(split, "my-mix")
    assert split.gains_db == sep.gains_db
    p2 = load_preset(save_preset(split, user_dir / "sub" / "split.json"))
    assert p2.gains_db["drums"] == -math.inf and p2.name == "split"


def test_user_preset_shadows_builtin(user_dir):
    save_preset({"gains_db": {"vocals": -6}, "description": "softer karaoke"}, "karaoke")
    assert load_preset("karaoke").gains_db == {"vocals": -6.0}
    assert list_presets()["karaoke"] == "softer karaoke"


def test_unknown_name_lists_available():
    with pytest.raises(PresetError, match="unknown preset 'karaokee'; available: .*drumless.*karaoke"):
        load_preset("karaokee")


@pytest.mark.parametrize("data, words", [
    ({"gains_db": {"vocals": "loud"}}, r"gains_db\['vocals'\].*'loud'"),
    ({"gainz": {}}, "unknown key 'gainz'"),
    ({"mix": 1.5}, "'mix'.*1.5"),
    ({"mask_mode": "hard"}, "'mask_mode'.*'hard'"),
    ({"solo": "vocals"}, "'solo'"),
    ({"model": 3}, "'model'"),
    ({"version": 0}, "'version'"),
    ({"version": PRESET_VERSION + 1}, f"version {PRESET_VERSION + 1} is newer"),
    ([1, 2], "JSON object"),
])
def test_validation_names_bad_key_or_value(tmp_path, data, words):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PresetError, match=words):
        load_preset(path)


def test_bad_json_and_unknown_stem(tmp_path, model_path):
    path = tmp_path / "broken.json"
    path.write_text('{"gains_db": {"vocals": 1,}}')
    with pytest.raises(PresetError, match="broken.json.*line 1"):
        load_preset(path)
    p = Preset.from_dict({"gains_db": {"piano": -3}})
    with pytest.raises(PresetError, match="'piano'"):
        separator_from_preset(p, model_path)
    with pytest.raises(PresetError, match="invalid preset name"):
        save_preset(p, "bad name!")


def test_old_preset_without_version_still_loads(tmp_path, model_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"gains_db": {"bass": "-inf"}}))
    p = load_preset(path)
    assert p.name == "old" and p.gains_db == {"bass": -math.inf}
    assert p.to_dict()["version"] == PRESET_VERSION


def test_relative_model_path_resolves_next_to_preset(tmp_path, model_path):
    import shutil
    from pathlib import Path
    for ext in (".onnx", ".json"):
        shutil.copy(Path(model_path).with_suffix(ext), tmp_path / f"m{ext}")
    (tmp_path / "p.json").write_text(json.dumps({"model": "m.onnx", "solo": ["bass"]}))
    sep = separator_from_preset(load_preset(tmp_path / "p.json"))
    assert sep.gains_db["bass"] == 0 and sep.gains_db["vocals"] == -math.inf


def test_make_separator_and_stemsplit_are_deprecated_aliases(model_path):
    """Preset.make_* (README code before issue 27) warn and build what the factories build."""
    x = music_like()
    preset = load_preset("karaoke")
    with pytest.warns(DeprecationWarning, match="separator_from_preset"):
        old = preset.make_separator(model_path)
    new = separator_from_preset("karaoke", model_path)
    assert old.gains_db == new.gains_db and old.mask_mode == new.mask_mode
    np.testing.assert_array_equal(old(x, SR), new(x, SR))
    with pytest.warns(DeprecationWarning, match="stemsplit_from_preset"):
        split = preset.make_stemsplit(model=model_path)
    assert isinstance(split, StemSplit)
    want = stemsplit_from_preset(preset, model=model_path)(x, SR)
    np.testing.assert_array_equal(split(x, SR), want)
