"""pedalboard-compatible processors (duck-typed: pedalboard cannot host Python plugins)."""
from stemboard.plugin.ab import ABSwitch
from stemboard.plugin.base import ChannelLayout, Processor
from stemboard.plugin.chain import Chain
from stemboard.plugin.separator import StemSeparator, db_to_gain
from stemboard.plugin.stemsplit import StemSplit

__all__ = ["Processor", "ChannelLayout", "StemSeparator", "Chain", "StemSplit", "ABSwitch",
           "db_to_gain"]
