"""pedalboard-compatible processors (duck-typed: pedalboard cannot host Python plugins)."""
from .ab import ABSwitch
from .base import ChannelLayout, Processor
from .chain import Chain
from .separator import StemSeparator, db_to_gain
from .stemsplit import StemSplit

__all__ = ["Processor", "ChannelLayout", "StemSeparator", "Chain", "StemSplit", "ABSwitch",
           "db_to_gain"]
