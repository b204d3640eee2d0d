"""Continuous-time consistency distillation (sCM-style, Lu & Song 2024), in flow time with x0 prediction.

Measured on the shipped teacher it diverges where discrete CD converges (README, "Distillation"): 99% of this
teacher's tangent is the time embedding's high frequencies (benchmarks/consistency_tangent.py).

Discrete CD (distill/consistency.py) asks the student to agree with its EMA one teacher Euler step further
down the trajectory. Its continuous limit needs no step and no target network: along the teacher's
probability-flow ODE, dx/dt = v_T = (x_t - x0_T) / t, a consistency function f is constant, so the student is
pushed against its own total derivative df/dt = d/dt f(x_t, t), taken with one forward-mode JVP through the
network (tangent (v_T, 1)) at the student's current weights, without gradient (theta^- = stopgrad theta).

The boundary condition f(x, 0) = x is what anchors a consistency function (without it any function constant
along trajectories, f = 0 included, has zero tangent). sCM builds it into the parametrisation; an
x0-predicting network has no such structure, so training uses
    f(x_t, t) = x_t + s(t) (x0_net(x_t, t) - x_t),   s(t) = min(1, t / BOUNDARY_T),
which is the network's x0 itself at every t >= BOUNDARY_T (all the student's sampler times: the exported graph
is unchanged) and the identity at t = 0. Written with f's velocity v = (x_t - f) / t,
    df/dt = (v_T - v) - t dv/dt = (1 - r) (v_T - v) + r * JVP,   at r = 1,
where the first term only compares the student's velocity with the teacher's (a flow-matching-like signal)
and the second involves the network's own derivative, which is what makes consistency training unstable
early; sCM's tangent warm-up ramps r from 0 to 1. The tangent is then normalised per frame, g / (rms(g) + c),
so frames whose derivative is huge (near t = 0, or where the time embedding's high frequencies dominate)
cannot take over the batch. Loss per frame: mean((f - sg(f - g))^2) weighted by exp(-w(t)) plus w(t), with
w a small learned function of t (sCM's adaptive weighting: it learns the loss scale per noise level, so the
noise levels contribute alike). Times are logit-normal, the flow-time form of sCM's log-normal noise levels.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from nextframe.distill.windows import Window, per_slot
from nextframe.models.dit import NextFrameDiT
from nextframe.models.flow import add_noise, sample_train_times

T_MIN = 0.005  # v = (x_t - f) / t: no time below this (the 1 / t would only amplify float error)
BOUNDARY_T = 0.05  # f blends from the identity at t = 0 to the network's x0 at this t and above


class AdaptiveTimeWeight(nn.Module):
    """w(t): log of the loss scale at flow time t, from a few Fourier features (starts at 0: plain MSE)."""

    def __init__(self, n_freqs: int = 8):
        super().__init__()
        self.register_buffer("freqs", torch.arange(1, n_freqs + 1, dtype=torch.float32) * math.pi, persistent=False)
        self.linear = nn.Linear(2 * n_freqs, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        a = t[..., None].float() * self.freqs
        return self.linear(torch.cat([a.cos(), a.sin()], dim=-1))[..., 0]


def warmup_ratio(step: int, warmup_steps: int) -> float:
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


def normalise_tangent(g: torch.Tensor, c: float) -> torch.Tensor:
    """g / (rms(g) + c) per frame (g [B, F, C, H, W]): rms, not the norm, so the scale does not depend on the
    frame size."""
    rms = g.square().mean(dim=(2, 3, 4), keepdim=True).sqrt()
    return g / (rms + c)


def consistency_function(model: NextFrameDiT, w: Window, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """f(x_t, t) with the boundary built in (module docstring); the network's x0 wherever t >= BOUNDARY_T."""
    s = per_slot((t / BOUNDARY_T).clamp(max=1.0))
    return x_t + s * (w.predict(model, x_t, t) - x_t)


def jvp(fn, primals: tuple, tangents: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.func.jvp, without the DeprecationWarning torch raises when its forward-AD decompositions load
    through torch.jit.script (once per process; pytest runs with warnings as errors)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=DeprecationWarning)
        return torch.func.jvp(fn, primals, tangents)


def consistency_tangent(student: NextFrameDiT, teacher: NextFrameDiT, w: Window, x_t: torch.Tensor,
                        t: torch.Tensor, r: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(the student's f at (x_t, t) with its autograd graph, df/dt (no graph)) for frames x_t at times t [B, F]."""
    with torch.no_grad():
        v_teacher = (x_t - w.predict(teacher, x_t, t)) / per_slot(t)
    f, df_dt = jvp(lambda x, tt: consistency_function(student, w, x, tt), (x_t, t), (v_teacher, torch.ones_like(t)))
    df_dt = df_dt.detach()
    v_student = (x_t - f.detach()) / per_slot(t)
    return f, (1.0 - r) * (v_teacher - v_student) + r * df_dt


def continuous_consistency_loss(student: NextFrameDiT, teacher: NextFrameDiT, weight: AdaptiveTimeWeight,
                                w: Window, r: float, tangent_c: float, time_mean: float, time_std: float,
                                motion_weight: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    t = sample_train_times(w.target.shape[:2], generator=generator, mean=time_mean, std=time_std).clamp_min(T_MIN)
    x_t = add_noise(w.target, t, torch.randn(w.target.shape, generator=generator))
    f, g = consistency_tangent(student, teacher, w, x_t, t, r)
    target = (f.detach() - normalise_tangent(g, tangent_c)).detach()
    err = ((f - target).square() * w.change_weights(w.target, motion_weight)).mean(dim=(2, 3, 4))  # [B, F]
    log_w = weight(t)
    loss = (err * torch.exp(-log_w) + log_w).mean()
    return loss, {"consistency_mse": err.mean().item(), "tangent_rms": g.square().mean().sqrt().item()}
