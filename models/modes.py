"""The mask modes, in a module that imports nothing.

The command line's parser offers them (``--mask-mode``) without loading numpy,
the Numba kernels or onnxruntime (issue 25 item 5); :mod:`stemboard.models.manifest`
checks them.
"""
#: How masks are applied: ``"soft"`` divides each by the sum over stems,
#: ``"binary"`` gives each bin wholly to its largest stem.  Chosen at run time
#: (``mask_mode=``), not by the manifest.
MASK_MODES = ("soft", "binary")
