"""stemboard: neural stem separation inside pedalboard-style effect chains.

Quick start::

    from stemboard import StemSeparator
    sep = StemSeparator()                      # bundled default model ("hq")
    stems = sep.separate(audio, 44100)         # dict of stem -> array
    sep.mute("vocals"); karaoke = sep(audio, 44100)
"""
from functools import lru_cache
from typing import TYPE_CHECKING

from stemboard.models.lazy import lazy_exports

__version__ = "0.1.0"

# Each public name and the module that defines it. They load on first use (PEP 562
# module __getattr__), so `import stemboard` and the CLI's --help do not pay for the
# Numba kernels and onnxruntime until something needs them.
_EXPORTS = {
    "stemboard.dsp": ("StftGrid", "stft", "istft"),
    "stemboard.models": ("CascadeModel", "MaskModel", "ModelError", "load_model"),
    "stemboard.plugin": ("ABSwitch", "Chain", "Processor", "StemSeparator", "StemSplit"),
    "stemboard.plugin.midi": ("LiveMidi", "MidiController", "MidiMap"),
    "stemboard.plugin.presets": ("separator_from_preset", "stemsplit_from_preset"),
    "stemboard.plugin.render": ("render", "render_folder", "render_stems"),
    "stemboard.presets": ("Preset", "apply_preset", "list_presets", "load_preset",
                          "save_preset"),
}
# Subpackages reachable as attributes (`stemboard.plugin.midi`) before anyone imported them.
_SUBPACKAGES = ("dsp", "models", "plugin", "presets")

if TYPE_CHECKING:  # what the names are, for readers, type checkers and tests/test_layers.py
    from stemboard.dsp import StftGrid, istft, stft
    from stemboard.models import CascadeModel, MaskModel, ModelError, load_model
    from stemboard.plugin import ABSwitch, Chain, Processor, StemSeparator, StemSplit
    from stemboard.plugin.midi import LiveMidi, MidiController, MidiMap
    from stemboard.plugin.presets import separator_from_preset, stemsplit_from_preset
    from stemboard.plugin.render import render, render_folder, render_stems
    from stemboard.presets import Preset, apply_preset, list_presets, load_preset, save_preset


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS, subpackages=_SUBPACKAGES)


@lru_cache(maxsize=4)
def _loaded_model(model):
    # Deferred with the rest of the top layer (see _EXPORTS).
    from stemboard.models import load_model

    return load_model(model)


def separate(audio, sample_rate, *, model=None, stems=None):
    """Separate ``audio`` into stems in one call.

    Parameters
    ----------
    audio : ndarray, shape (samples,), (channels, samples) or (samples, channels)
    sample_rate : float
    model : str or Path, optional
        Bundled model name, ONNX path or cascade manifest; loaded once and cached.
    stems : list of str, optional

    Returns
    -------
    dict of str to ndarray, each shaped like ``audio``.
    """
    # Deferred with the rest of the top layer (see _EXPORTS).
    from stemboard.plugin import StemSeparator

    key = None if model is None else str(model)
    return StemSeparator(_loaded_model(key)).separate(audio, sample_rate, stems=stems)


__all__ = ["StemSeparator", "Chain", "StemSplit", "ABSwitch", "Processor", "MaskModel",
           "CascadeModel", "load_model",
           "ModelError", "StftGrid", "stft", "istft", "separate", "Preset", "load_preset",
           "list_presets", "save_preset", "apply_preset", "separator_from_preset",
           "stemsplit_from_preset", "render", "render_stems",
           "render_folder", "MidiMap", "MidiController", "LiveMidi", "__version__"]
