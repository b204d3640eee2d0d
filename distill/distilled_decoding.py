"""Distilled Decoding (DD1, Liu et al. 2024) for the MAR image model: one or two network calls instead of K AR steps.

With the head's deterministic sampler (the probability-flow ODE, models/mar_sampling.py) and a fixed token order,
the teacher is a deterministic map F: (class, noise of all L tokens) -> image. DD trains a student to be F.

- Pairs: draw noise, run the teacher (its sampler and schedule, the order fixed; the C++ runtime does it) and keep
  the image. The trajectory needs no storing: after AR step k it is the final tokens at the first positions of the
  order (a drawn token never changes) and every other slot still its own noise.
- Student: the teacher's backbone and head (initialised from them) plus one learned embedding that marks a slot as
  holding noise. Every slot enters as its value (a token, or the noise of a token not yet drawn); the backbone gives
  each slot its z, and each noise slot becomes head.predict_x0(noise, t=1, z): one Euler step of the head's ODE,
  the whole trajectory of that token at once. Token slots pass through.
- Loss: the student's tokens against the teacher's final tokens, from pure noise and from trajectory points.
- Two-step sampling (DD1's variant): call once from noise, keep the first m tokens of the order from that result,
  restore the noise everywhere else (a point the teacher's trajectory could have passed through) and call again.

How this differs from DD1: DD1's teachers have discrete tokens, and its map is built from the closed-form flow
that carries a Gaussian to a mixture of Diracs at the codebook entries (the per-token distribution the AR model
outputs), which makes F exact. Here tokens are continuous and the per-token distribution is the diffusion head's,
so F is the head's own ODE solved numerically (Euler, the teacher's schedule): the pairs are exact samples of that
numerical map, not of an analytic flow, and the student learns the map the runtime actually runs.
"""
from __future__ import annotations

import torch
from torch import nn

from nextframe.models.mar import MarModel
from nextframe.models.mar_config import MarConfig


class DDStudent(MarModel):
    def __init__(self, cfg: MarConfig):
        super().__init__(cfg)
        self.noise_embedding = nn.Parameter(torch.zeros(cfg.dim))

    @staticmethod
    def from_teacher(teacher: MarModel) -> "DDStudent":
        s = DDStudent(teacher.cfg)
        s.load_state_dict(teacher.state_dict(), strict=False)
        with torch.no_grad():
            s.noise_embedding.copy_(teacher.backbone.mask_embedding)
        return s

    def forward(self, state: torch.Tensor, unknown: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """state [B, L, D] (tokens, or noise where unknown = 1), unknown [B, L], label [B] -> tokens [B, L, D]."""
        u = unknown[..., None].to(state.dtype)
        h = self.backbone.embed(state) + self.noise_embedding * u
        z = self.backbone.forward_embedded(h, label)
        b, n, d = state.shape
        ones = torch.ones(b * n, dtype=state.dtype, device=state.device)
        x0 = self.head.predict_x0(state.reshape(b * n, d), ones, z.reshape(b * n, -1)).reshape(b, n, d)
        return torch.where(u.bool(), x0, state)

    def two_step(self, noise: torch.Tensor, label: torch.Tensor, order: torch.Tensor, revealed: int) -> torch.Tensor:
        first = self(noise, torch.ones(noise.shape[:2], dtype=noise.dtype), label)
        state, unknown = trajectory_state(noise, first, order, torch.full((noise.shape[0],), revealed))
        return self(state, unknown, label)


def trajectory_state(noise: torch.Tensor, final: torch.Tensor, order: torch.Tensor, revealed: torch.Tensor):
    """The teacher's trajectory point after `revealed` [B] tokens of the order [L]: a token once drawn never changes,
    so it is the final tokens at the first `revealed` positions of the order and the noise elsewhere.
    Returns (state [B, L, D], unknown [B, L])."""
    n = noise.shape[1]
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    unknown = (rank[None] >= revealed[:, None]).to(noise.dtype)
    return torch.where(unknown[..., None].bool(), noise, final), unknown


def dd_loss(student: DDStudent, noise, labels, final, order, revealed_choices: list[int], generator=None):
    """Mean squared token error on the slots the student must fill: half the batch from pure noise, half from a
    trajectory point after one of the teacher's AR steps (revealed_choices; the last one, all tokens, excluded)."""
    b = noise.shape[0]
    choices = torch.tensor([0] + list(revealed_choices))
    pick = torch.where(torch.rand(b, generator=generator) < 0.5, 0,
                       torch.randint(1, len(choices), (b,), generator=generator))
    state, unknown = trajectory_state(noise, final, order, choices[pick])
    pred = student(state, unknown, labels)
    w = unknown[..., None]
    return ((pred - final) ** 2 * w).sum() / (w.sum() * final.shape[-1])
