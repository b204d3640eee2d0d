"""Distilled Decoding (DD1, Liu et al. 2024) for the MAR image model: one or two network calls instead of K AR steps.

With the head's deterministic sampler (the probability-flow ODE, models/mar_sampling.py) and a fixed token order,
the teacher is a deterministic map F: (class, noise of all L tokens) -> image. DD trains a student to be F.

- Pairs: draw noise, run the teacher (its sampler and schedule, the order fixed) and keep the image and the
  trajectory: after AR step k, the tokens drawn so far in their places and every other slot still its own noise.
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
from nextframe.models.mar_sampling import generate_tokens


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
        ones = torch.ones(noise.shape[:2], dtype=noise.dtype)
        first = self(noise, ones, label)
        keep = torch.zeros_like(ones)
        keep[:, order[:revealed]] = 1
        state = torch.where(keep[..., None].bool(), first, noise)
        return self(state, 1 - keep, label)


@torch.no_grad()
def teacher_pairs(teacher: MarModel, labels: torch.Tensor, noise: torch.Tensor, order: torch.Tensor,
                  head_steps: list[int], n_ar_steps: int):
    """(final tokens [B, L, D], trajectory states [K, B, L, D], revealed counts [K]) for a fixed order [L]."""
    b = noise.shape[0]
    tokens, states = generate_tokens(teacher, labels, noise, order[None].expand(b, -1), head_steps, n_ar_steps,
                                     keep_states=True)
    return tokens, torch.stack([s for s, _ in states]), [n for _, n in states]


def dd_loss(student: DDStudent, noise, labels, final, states, revealed, order, generator=None):
    """Half the batch from pure noise, half from a random trajectory point (not the last: it is the answer)."""
    b, n, _ = noise.shape
    from_noise = torch.rand(b, generator=generator) < 0.5
    k = torch.randint(0, states.shape[0] - 1, (b,), generator=generator)
    state = torch.where(from_noise[:, None, None], noise, states[k, torch.arange(b)])
    pos = torch.empty(n, dtype=torch.long)
    pos[order] = torch.arange(n)  # rank of each token in the order
    counts = torch.tensor(revealed)[k]
    unknown = torch.where(from_noise[:, None], torch.ones(b, n), (pos[None] >= counts[:, None]).float())
    pred = student(state, unknown, labels)
    w = unknown[..., None]
    return ((pred - final) ** 2 * w).sum() / (w.sum() * final.shape[-1])
