"""Consistency distillation (discrete CD, Song et al. 2023) for frame-stack teachers.

As distill/consistency.py for the transformer: a real frame is noised to a grid time t_k, one teacher Euler
step takes it to t_{k+1} on the same probability-flow trajectory, and the student at (x_{t_k}, t_k) must give
the frame that the target network (an EMA of the student, no gradient) gives at (x_{t_{k+1}}, t_{k+1}). The
boundary f(x, 0) = x needs no special case: the U-Net's preconditioning is the identity at t = 0.
"""
from __future__ import annotations

import torch

from nextframe.models.unet import FrameStackUNet
from nextframe.training.unet_trainer import ContextBatch, change_weights


def unet_consistency_loss(student: FrameStackUNet, teacher: FrameStackUNet, target: FrameStackUNet,
                          batch: ContextBatch, grid: torch.Tensor, motion_weight: float, bf16: bool,
                          generator=None) -> torch.Tensor:
    b, dev = batch.target.shape[0], batch.target.device
    k = torch.randint(len(grid) - 1, (b,), generator=generator, device=dev)
    t, t_next = grid[k], grid[k + 1]
    x_t = (1 - t)[:, None, None, None] * batch.target + t[:, None, None, None] * torch.randn(
        batch.target.shape, generator=generator, device=dev)
    with torch.no_grad():
        d = batch.predict(teacher, x_t, t, bf16)
        x_next = d + (t_next / t)[:, None, None, None] * (x_t - d)
        goal = batch.predict(target, x_next, t_next, bf16)
    pred = batch.predict(student, x_t, t, bf16)
    weight = change_weights(batch.prev_real, batch.target, motion_weight)
    return ((pred - goal).square() * weight).mean()
