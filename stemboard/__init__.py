"""stemboard: neural stem separation inside pedalboard-style effect chains."""
__version__ = "0.1.0"
