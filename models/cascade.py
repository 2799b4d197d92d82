"""Cascades: one mask model's stem split further by a second model.

A cascade manifest (a ``.json`` with no ``.onnx`` beside it) names two mask
models: ``first`` separates the mix, and ``second`` splits the ``first`` model's
``split`` stem into its ``keep`` stems (the other stems of ``second`` are left
out and their share renormalised over ``keep``).  The bundled ``hq`` model is
the Spleeter-class ``hq-vocals`` (vocals / accompaniment) with the
accompaniment split into drums / bass / other by ``offline``::

    {"format": "stemboard-cascade", "version": 1, "name": "hq",
     "first": "hq-vocals", "split": "accompaniment",
     "second": "offline", "keep": ["drums", "bass", "other"]}

Both models run in series on the waveform (the engine's
:class:`~stemboard.plugin.engine.CascadeRenderer`), so each keeps its own STFT
grid; the stems still add up to the mix, and the latency is the sum of both.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from stemboard.models.manifest import ModelError, Named
from stemboard.models.versioning import check_version

CASCADE_FORMAT = "stemboard-cascade"
CASCADE_VERSION = 1


@dataclass(frozen=True)
class CascadeManifest:
    """What a cascade manifest says; see the module notes."""

    first: str
    split: str
    second: str
    keep: tuple
    name: str = ""
    description: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict, source: str = "manifest") -> "CascadeManifest":
        def fail(msg):
            raise ModelError(f"{source}: {msg}")

        if not isinstance(d, dict) or d.get("format") != CASCADE_FORMAT:
            fail(f"not a cascade manifest (format must be {CASCADE_FORMAT!r})")
        check_version(d.get("version", 1), CASCADE_VERSION, what="cascade", source=source,
                      error=ModelError)
        for key in ("first", "split", "second", "keep"):
            if key not in d:
                fail(f"missing key {key!r}")
        for key in ("first", "split", "second"):
            if not isinstance(d[key], str) or not d[key]:
                fail(f"{key} must be a non-empty string, got {d[key]!r}")
        keep = d["keep"]
        if (not isinstance(keep, list) or not keep
                or not all(isinstance(s, str) and s for s in keep) or len(set(keep)) != len(keep)):
            fail(f"keep must be a non-empty list of unique stem names, got {keep!r}")
        known = {"format", "version", "first", "split", "second", "keep", "name", "description"}
        return cls(first=d["first"], split=d["split"], second=d["second"], keep=tuple(keep),
                   name=str(d.get("name", "")), description=str(d.get("description", "")),
                   extra={k: v for k, v in d.items() if k not in known})

    def stems(self, first_stems, where="cascade") -> tuple:
        """``first_stems`` with ``split`` replaced, in place, by ``keep``."""
        j = list(first_stems).index(self.split)
        stems = tuple(first_stems[:j]) + self.keep + tuple(first_stems[j + 1:])
        if len(set(stems)) != len(stems):
            raise ModelError(f"{where}: the cascade's stems {list(stems)} are not unique")
        return stems

    @classmethod
    def load(cls, path) -> "CascadeManifest":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelError(f"{path}: cascade manifest not found") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelError(f"{path}: manifest is not valid JSON ({e})") from None
        return cls.from_dict(d, source=str(path))


def is_cascade(path) -> bool:
    """Whether ``path`` is a JSON file whose format is a cascade's."""
    path = Path(path)
    if path.suffix != ".json" or not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("format") == CASCADE_FORMAT
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False


def part_path(manifest_path, ref):
    """Where a cascade's ``first``/``second`` ``ref`` points: a file beside the
    manifest if there is one, else ``ref`` itself (a bundled name or a path)."""
    local = Path(manifest_path).parent / ref
    return local if local.is_file() else ref


class CascadeModel(Named):
    """Two loaded :class:`~stemboard.models.MaskModel` in series.

    Parameters
    ----------
    path : str or Path
        The cascade manifest.  Its ``first`` and ``second`` are bundled model
        names or paths relative to the manifest's folder.
    providers, num_threads
        As for :class:`~stemboard.models.MaskModel`, passed to both.

    Attributes
    ----------
    first, second : MaskModel
    stems : tuple of str
        ``first``'s stems with ``split`` replaced, in place, by ``keep``.
    keep_index : tuple of int
        Indices of ``keep`` in ``second``'s stems.
    """

    def __init__(self, path, *, providers=None, num_threads=None, loader):
        self.path = Path(path)
        self.manifest = CascadeManifest.load(self.path)
        m = self.manifest
        where = str(self.path)

        self.first, self.second = (
            loader(part_path(self.path, ref), providers=providers, num_threads=num_threads)
            for ref in (m.first, m.second))
        for part in (self.first, self.second):
            if isinstance(part, CascadeModel):
                raise ModelError(f"{where}: a cascade's parts must be mask models, not cascades")
        if m.split not in self.first.stems:
            raise ModelError(f"{where}: split stem {m.split!r} is not one of {m.first!r}'s "
                             f"stems {list(self.first.stems)}")
        missing = [s for s in m.keep if s not in self.second.stems]
        if missing:
            raise ModelError(f"{where}: keep stems {missing} are not among {m.second!r}'s "
                             f"stems {list(self.second.stems)}")
        if self.first.sample_rate != self.second.sample_rate:
            raise ModelError(f"{where}: the models' sample rates differ "
                             f"({self.first.sample_rate} and {self.second.sample_rate})")
        self.stems = m.stems(self.first.stems, where)
        self.split_index = self.first.stems.index(m.split)
        self.keep_index = tuple(self.second.stems.index(s) for s in m.keep)

    @property
    def sample_rate(self) -> int:
        return self.first.sample_rate

    @property
    def latency_samples(self) -> int:
        """Both models' streaming latencies added, at the model rate."""
        return self.first.manifest.latency_samples + self.second.manifest.latency_samples

    def __repr__(self):
        return (f"CascadeModel({str(self.path)!r}, stems={list(self.stems)}, "
                f"first={self.manifest.first!r}, second={self.manifest.second!r})")
