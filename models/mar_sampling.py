"""The reference masked-AR sampler in PyTorch: what the C++ runtime (csrc/ar_loop.cpp) must reproduce for the same
noise and order, and what Distilled Decoding's teacher map is made of.

Everything random is an input: `noise` [B, L, D] holds each token's starting noise and `order` [B, L] the order in
which tokens are revealed (order[b, i] = the token revealed i-th). The head integrates the probability-flow ODE with
Euler steps from that noise, so given (label, noise, order) the image is a deterministic function: the map F that
Distilled Decoding learns in one step.
"""
from __future__ import annotations

import torch

from nextframe.models.mar import MarModel
from nextframe.models.mar_schedules import flow_times, tokens_per_step


def random_order(b: int, n_tokens: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.rand(b, n_tokens, generator=generator).argsort(1)


def head_ode(model: MarModel, x: torch.Tensor, z: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Euler steps of the head's probability-flow ODE from noise x [N, D] at t = 1 to a token at t = 0."""
    times = flow_times(n_steps)
    for t, t_next in zip(times[:-1], times[1:]):
        v = model.head(x, torch.full((x.shape[0],), t, dtype=x.dtype), z)
        x = x + (t_next - t) * v
    return x


@torch.no_grad()
def generate_tokens(model: MarModel, label: torch.Tensor, noise: torch.Tensor, order: torch.Tensor,
                    head_steps: list[int], n_ar_steps: int, keep_states: bool = False):
    """Tokens [B, L, D] (and, with keep_states, the trajectory: after each AR step k, the tokens revealed so far in
    their places and every other token still its starting noise, plus the count revealed)."""
    b, n, d = noise.shape
    if len(head_steps) != n_ar_steps:
        raise ValueError(f"mar sampler: {len(head_steps)} head step counts for {n_ar_steps} AR steps")
    tokens = torch.zeros_like(noise)
    unknown = torch.ones(b, n, dtype=noise.dtype)
    states = []
    start = 0
    rows = torch.arange(b)[:, None]
    for k, count in enumerate(tokens_per_step(n_ar_steps, n)):
        z = model.backbone(tokens, unknown, label)
        idx = order[:, start:start + count]  # [B, count]
        x = head_ode(model, noise[rows, idx].reshape(-1, d), z[rows, idx].reshape(-1, z.shape[-1]), head_steps[k])
        tokens[rows, idx] = x.reshape(b, count, d)
        unknown[rows, idx] = 0
        start += count
        if keep_states:
            states.append((torch.where(unknown[..., None].bool(), noise, tokens), start))
    return (tokens, states) if keep_states else tokens
