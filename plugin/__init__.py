"""pedalboard-compatible processors (duck-typed: pedalboard cannot host Python plugins)."""
from .base import ChannelLayout, Processor
from .chain import Chain
from .separator import StemSeparator, db_to_gain

__all__ = ["Processor", "ChannelLayout", "StemSeparator", "Chain", "db_to_gain"]
