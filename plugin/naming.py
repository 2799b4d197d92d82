"""Output file names from templates such as ``"{track}/{stem}.{ext}"``.

A template is checked when it is made, before any audio is read, so a typo
fails with one line naming the bad field instead of a ``KeyError`` after the
first file has been separated.
"""
import string
from pathlib import Path, PurePath

FIELDS = {
    "track": "the input's name without its extension",
    "stem": "the stem's name",
    "ext": "the output format's extension",
    "model": "the model's name",
    "preset": "the preset's name",
}


class TemplateError(ValueError):
    """A file-name template is malformed or names a field that is not available."""


def track_name(path):
    """The input's name without its extension; ``song.stem.mp4`` gives ``song``."""
    path = Path(path)
    name = path.stem
    if path.suffix.lower() == ".mp4" and name.lower().endswith(".stem"):
        name = name[:-5]
    return name


class NameTemplate:
    """A validated file-name template.

    Parameters
    ----------
    template : str
        Python format syntax with named fields only, e.g. ``"{track}-{stem}.{ext}"``.
        May contain ``/`` for subfolders; may not be absolute or climb out with ``..``.
    available : iterable of str
        The fields this command fills (a subset of :data:`FIELDS`).
    required : iterable of str
        Fields that must appear, e.g. ``stem`` when one input writes several files.
    option : str
        How the user set it, for error messages (e.g. ``"--filename"``).

    Raises
    ------
    TemplateError
    """

    def __init__(self, template, *, available, required=(), option="--filename"):
        self.template = template
        self.available = tuple(available)
        where = f"{option} {template!r}"
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as e:
            raise TemplateError(f"{where}: {e}") from None
        fields = []
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            if name == "" or name.isdigit():
                raise TemplateError(f"{where}: fields need a name, use "
                                    f"{self._choices()}")
            if name not in self.available:
                raise TemplateError(f"{where}: unknown field {{{name}}}; use "
                                    f"{self._choices()}")
            if spec or conversion:
                raise TemplateError(f"{where}: {{{name}}} takes no format spec or conversion")
            fields.append(name)
        self.fields = tuple(fields)
        missing = [f for f in required if f not in self.fields]
        if missing:
            raise TemplateError(f"{where}: needs {', '.join('{' + f + '}' for f in missing)} "
                                "so that outputs do not overwrite each other")
        probe = PurePath(template)
        if probe.is_absolute() or ".." in probe.parts:
            raise TemplateError(f"{where}: must be a path relative to the output folder")
        if template.endswith(("/", "\\")) or not template.strip():
            raise TemplateError(f"{where}: must end with a file name")

    def _choices(self):
        return ", ".join("{" + f + "}" for f in self.available)

    def path(self, root, **values):
        """The output path under ``root`` for these field values.

        An empty value (e.g. a track named ``.wav``) is refused rather than
        producing a hidden or nameless file.
        """
        for name in self.fields:
            value = str(values[name])
            if not value or "/" in value or "\\" in value or value in (".", ".."):
                raise TemplateError(f"{{{name}}} would be {value!r}, which cannot be part of "
                                    "a file name")
        return Path(root) / self.template.format(**{k: values[k] for k in self.fields})
