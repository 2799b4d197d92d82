"""Stem-mix presets: JSON files that set stem gains, dry/wet and the model.

This room holds the data and its loader; the processors a preset builds
(``separator_from_preset``, ``stemsplit_from_preset``) live in
:mod:`stemboard.plugin.presets`, above it.

A preset file looks like::

    {"version": 1, "name": "karaoke", "description": "...", "model": "offline",
     "gains_db": {"vocals": "-inf"}, "solo": [], "mix": 1.0, "mask_mode": "soft"}

``gains_db`` maps stem names to dB (a number from -120 to +24, or ``"-inf"`` to
mute; JSON has no infinity). ``solo`` keeps only the listed stems (at 0 dB, then
``gains_db`` applies on top). Every key except ``version`` is optional.

Built-in presets live beside this module; user presets live in
``$STEMBOARD_PRESET_DIR`` or else ``$XDG_CONFIG_HOME/stemboard/presets``
(``~/.config/stemboard/presets``), and a user preset shadows a built-in one of
the same name.

Versions: files carry ``version``; a file without one is read as version 1
(the first format). Older versions are upgraded by ``_MIGRATIONS`` when
loaded, so old presets keep loading; versions newer than this stemboard are
refused with a message to upgrade.
"""
import json
import math
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from stemboard.dsp.gains import check_gain_db
from stemboard.models.manifest import check_mask_mode
from stemboard.models.runtime import bundled_models
from stemboard.models.versioning import check_version

BUILTIN_DIR = Path(__file__).resolve().parent
PRESET_VERSION = 1
ALIASES = {"acapella": "vocals-only", "acapella-live": "vocals-only-live"}
_KEYS = ("version", "name", "description", "model", "gains_db", "solo", "mix", "mask_mode")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
# version -> function upgrading a dict of that version to the next one.
_MIGRATIONS = {}


class PresetError(ValueError):
    """A preset that cannot be found, read or validated."""


def user_preset_dir():
    """The user preset folder (it may not exist yet)."""
    env = os.environ.get("STEMBOARD_PRESET_DIR")
    if env:
        return Path(env).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "stemboard" / "presets"


@dataclass
class Preset:
    """A validated preset.

    Attributes
    ----------
    name, description : str
    model : str or None
        A bundled model's name (``stemboard.models.bundled_models``) or a
        model path; not loaded until a processor is built from the preset
        (``stemboard.separator_from_preset``).
    gains_db : dict of str to float
        ``-inf`` mutes.
    solo : tuple of str
    mix : float
    mask_mode : {"soft", "binary"}
    path : Path or None
        Where it was loaded from.
    """

    name: str = "untitled"
    description: str = ""
    model: object = None
    gains_db: dict = field(default_factory=dict)
    solo: tuple = ()
    mix: float = 1.0
    mask_mode: str = "soft"
    path: object = None

    @classmethod
    def from_dict(cls, data, *, source="preset"):
        """Validate ``data`` (a dict read from JSON) and return a ``Preset``.

        Raises
        ------
        PresetError
            Naming ``source`` and the bad key or value.
        """
        if not isinstance(data, dict):
            raise PresetError(f"{source}: a preset must be a JSON object, got "
                              f"{type(data).__name__}")
        data = _upgrade(dict(data), source)
        for key in data:
            if key not in _KEYS:
                raise PresetError(f"{source}: unknown key {key!r}; allowed keys: "
                                  f"{', '.join(_KEYS)}")
        p = cls()
        for key in ("name", "description"):
            if key in data:
                if not isinstance(data[key], str):
                    raise PresetError(f"{source}: {key!r} must be a string, got {data[key]!r}")
                setattr(p, key, data[key])
        if "model" in data:
            if data["model"] is not None and not isinstance(data["model"], str):
                raise PresetError(f"{source}: 'model' must be a model name or path string, "
                                  f"got {data['model']!r}")
            p.model = data["model"]
        gains = data.get("gains_db", {})
        if not isinstance(gains, dict):
            raise PresetError(f"{source}: 'gains_db' must be an object of stem: dB, got {gains!r}")
        p.gains_db = {str(s): _parse_db(v, f"{source}: gains_db[{s!r}]") for s, v in gains.items()}
        solo = data.get("solo", [])
        if not isinstance(solo, list) or not all(isinstance(s, str) for s in solo):
            raise PresetError(f"{source}: 'solo' must be a list of stem names, got {solo!r}")
        p.solo = tuple(solo)
        mix = data.get("mix", 1.0)
        if isinstance(mix, bool) or not isinstance(mix, (int, float)) or not 0 <= mix <= 1:
            raise PresetError(f"{source}: 'mix' must be a number from 0 to 1, got {mix!r}")
        p.mix = float(mix)
        try:
            p.mask_mode = check_mask_mode(data.get("mask_mode", "soft"), name="'mask_mode'")
        except ValueError as e:
            raise PresetError(f"{source}: {e}") from None
        return p

    def to_dict(self):
        """The JSON-ready form (``-inf`` written as ``"-inf"``)."""
        return {
            "version": PRESET_VERSION,
            "name": self.name,
            "description": self.description,
            "model": None if self.model is None else str(self.model),
            "gains_db": {s: ("-inf" if db == -math.inf else db) for s, db in self.gains_db.items()},
            "solo": list(self.solo),
            "mix": self.mix,
            "mask_mode": self.mask_mode,
        }

    # -- building ---------------------------------------------------------------
    def resolved_model(self, model=None):
        """``model`` if given, else the preset's, with paths relative to the preset file."""
        if model is not None:
            return model
        m = self.model
        if m is None or m in bundled_models() or self.path is None:
            return m
        p = Path(m).expanduser()
        return str(p if p.is_absolute() else Path(self.path).parent / p)

    def apply(self, target):
        """Set ``target``'s stem gains and mix from this preset.

        ``target`` is a ``StemSeparator`` or ``StemSplit`` (anything with
        ``stems``, ``set_gain`` and ``mix``). The model and mask mode are not
        changed. Unknown stems raise ``ValueError`` naming them.
        """
        stems = tuple(target.stems)
        for s in list(self.solo) + list(self.gains_db):
            if s not in stems:
                raise PresetError(f"preset {self.name!r} names stem {s!r}, but the model has "
                                  f"{list(stems)}")
        for s in stems:
            db = 0.0 if not self.solo or s in self.solo else -math.inf
            target.set_gain(s, self.gains_db.get(s, db))
        target.mix = self.mix
        return target

    def make_separator(self, model=None, **kwargs):
        """Deprecated: use :func:`stemboard.separator_from_preset` (``plugin.presets``).

        Kept so code written against stemboard 0.1's README keeps working; the
        preset room holds data and its loader, and the processors are built
        above it, in ``plugin``.
        """
        warnings.warn("Preset.make_separator is deprecated; use "
                      "stemboard.separator_from_preset(preset, model)", DeprecationWarning,
                      stacklevel=2)
        # The one import up a floor in the package: a deprecated forwarder
        # (tests/test_layers.py lists it); it goes with this method.
        from stemboard.plugin.presets import separator_from_preset

        return separator_from_preset(self, model, **kwargs)

    def make_stemsplit(self, branches=None, *, model=None, **kwargs):
        """Deprecated: use :func:`stemboard.stemsplit_from_preset` (``plugin.presets``)."""
        warnings.warn("Preset.make_stemsplit is deprecated; use "
                      "stemboard.stemsplit_from_preset(preset, branches, model=model)",
                      DeprecationWarning, stacklevel=2)
        # Deprecated forwarder, as make_separator above.
        from stemboard.plugin.presets import stemsplit_from_preset

        return stemsplit_from_preset(self, branches, model=model, **kwargs)


def _parse_db(value, where):
    if isinstance(value, str) and value.strip().lower() in ("-inf", "-infinity", "mute"):
        return -math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PresetError(f"{where} must be a finite number of dB or \"-inf\", got {value!r}")
    return check_gain_db(value, what=where, error=PresetError)


def _upgrade(data, source):
    check_version(data.setdefault("version", 1), PRESET_VERSION, what="preset", source=source,
                  error=PresetError)
    while data["version"] < PRESET_VERSION:
        data = _MIGRATIONS[data["version"]](data)
    return data


# -- finding, loading, saving ------------------------------------------------------
def _catalog():
    """Name -> path of every preset, user presets shadowing built-in ones."""
    found = {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.json"))}
    user = user_preset_dir()
    if user.is_dir():
        found.update({p.stem: p for p in sorted(user.glob("*.json"))})
    return dict(sorted(found.items()))


def _read(path):
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PresetError(f"{path}: cannot read preset ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        # A binary or wrongly encoded file: say which file, not just the byte.
        raise PresetError(f"{path}: not a UTF-8 text file (byte {e.object[e.start]:#04x} "
                          f"at offset {e.start}); a preset is a JSON file") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise PresetError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: "
                          f"{e.msg}") from None
    preset = Preset.from_dict(data, source=str(path))
    if "name" not in data:
        preset.name = path.stem
    preset.path = path
    return preset


def _looks_like_path(s):
    s = str(s)
    return s.endswith(".json") or "/" in s or os.sep in s


def load_preset(name_or_path):
    """Load a preset by name (user folder, then built-in) or from a JSON path.

    Raises
    ------
    PresetError
        Unknown names (listing the available ones), unreadable files, and
        validation errors naming the bad key or value.
    """
    if isinstance(name_or_path, Preset):
        return name_or_path
    if isinstance(name_or_path, Path) or _looks_like_path(name_or_path):
        return _read(name_or_path)
    name = str(name_or_path)
    catalog = _catalog()
    name = name if name in catalog else ALIASES.get(name, name)
    if name not in catalog:
        raise PresetError(f"unknown preset {name_or_path!r}; available: "
                          f"{', '.join(catalog)} (user folder: {user_preset_dir()})")
    return _read(catalog[name])


def list_presets():
    """Return ``{name: description}`` for every preset, sorted by name.

    A user preset that fails to load is listed with the error as its description.
    """
    out = {}
    for name, path in _catalog().items():
        try:
            out[name] = _read(path).description
        except PresetError as e:
            out[name] = f"(invalid: {e})"
    return out


def preset_from(obj, *, name="untitled", description=""):
    """A ``Preset`` from a ``StemSeparator``, ``StemSplit``, ``Preset`` or dict."""
    if isinstance(obj, Preset):
        return obj
    if isinstance(obj, dict):
        return Preset.from_dict(obj)
    sep = getattr(obj, "separator", obj)  # a StemSplit holds its separator
    if not hasattr(obj, "gains_db") or not hasattr(sep, "model"):
        raise TypeError(f"cannot make a preset from {type(obj).__name__}; pass a "
                        "StemSeparator, StemSplit, Preset or dict")
    path = Path(sep.model.path)
    bundled = {p.resolve(): n for n, p in bundled_models().items()}
    model = bundled.get(path.resolve(), str(path))
    return Preset(name=name, description=description, model=model,
                  gains_db=dict(obj.gains_db), mix=float(obj.mix),
                  mask_mode=sep.mask_mode)


def save_preset(obj, name_or_path, *, description=None):
    """Save the current state of ``obj`` as a preset; return the path written.

    Parameters
    ----------
    obj : StemSeparator, StemSplit, Preset or dict
    name_or_path : str or Path
        A bare name saves to the user preset folder as ``NAME.json``; a path
        (with ``/`` or ending in ``.json``) is written as given.
    description : str, optional

    Notes
    -----
    The file is written to a temporary file and renamed, so a crash never
    leaves a half-written preset.
    """
    if isinstance(name_or_path, Path) or _looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser()
        name = path.stem
    else:
        name = str(name_or_path)
        if not _NAME_RE.match(name):
            raise PresetError(f"invalid preset name {name!r}: use letters, digits, '-', '_', "
                              "'.' or '+', or pass a path ending in .json")
        path = user_preset_dir() / f"{name}.json"
    preset = preset_from(obj, name=name, description=description or "")
    data = preset.to_dict()
    data["name"] = name
    if description is not None:
        data["description"] = description
    Preset.from_dict(data, source=str(path))  # never write what we could not read back
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def apply_preset(target, preset):
    """Apply a preset (name, path or ``Preset``) to a separator or ``StemSplit``."""
    return load_preset(preset).apply(target)


__all__ = ["Preset", "PresetError", "PRESET_VERSION", "load_preset", "list_presets",
           "save_preset", "apply_preset", "preset_from", "user_preset_dir"]
