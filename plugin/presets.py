"""Processors built from a preset: the factory side of :mod:`stemboard.presets`.

The presets room below holds the JSON data, its validation and its loader;
building a ``StemSeparator`` or ``StemSplit`` from a preset needs the
processors, so it lives here, in the room that owns them.
"""
from stemboard.plugin.separator import StemSeparator
from stemboard.plugin.stemsplit import StemSplit
from stemboard.presets import load_preset


def separator_from_preset(preset, model=None, **kwargs):
    """A ``StemSeparator`` set up by a preset.

    Parameters
    ----------
    preset : Preset, str or Path
        A ``Preset``, a preset name (user folder, then built-in) or a JSON path.
    model : str, Path or MaskModel, optional
        Overrides the preset's model (tests pass a fixture model).
    **kwargs
        Passed on to ``StemSeparator`` (``num_threads``, ``providers``).

    Returns
    -------
    StemSeparator
        With the preset's model, mask mode, stem gains and mix.

    Raises
    ------
    PresetError
        An unknown or invalid preset, or one naming a stem the model lacks.
    """
    preset = load_preset(preset)
    sep = StemSeparator(preset.resolved_model(model), mask_mode=preset.mask_mode, **kwargs)
    return preset.apply(sep)


def stemsplit_from_preset(preset, branches=None, *, model=None, **kwargs):
    """A ``StemSplit`` (time-domain, sample-accurate gains) set up by a preset.

    Parameters
    ----------
    preset : Preset, str or Path
    branches : dict of str to processor, optional
        Per-stem chains, as ``StemSplit`` takes them.
    model : str, Path or MaskModel, optional
        Overrides the preset's model.
    **kwargs
        Passed on to ``StemSplit``.

    Returns
    -------
    StemSplit
    """
    preset = load_preset(preset)
    sep = separator_from_preset(preset, model)
    return preset.apply(StemSplit(branches, separator=sep, **kwargs))


__all__ = ["separator_from_preset", "stemsplit_from_preset"]
