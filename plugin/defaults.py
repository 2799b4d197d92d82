"""Values the processors, renders and the command line's parser share.

This module imports nothing, so ``stemboard --help`` can show the choices and
defaults without loading numpy, pedalboard or the models (issue 25 item 5).
"""
#: Samples per block that ``Processor.process`` and the renders read, process and write.
DEFAULT_BUFFER_SIZE = 8192
#: Samples per block of the separation renders (``render_stems``; ``stemboard separate``,
#: ``remix`` and ``batch``). Much of a block's cost is fixed: one ONNX Runtime call, and
#: calls under 64 frames run the kernels on one thread. At 8192 samples (16 frames) a
#: 10-minute file took 1.43x as long as at this size, which costs about 20 MiB more
#: (docs/benchmarks.md, Memory). The output does not depend on it.
SEPARATION_BUFFER_SIZE = 1 << 16
#: The formats ``stemboard.plugin.audio`` writes (what pedalboard.io encodes on every platform).
WRITE_FORMATS = ("wav", "flac", "aiff", "ogg", "mp3")
