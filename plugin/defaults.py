"""Values the processors, renders and the command line's parser share.

This module imports nothing, so ``stemboard --help`` can show the choices and
defaults without loading numpy, pedalboard or the models (issue 25 item 5).
"""
#: Samples per block that ``Processor.process`` and the renders read, process and write.
DEFAULT_BUFFER_SIZE = 8192
#: The formats ``stemboard.plugin.audio`` writes (what pedalboard.io encodes on every platform).
WRITE_FORMATS = ("wav", "flac", "aiff", "ogg", "mp3")
