"""Trajectory distillation for frame-stack teachers: the student maps the start of the teacher's probability-
flow trajectory straight to its end.

For a context and a noise draw eps, the teacher's deterministic Euler sampler over flow_schedule(N, shift)
defines one frame x_T(eps). The student, a copy of the teacher, learns x_T from (eps, t = 1) in one step
(Luhman & Luhman 2021; the continuous-token counterpart of Distilled Decoding's noise -> image map), and in a
second step from the point its own runtime sampler reaches at mid_time: x_mid = (1 - m) f(eps, 1) + m eps,
the Euler update from t = 1 (DD1's two-step variant, trained on the input the sampler will actually give it).
Because the map is deterministic, the regression target is one sharp frame per noise draw, not the blurred
mean a regression on real frames converges to where the future is uncertain.
"""
from __future__ import annotations

import torch

from nextframe.models.flow import flow_schedule
from nextframe.models.unet import FrameStackUNet
from nextframe.training.unet_trainer import ContextBatch, change_weights


@torch.no_grad()
def teacher_sample(teacher: FrameStackUNet, batch: ContextBatch, noise: torch.Tensor, times: list[float],
                   bf16: bool) -> torch.Tensor:
    x = noise
    b = noise.shape[0]
    for t, t_next in zip(times[:-1], times[1:]):
        d = batch.predict(teacher, x, torch.full((b,), t, device=x.device), bf16)
        x = d + (t_next / t) * (x - d)
    return x.clamp(-1.0, 1.0)


def trajectory_loss(student: FrameStackUNet, teacher: FrameStackUNet, batch: ContextBatch, teacher_times: list[float],
                    mid_time: float, motion_weight: float, bf16: bool, generator=None) -> torch.Tensor:
    b, dev = batch.target.shape[0], batch.target.device
    eps = torch.randn(batch.target.shape, generator=generator, device=dev)
    goal = teacher_sample(teacher, batch, eps, teacher_times, bf16)
    weight = change_weights(batch.ctx[:, -1], goal, motion_weight)
    one = batch.predict(student, eps, torch.ones(b, device=dev), bf16)
    x_mid = (1 - mid_time) * one.detach() + mid_time * eps
    two = batch.predict(student, x_mid, torch.full((b,), mid_time, device=dev), bf16)
    return ((one - goal).square() * weight).mean() + ((two - goal).square() * weight).mean()


def teacher_times(n_steps: int, shift: float) -> list[float]:
    return flow_schedule(n_steps, shift)
