"""A class-conditional masked-autoregressive image model with a per-token diffusion head (MAR, Li et al. 2024).

An image is a grid of continuous tokens (raw pixel patches, normalised to std 1). The backbone is a
bidirectional transformer over all tokens plus one class token: known tokens enter as their values, unknown
ones as a learned mask embedding, and each token leaves as a condition vector z. Generation reveals the tokens
in K steps along a random order (models/mar_schedules.py); the tokens revealed at a step are sampled, each on
its own, by the diffusion head: a small MLP that, conditioned on z and the noise level, turns noise into that
token by the probability-flow ODE of rectified flow (x_t = (1 - t) x0 + t eps, velocity eps - x0).

The head predicts the clean token and returns the velocity (x_t - x0_hat) / t: a token of 192 values lies near a
low-dimensional set, which an x0 prediction keeps and a noise prediction has to rebuild (JiT, Li & He 2025); one
Euler step from t = 1 is then exactly x0_hat.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nextframe.models.dit import patchify, timestep_features, unpatchify
from nextframe.models.mar_config import MarConfig

# the velocity divides by t; below this the x0 prediction is used as it is (the last Euler step never goes there)
MIN_T = 0.05


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class Backbone(nn.Module):
    """tokens [B, L, D] (values where known), unknown [B, L] (1 = masked) , label [B] -> z [B, L, dim]."""

    def __init__(self, cfg: MarConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(cfg.token_dim, cfg.dim)
        self.mask_embedding = nn.Parameter(torch.zeros(cfg.dim))
        self.class_embedding = nn.Embedding(len(cfg.classes), cfg.dim)
        self.pos = nn.Parameter(torch.zeros(1, cfg.n_tokens + 1, cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.mask_embedding, std=0.02)
        nn.init.normal_(self.class_embedding.weight, std=0.02)

    def embed_tokens(self, tokens: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
        u = unknown[..., None].to(tokens.dtype)
        # the masked values are zeroed before the embedding, so what a masked slot holds can never leak in
        return self.embed(tokens * (1 - u)) * (1 - u) + self.mask_embedding * u

    def forward_embedded(self, h: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.class_embedding(label)[:, None], h], dim=1) + self.pos
        for blk in self.blocks:
            h = blk(h)
        return self.norm(h[:, 1:])

    def forward(self, tokens: torch.Tensor, unknown: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.forward_embedded(self.embed_tokens(tokens, unknown), label)


class ResBlock(nn.Module):
    """MAR's head block: LayerNorm modulated by the condition (shift, scale, gate), then an MLP."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.ada(c).chunk(3, dim=-1)
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)


class DiffusionHead(nn.Module):
    """x_t [N, D], t [N], z [N, dim] -> velocity [N, D] (via the x0 prediction, see the module doc)."""

    def __init__(self, cfg: MarConfig):
        super().__init__()
        w = cfg.head_width
        self.inp = nn.Linear(cfg.token_dim, w)
        self.time = nn.Sequential(nn.Linear(128, w), nn.SiLU(), nn.Linear(w, w))
        self.cond = nn.Linear(cfg.dim, w)
        self.blocks = nn.ModuleList(ResBlock(w) for _ in range(cfg.head_depth))
        self.final_norm = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(w, 2 * w))
        self.out = nn.Linear(w, cfg.token_dim)
        nn.init.zeros_(self.final_ada[1].weight)
        nn.init.zeros_(self.final_ada[1].bias)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        c = self.time(timestep_features(t).to(x_t.dtype)) + self.cond(z)
        h = self.inp(x_t)
        for blk in self.blocks:
            h = blk(h, c)
        shift, scale = self.final_ada(c).chunk(2, dim=-1)
        return self.out(self.final_norm(h) * (1 + scale) + shift)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x0 = self.predict_x0(x_t, t, z)
        return (x_t - x0) / t.clamp_min(MIN_T)[:, None]


class MarModel(nn.Module):
    def __init__(self, cfg: MarConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        self.head = DiffusionHead(cfg)

    # images <-> tokens -------------------------------------------------------------------------------------------
    def to_tokens(self, images_u8: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] -> normalised tokens [B, L, D]."""
        x = images_u8.float() / 127.5 - 1.0
        return (patchify(x, self.cfg.patch) - self.cfg.token_mean) / self.cfg.token_std

    def to_images(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, L, D] -> uint8 [B, C, H, W] (rounded, clipped)."""
        c = self.cfg
        x = unpatchify(tokens * c.token_std + c.token_mean, c.patch, c.channels, c.height, c.width)
        return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)

    # training ----------------------------------------------------------------------------------------------------
    def loss(self, tokens: torch.Tensor, label: torch.Tensor, generator: torch.Generator | None = None,
             noise_draws: int = 2) -> torch.Tensor:
        """MAR's objective: mask a ratio from a truncated normal on [0.7, 1] of the tokens along a random order,
        and score the head's velocity on the masked tokens only, each with `noise_draws` noise levels."""
        b, n, d = tokens.shape
        dev = tokens.device
        ratio = truncated_normal_ratio(b, generator, dev)
        n_masked = (ratio * n).ceil().clamp(1, n).long()
        rank = torch.rand(b, n, generator=generator, device=dev).argsort(1).argsort(1)  # position in a random order
        unknown = (rank < n_masked[:, None]).float()
        z = self.backbone(tokens, unknown, label)
        sel = unknown.bool()
        x0 = tokens[sel].repeat(noise_draws, 1)
        zc = z[sel].repeat(noise_draws, 1)
        # logit-normal noise levels (SD3's default for rectified flow): most draws mid-range, where a token is decided
        t = torch.sigmoid(torch.randn(x0.shape[0], generator=generator, device=dev))
        eps = torch.randn(x0.shape, generator=generator, device=dev)
        x_t = (1 - t[:, None]) * x0 + t[:, None] * eps
        v = self.head(x_t, t, zc)
        return F.mse_loss(v, eps - x0)


def truncated_normal_ratio(b: int, generator, device) -> torch.Tensor:
    """Mask ratios from N(1, 0.25) truncated to [0.7, 1] (MAR), by inverse-CDF sampling."""
    lo, hi, mu, sigma = 0.7, 1.0, 1.0, 0.25
    cdf = lambda x: 0.5 * (1 + math.erf((x - mu) / (sigma * math.sqrt(2))))  # noqa: E731
    u = torch.rand(b, generator=generator, device=device) * (cdf(hi) - cdf(lo)) + cdf(lo)
    return (mu + sigma * math.sqrt(2) * torch.erfinv(2 * u - 1)).clamp(lo, hi)
