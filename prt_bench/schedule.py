"""The learning-rate schedule of the hand-written training loops: linear warm-up, then a
half cosine down to ``floor`` (a fraction of the peak).  The fine-tuning recipe of language
models uses transformers' ``get_scheduler`` (cosine, linear, constant) instead."""

from __future__ import annotations

import math


def warmup_cosine(step: int, steps: int, warmup: int, *, peak: float = 1.0, floor: float = 0.0) -> float:
    """The learning rate at ``step`` (0-based) of ``steps``: ``peak * (step + 1) / warmup`` during the
    ``warmup`` steps, then cosine from ``peak`` to ``peak * floor``.  With ``peak=1`` it is the
    multiplier ``torch.optim.lr_scheduler.LambdaLR`` takes."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
