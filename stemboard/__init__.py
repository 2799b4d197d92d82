"""stemboard: neural stem separation inside pedalboard-style effect chains.

Quick start::

    from stemboard import StemSeparator
    sep = StemSeparator()                      # bundled default model ("hq")
    stems = sep.separate(audio, 44100)         # dict of stem -> array
    sep.mute("vocals"); karaoke = sep(audio, 44100)
"""
from functools import lru_cache

from stemboard.dsp import StftGrid, istft, stft
from stemboard.models import CascadeModel, MaskModel, ModelError, load_model
from stemboard.plugin import ABSwitch, Chain, Processor, StemSeparator, StemSplit
from stemboard.plugin.midi import LiveMidi, MidiController, MidiMap
from stemboard.plugin.presets import separator_from_preset, stemsplit_from_preset
from stemboard.presets import Preset, apply_preset, list_presets, load_preset, save_preset
from stemboard.plugin.render import render, render_folder, render_stems

__version__ = "0.1.0"


@lru_cache(maxsize=4)
def _loaded_model(model):
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
    key = None if model is None else str(model)
    return StemSeparator(_loaded_model(key)).separate(audio, sample_rate, stems=stems)


__all__ = ["StemSeparator", "Chain", "StemSplit", "ABSwitch", "Processor", "MaskModel",
           "CascadeModel", "load_model",
           "ModelError", "StftGrid", "stft", "istft", "separate", "Preset", "load_preset",
           "list_presets", "save_preset", "apply_preset", "separator_from_preset",
           "stemsplit_from_preset", "render", "render_stems",
           "render_folder", "MidiMap", "MidiController", "LiveMidi", "__version__"]
