"""Rectified-flow objective and the fixed-step sampler schedule.

x_t = (1 - t) * x0 + t * eps, t in [0, 1]. The network predicts the clean frame x0 ("denoised"), not the
velocity eps - x0: a v-predicting network must carry the input noise through itself to cancel it, which a
small model trained briefly does badly (speckled samples, x0 error 0.012 from pure noise where copying the
previous frame gives 0.001). With x0 prediction an Euler step is a convex blend of x_t and the prediction.
Sampling runs from t = 1 (pure noise) to t = 0 over a fixed list of times (a schedule is data: the exporter
writes it to the bundle and the runtime replays it, so it is never recomputed per frame).
"""
from __future__ import annotations

import torch


def add_noise(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    t = t.reshape(*t.shape, *([1] * (x0.dim() - t.dim())))
    return (1.0 - t) * x0 + t * eps


def sample_train_times(shape, generator=None, device=None, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """Logit-normal(mean, std) times (SD3). A next frame is mostly decided by its context, which only the
    high-noise steps must read (at low noise the frame itself shows it), so world models want mean > 0:
    with mean 0 a model learns to denoise well while ignoring the context, and fails from pure noise."""
    return torch.sigmoid(mean + std * torch.randn(shape, generator=generator, device=device))


def x0_loss_weight(t: torch.Tensor) -> torch.Tensor:
    """Weight of the x0 error at time t: 1 / (t^2 + (1-t)^2) (1..2, the velocity's scale). The rectified-flow
    v loss without its ~1/t^2 weight on nearly clean inputs, which would drown the high-noise steps that read
    the context."""
    return 1.0 / (t.square() + (1 - t).square())


def is_schedule(times, strictly: bool = True) -> bool:
    """times run from 1.0 down to 0.0, at least 2 entries, each falling below the one before (strictly) or never
    rising above it (a zero-length step does nothing, which an exporter may tolerate and a user's choice should not)."""
    t = [float(v) for v in times]
    falls = all(b < a for a, b in zip(t, t[1:])) if strictly else all(b <= a for a, b in zip(t, t[1:]))
    return len(t) >= 2 and t[0] == 1.0 and t[-1] == 0.0 and falls


def flow_schedule(n_steps: int, shift: float = 1.0) -> list[float]:
    """Times from 1 to 0, n_steps + 1 entries. shift > 1 spends more steps at high noise (SD3's time shift)."""
    if n_steps < 1:
        raise ValueError(f"schedule: n_steps must be at least 1 (got {n_steps})")
    if shift <= 0:
        raise ValueError(f"schedule: shift must be positive (got {shift})")
    ts = []
    for i in range(n_steps + 1):
        u = 1.0 - i / n_steps
        ts.append(shift * u / (1.0 + (shift - 1.0) * u))
    return ts


def euler_update(x: torch.Tensor, denoised: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """One Euler step of the flow ODE, velocity (x - denoised) / t: x_next = denoised + (t_next / t) * (x - denoised)."""
    return denoised + (t_next / t) * (x - denoised)
