"""Training, fine-tuning, export, evaluation and the model card (``stemboard.train``).

Needs the ``[train]`` extra (torch). It imports the runtime (``stemboard.dsp``,
``stemboard.models``, ``stemboard.plugin``) and scores models through the
shipped separator; nothing in the runtime imports it. Entry points:
``python -m stemboard.train.pipeline``, ``...ablate``, ``...finetune_hq``, ``...card``.
"""
