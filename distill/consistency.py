"""Consistency distillation (discrete CD, Song et al. 2023), in flow time with x0 prediction.

The shipped consistency method. Continuous-time CD (sCM, distill/continuous_consistency.py, cd_variant
"continuous") was run side by side on the same batches and diverged from the teacher: this teacher's
instantaneous tangent is 99% its time embedding's high frequencies, which a grid interval averages out
(benchmarks/consistency_tangent.py).

The teacher's probability-flow ODE is discretised on K intervals, times flow_schedule(K, shift) from 1 to 0.
For a target slot we draw k, noise the real frame to t_k, take one teacher Euler step (x0 parameterisation)
to t_{k+1}, and ask the student at (x_{t_k}, t_k) for the x0 that the target network (an EMA of the student,
no gradient) gives at (x_{t_{k+1}}, t_{k+1}): both points lie on one teacher trajectory, so a consistent
student maps them to the same clean frame. At t_{k+1} = 0 the trajectory has arrived and the target is
x_{t_{k+1}} itself (the boundary condition f(x, 0) = x that anchors the chain).

One student serves every step count N that divides K: the student's N-step sampler is the existing
deterministic Euler-x0 loop on flow_schedule(N, shift), whose times are grid points (every K/N-th) and whose
update renoises x0 with the noise implied by x_t, i.e. stays on the same trajectory; a perfect consistency
function gives the same frame at every N. Training one network for all N costs one run instead of three,
and the evaluation logs N = 4, 2, 1 side by side so the default can be chosen from data.
"""
from __future__ import annotations

import torch

from nextframe.distill.windows import Window, per_slot
from nextframe.models.dit import NextFrameDiT
from nextframe.models.flow import add_noise, euler_update, flow_schedule


def cd_grid(intervals: int, shift: float = 1.0) -> torch.Tensor:
    """K + 1 times from 1 to 0 (float64 -> float32 once, so grid points compare exactly with 0)."""
    return torch.tensor(flow_schedule(intervals, shift), dtype=torch.float32)


def student_times(n_steps: int, shift: float = 1.0) -> list[float]:
    """The student's schedule: flow_schedule(N, shift) is every K/N-th grid point of flow_schedule(K, shift)."""
    return flow_schedule(n_steps, shift)


def consistency_target(x_next: torch.Tensor, t_next: torch.Tensor, target_x0: torch.Tensor) -> torch.Tensor:
    """x_next, target_x0 [B, F, C, H, W]; t_next [B, F]. The target network's x0 where t_next > 0, the point
    itself at t_next == 0 (boundary condition)."""
    return torch.where(per_slot(t_next) == 0, x_next, target_x0)


def consistency_loss(student: NextFrameDiT, teacher: NextFrameDiT, target: NextFrameDiT, w: Window,
                     grid: torch.Tensor, motion_weight: float, generator: torch.Generator | None = None) -> torch.Tensor:
    b, f = w.target.shape[:2]
    k = torch.randint(len(grid) - 1, (b, f), generator=generator)
    t, t_next = grid[k], grid[k + 1]
    x_t = add_noise(w.target, t, torch.randn(w.target.shape, generator=generator))
    with torch.no_grad():
        x_next = euler_update(x_t, w.predict(teacher, x_t, t), per_slot(t), per_slot(t_next))
        # one batched call for every slot; at boundary slots (t_next == 0) its output is discarded
        tgt = consistency_target(x_next, t_next, w.predict(target, x_next, t_next))
    pred = w.predict(student, x_t, t)
    # uniform lambda(t); per-pixel motion weighting as in the teacher's loss (paddle and ball are few pixels)
    err = (pred - tgt).square() * w.change_weights(w.target, motion_weight)
    return err.mean()
