"""The exponential moving average of a model's weights that every trainer keeps and ships (the EMA samples better than
the raw weights at the same step)."""
from __future__ import annotations

import torch


def warmup_decay(decay: float, step: int) -> float:
    """decay, ramped up over the first steps ((1 + step) / (10 + step)) so the average does not keep the random start."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter."""
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p, 1.0 - decay)
