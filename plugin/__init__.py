"""pedalboard-compatible processors (duck-typed: pedalboard cannot host Python plugins).

The names below load on first use (PEP 562 module ``__getattr__``), so a light
module of this room (:mod:`stemboard.plugin.defaults`, which the command line's
parser reads) does not pull in numpy, pedalboard and the models (issue 25 item 5).
"""
from importlib import import_module
from typing import TYPE_CHECKING

# Each public name and the module that defines it.
_EXPORTS = {
    "stemboard.plugin.ab": ("ABSwitch",),
    "stemboard.plugin.base": ("ChannelLayout", "Processor"),
    "stemboard.plugin.chain": ("Chain",),
    "stemboard.plugin.separator": ("StemSeparator", "db_to_gain"),
    "stemboard.plugin.stemsplit": ("StemSplit",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

if TYPE_CHECKING:  # what the names are, for readers, type checkers and tests/test_layers.py
    from stemboard.plugin.ab import ABSwitch
    from stemboard.plugin.base import ChannelLayout, Processor
    from stemboard.plugin.chain import Chain
    from stemboard.plugin.separator import StemSeparator, db_to_gain
    from stemboard.plugin.stemsplit import StemSplit


def __getattr__(name):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'stemboard.plugin' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_MODULE_OF))


__all__ = ["Processor", "ChannelLayout", "StemSeparator", "Chain", "StemSplit", "ABSwitch",
           "db_to_gain"]
