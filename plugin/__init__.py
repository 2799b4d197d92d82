"""pedalboard-compatible processors (duck-typed: pedalboard cannot host Python plugins).

The names below load on first use (PEP 562 module ``__getattr__``), so a light
module of this room (:mod:`stemboard.plugin.defaults`, which the command line's
parser reads) does not pull in numpy, pedalboard and the models (issue 25 item 5).
"""
from typing import TYPE_CHECKING

from stemboard.models.lazy import lazy_exports

# Each public name and the module that defines it.
_EXPORTS = {
    "stemboard.plugin.ab": ("ABSwitch",),
    "stemboard.plugin.base": ("ChannelLayout", "Processor"),
    "stemboard.plugin.chain": ("Chain",),
    "stemboard.plugin.separator": ("StemSeparator", "db_to_gain"),
    "stemboard.plugin.stemsplit": ("StemSplit",),
}

if TYPE_CHECKING:  # what the names are, for readers, type checkers and tests/test_layers.py
    from stemboard.plugin.ab import ABSwitch
    from stemboard.plugin.base import ChannelLayout, Processor
    from stemboard.plugin.chain import Chain
    from stemboard.plugin.separator import StemSeparator, db_to_gain
    from stemboard.plugin.stemsplit import StemSplit


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)


__all__ = ["Processor", "ChannelLayout", "StemSeparator", "Chain", "StemSplit", "ABSwitch",
           "db_to_gain"]
