"""stemboard: neural stem separation inside pedalboard-style effect chains.

Quick start::

    from stemboard import StemSeparator
    sep = StemSeparator()                      # bundled offline model
    stems = sep.separate(audio, 44100)         # dict of stem -> array
    sep.mute("vocals"); karaoke = sep(audio, 44100)
"""
from .dsp import StftGrid, istft, stft
from .models import MaskModel, ModelError
from .plugin import Chain, Processor, StemSeparator

__version__ = "0.1.0"


def separate(audio, sample_rate, *, model=None, stems=None):
    """Separate ``audio`` with a (cached) model; returns a dict of stem arrays."""
    return StemSeparator(model).separate(audio, sample_rate, stems=stems)


__all__ = ["StemSeparator", "Chain", "Processor", "MaskModel", "ModelError",
           "StftGrid", "stft", "istft", "separate", "__version__"]
