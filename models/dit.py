"""Next-frame diffusion transformer (NFD-style).

A frame is a grid of patch tokens. Attention is full inside a frame and causal across frames: the frame at
position i sees the clean frames i-context .. i-1 and itself. The same block serves training (many frames at
once under a block mask) and sampling (one frame against a KV cache of the previous clean frames).

Temporal position never enters a key or a value: each layer learns one bias per head and frame distance
(0 = the frame itself .. context), added to the attention logits. Cached keys are therefore valid wherever
they sit in a ring buffer and however long the rollout runs; the caller passes each slot's distance ("age").
Spatial positions (patch index inside a frame) are a learned embedding on the input tokens.

Conditioning per frame: c = SiLU(time_mlp(t) + action_embedding(a)); adaLN-Zero modulation from c. The
previous frame is stacked on each frame's input channels and the output is the change from it
(config.prev_frame_input): without it a small model trained on a CPU budget learned to denoise but not to
read the cache (x0 error from pure noise no better with context than without after 1,600 steps).
Clean context frames carry their own (small) noise level t, so noise augmentation is visible to the model.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nextframe.models.config import ModelConfig


def timestep_features(t: torch.Tensor, n: int = 128) -> torch.Tensor:
    """Sinusoidal features of the flow time t in [0, 1] (scaled by 1000 as in DiT)."""
    half = n // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = (t.float() * 1000.0)[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[..., C, H, W] -> [..., (H/p)*(W/p), C*p*p], row-major over patches."""
    *lead, c, h, w = x.shape
    x = x.reshape(*lead, c, h // p, p, w // p, p)
    n = len(lead)
    x = x.permute(*range(n), n + 1, n + 3, n, n + 2, n + 4)
    return x.reshape(*lead, (h // p) * (w // p), c * p * p)


def unpatchify(x: torch.Tensor, p: int, c: int, h: int, w: int) -> torch.Tensor:
    *lead, _, _ = x.shape
    n = len(lead)
    x = x.reshape(*lead, h // p, w // p, c, p, p)
    x = x.permute(*range(n), n + 2, n, n + 3, n + 1, n + 4)
    return x.reshape(*lead, c, h, w)


# a ball's move changes its pixels at 64x64 by 0.5-1.0 (5th percentile 0.53, validation episode); the refiner's
# own faint errors stay below this, so they cannot hold the gate open and grow from frame to frame
GATE_THRESHOLD = 0.3


class MotionRefiner(nn.Module):
    """frame + conv([frame, prev, prev - prev2]): three 3x3 convs (receptive field 7 px, a ball's move per frame
    is 1-2 px at 64x64). The last conv starts at zero, so adding it to a trained model changes nothing.
    gate_radius > 0: the correction applies only within that many px of where prev2 -> prev changed (by more
    than GATE_THRESHOLD in any channel), so static content is the transformer's alone."""

    def __init__(self, channels: int, hidden: int, gate_radius: int = 0):
        super().__init__()
        self.gate_radius = gate_radius
        self.net = nn.Sequential(nn.Conv2d(3 * channels, hidden, 3, padding=1), nn.GELU(approximate="tanh"),
                                 nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU(approximate="tanh"),
                                 nn.Conv2d(hidden, channels, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, frame, prev, prev2):
        change = prev - prev2
        delta = self.net(torch.cat([frame, prev, change], dim=1))
        if self.gate_radius:
            moved = (change.abs().amax(dim=1, keepdim=True) > GATE_THRESHOLD).to(delta.dtype)
            delta = delta * F.max_pool2d(moved, 2 * self.gate_radius + 1, stride=1, padding=self.gate_radius)
        return frame + delta


def previous_frames(clean: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """clean [B, F, C, H, W] at positions 0..F-1 -> (prev, prev2) [B, len(pos), C, H, W] for frames at `pos`:
    prev = clean frame p-1 (zeros at p=0); prev2 = clean frame p-2, or prev itself where there is none (no
    change), which is what a sampler has after one frame."""
    zeros = torch.zeros_like(clean[:, :1])
    prev = torch.cat([zeros, clean], dim=1)[:, pos]
    prev2 = torch.cat([zeros, clean[:, :1], clean], dim=1)[:, pos]
    return prev, prev2


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, self.heads, self.head_dim = cfg.dim, cfg.heads, cfg.head_dim
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.fc1 = nn.Linear(d, cfg.mlp_ratio * d)
        self.fc2 = nn.Linear(cfg.mlp_ratio * d, d)
        self.modulation = nn.Linear(d, 6 * d)
        # bias per head and frame distance 0..context; ALiBi-like start: nearer frames weigh more
        slopes = torch.tensor([0.5 ** (i + 1) for i in range(cfg.heads)])
        self.distance_bias = nn.Parameter(-slopes[:, None] * torch.arange(cfg.context + 1, dtype=torch.float32))
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def split_heads(self, x):  # [B, S, D] or [S, D] (batch 1) -> [B, H, S, hd]
        b, s = (1, x.shape[0]) if x.dim() == 2 else x.shape[:2]
        return x.reshape(b, s, self.heads, self.head_dim).transpose(1, 2)

    def keys_values(self, x, mod):
        """Only this block's K/V of x [B, S, D] (what forward returns as k, v), without the attention and MLP."""
        shift1, scale1 = (mod.chunk(6, dim=-1) if torch.is_tensor(mod) else mod)[:2]
        _, k, v = self.qkv(modulate(self.norm1(x), shift1, scale1)).chunk(3, dim=-1)
        return self.split_heads(k), self.split_heads(v)

    def forward(self, x, mod, attend):
        """x [B, S, D], or [S, D] for batch 1; mod [B, S or 1, 6D] or its six chunks; attend(q, k, v) -> [B, H, S, hd]
        does the masking."""
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1) if torch.is_tensor(mod) else mod
        h = modulate(self.norm1(x), shift1, scale1)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        a = attend(q, k, v)
        x = x + gate1 * self.proj(a.transpose(1, 2).reshape(x.shape))
        h = modulate(self.norm2(x), shift2, scale2)
        x = x + gate2 * self.fc2(F.gelu(self.fc1(h), approximate="tanh"))
        return x, k, v


class NextFrameDiT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, p, c = cfg.dim, cfg.patch, cfg.channels
        self.patch_embed = nn.Linear(cfg.input_channels * p * p, d)
        self.pos_embed = nn.Parameter(torch.randn(cfg.tokens_per_frame, d) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(128, d), nn.SiLU(), nn.Linear(d, d))
        self.action_embed = nn.Embedding(cfg.n_actions + 1, d)
        nn.init.normal_(self.action_embed.weight, std=0.02)
        if cfg.prev_action_input:
            # zero init: a warm start from a model without it computes exactly what that model did
            self.prev_action_embed = nn.Embedding(cfg.n_actions + 1, d)
            nn.init.zeros_(self.prev_action_embed.weight)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(d, 2 * d)
        self.head = nn.Linear(d, c * p * p)
        for m in (self.final_modulation, self.head):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        if cfg.motion_refiner:
            self.refiner = MotionRefiner(c, cfg.motion_refiner, cfg.refiner_gate)

    # ---- shared pieces -------------------------------------------------------------------------------
    def condition(self, t: torch.Tensor, action: torch.Tensor, prev_action: torch.Tensor | None = None) -> torch.Tensor:
        c = self.time_mlp(timestep_features(t)) + self.action_embed(action)
        if self.cfg.prev_action_input:
            if prev_action is None:
                raise ValueError("NextFrameDiT: this model is conditioned on the previous action; pass prev_action")
            c = c + self.prev_action_embed(prev_action)
        return F.silu(c)

    def embed(self, x: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
        if self.cfg.prev_frame_input:
            x = torch.cat([x, prev], dim=-3)
        return self.patch_embed(patchify(x, self.cfg.patch)) + self.pos_embed

    def output(self, h: torch.Tensor, c: torch.Tensor, prev: torch.Tensor | None,
               prev2: torch.Tensor | None = None) -> torch.Tensor:
        """The denoised frame. With the previous frame as input the head predicts the change from it: an
        untrained head already gives the copy-last-frame prediction, and training only has to learn what moves."""
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        out = self.head(modulate(self.final_norm(h), shift, scale))
        cfg = self.cfg
        out = unpatchify(out, cfg.patch, cfg.channels, cfg.height, cfg.width)
        if not cfg.prev_frame_input:
            return out
        out = out + prev
        if cfg.motion_refiner:
            lead = out.shape[:-3]
            flat = lambda z: z.reshape(-1, *z.shape[-3:])  # noqa: E731
            out = self.refiner(flat(out), flat(prev), flat(prev2)).reshape(*lead, *out.shape[-3:])
        return out

    # ---- many frames at once (training and the no-cache reference) ----------------------------------
    def forward_sequence(self, clean, clean_t, clean_action, noisy, noisy_t, noisy_action, noisy_pos,
                         return_features: bool = False, feature_block: int | None = None):
        """Predict the clean version ("denoised") of each noisy frame from the clean frames before it.

        clean [B, Fc, C, H, W] sit at positions 0..Fc-1 (noise augmentation already applied, level clean_t);
        noisy [B, Fn, C, H, W] sit at positions noisy_pos [Fn] (ints in 0..Fc). Every frame at position p
        sees the clean frames p-context .. p-1 and itself (a noisy frame never sees its clean twin).
        Attention is computed per frame over that window, so cost grows linearly with the frame count.
        Returns denoised frames [B, Fn, C, H, W]; with return_features also the noisy frames' hidden states
        [B, Fn, N, D] after block feature_block (default: the middle one), for a discriminator head (distill/).
        """
        cfg = self.cfg
        b, fc = clean.shape[:2]
        fn = noisy.shape[1]
        n, w, nf = cfg.tokens_per_frame, cfg.context, fc + fn
        noisy_pos = torch.as_tensor(noisy_pos, device=clean.device).long()
        if noisy_pos.numel() != fn or bool((noisy_pos < 0).any()) or bool((noisy_pos > fc).any()):
            raise ValueError(f"forward_sequence: noisy_pos must hold {fn} positions in 0..{fc} (got {noisy_pos.tolist()})")
        pos = torch.cat([torch.arange(fc, device=clean.device), noisy_pos])
        # window slot j of the frame at p holds clean frame p - w + j (distance w - j); slots before frame 0 are empty
        window = pos[:, None] + torch.arange(w, device=pos.device)[None, :]  # index into w empty frames + clean
        distance = torch.arange(w, 0, -1, device=pos.device)
        valid = (window >= w)  # [nf, w]

        frames = torch.cat([clean, noisy], dim=1)
        # the action that led to clean frame p-1 ("no action" at p=0, as after a runtime reset)
        prev_action = torch.cat([torch.full_like(clean_action[:, :1], cfg.no_action), clean_action], dim=1)[:, pos]
        c = self.condition(torch.cat([clean_t, noisy_t], dim=1), torch.cat([clean_action, noisy_action], dim=1),
                           prev_action)
        prev, prev2 = previous_frames(clean, pos)
        x = self.embed(frames, prev).reshape(b, nf * n, cfg.dim)

        def tokens(per_frame):  # [B, F, K] -> [B, F*N, K]
            return per_frame[:, :, None, :].expand(-1, -1, n, -1).reshape(b, nf * n, -1)

        feature_block = cfg.depth // 2 if feature_block is None else feature_block
        if return_features and not 0 <= feature_block < cfg.depth:
            raise ValueError(f"forward_sequence: feature_block must be in 0..{cfg.depth - 1} (got {feature_block})")
        features = None
        for i, blk in enumerate(self.blocks):
            bias_window = blk.distance_bias[:, distance][:, None, :].expand(-1, nf, -1)
            bias_window = bias_window.masked_fill(~valid, float("-inf")).repeat_interleave(n, dim=2)
            bias_self = blk.distance_bias[:, None, :1].expand(-1, nf, n)
            bias = torch.cat([bias_window, bias_self], dim=2)[None, :, :, None, :]  # [1, H, F, 1, (w+1)N]

            def attend(q, k, v, bias=bias):
                hd = cfg.head_dim
                q, k, v = (z.reshape(b, cfg.heads, nf, n, hd) for z in (q, k, v))
                pad = k.new_zeros(b, cfg.heads, w, n, hd)
                kw = torch.cat([pad, k[:, :, :fc]], dim=2)[:, :, window].reshape(b, cfg.heads, nf, w * n, hd)
                vw = torch.cat([pad, v[:, :, :fc]], dim=2)[:, :, window].reshape(b, cfg.heads, nf, w * n, hd)
                out = F.scaled_dot_product_attention(
                    q, torch.cat([kw, k], dim=3), torch.cat([vw, v], dim=3), attn_mask=bias
                )
                return out.reshape(b, cfg.heads, nf * n, hd)

            x, _, _ = blk(x, tokens(blk.modulation(c)), attend)
            if return_features and i == feature_block:
                features = x.reshape(b, nf, n, cfg.dim)[:, fc:]
        h = x.reshape(b, nf, n, cfg.dim)[:, fc:]
        out = self.output(h, c[:, fc:, None, :], prev[:, fc:], prev2[:, fc:])
        return (out, features) if return_features else out

    # ---- one frame against the KV cache (sampling) --------------------------------------------------
    def step(self, x, t, action, prev, cache_k, cache_v, ages, prev_action=None, kv_only: bool = False, prev2=None):
        """One network evaluation for the current frame.

        x [B, C, H, W] (noisy frame, or a clean frame whose K/V is wanted), t [B], action [B] (int64);
        prev [B, C, H, W]: the previous frame as it was cached (zeros before the first frame);
        cache_k / cache_v [L, B, H, S, N, hd] with S = context slots in any order; ages [S] int64: how many
        frames back the slot's frame lies; only ages 1..context are attended (0 marks an empty slot, and a
        slot older than the window, kept so a speculative frame can be rolled back, is ignored too);
        prev_action [B] int64 (models with prev_action_input): the action that led to `prev` (no_action before
        the first frame); prev2 [B, C, H, W] (models with a motion refiner): the frame before prev as cached,
        prev itself when there was none.
        Returns (denoised [B, C, H, W], k [L, B, H, N, hd], v [L, B, H, N, hd]) of the current frame.
        kv_only: return (None, k, v), skipping what only `denoised` needs (the last block's attention and MLP,
        the head): the cache write of a finished frame reads only k and v.
        """
        cfg = self.cfg
        b = x.shape[0]
        n, s, depth = cfg.tokens_per_frame, cache_k.shape[3], cfg.depth
        if cfg.needs_prev2 and prev2 is None:
            raise ValueError("NextFrameDiT: this model has a motion refiner; pass prev2 (the frame before prev)")
        # Shaped for the exported graph, where a frame is a few dozen tokens and every node costs about as much
        # as a small product: batch 1 runs on [N, D] tokens (products become plain Gemms, without the reshapes
        # ONNX Runtime puts around a batched MatMul), and what is the same for every block is done once for all.
        h = self.embed(x, prev)
        c = self.condition(t, action, prev_action)  # [B, D]
        if b == 1:
            h = h[0]
        else:
            c = c[:, None, :]
        # every block's adaptive-norm modulation in one product, split into 6 chunks per block
        weight = torch.cat([blk.modulation.weight for blk in self.blocks])
        bias = torch.cat([blk.modulation.bias for blk in self.blocks])
        mods = F.linear(c, weight, bias).chunk(6 * depth, dim=-1)
        # every block's attention bias [L, 1, H, 1, (S+1)N]: cache slots by age (masked outside the window), then self
        valid = (ages > 0) & (ages <= cfg.context)
        distance_bias = torch.stack([blk.distance_bias for blk in self.blocks])  # [L, H, context+1]
        bias_cache = distance_bias[:, :, ages.clamp(min=0, max=cfg.context)].masked_fill(~valid, float("-inf"))
        bias_cache = bias_cache[..., None].expand(-1, -1, -1, n).reshape(depth, cfg.heads, s * n)
        bias_self = distance_bias[:, :, :1].expand(-1, -1, n)
        biases = torch.cat([bias_cache, bias_self], dim=2)[:, None, :, None, :]
        cache_k = cache_k.reshape(depth, b, cfg.heads, s * n, cfg.head_dim)
        cache_v = cache_v.reshape(depth, b, cfg.heads, s * n, cfg.head_dim)
        new_k, new_v = [], []
        for l, blk in enumerate(self.blocks):
            mod = mods[6 * l:6 * l + 6]

            def attend(q, k, v, ck=cache_k[l], cv=cache_v[l], bias=biases[l]):
                return F.scaled_dot_product_attention(
                    q, torch.cat([ck, k], dim=2), torch.cat([cv, v], dim=2), attn_mask=bias
                )

            if kv_only and l == depth - 1:
                k, v = blk.keys_values(h, mod)
            else:
                h, k, v = blk(h, mod, attend)
            new_k.append(k)
            new_v.append(v)
        denoised = None if kv_only else self.output(h, c, prev, prev2)
        if denoised is not None and denoised.dim() == 3:  # batch 1 without the previous frame added back
            denoised = denoised[None]
        return denoised, torch.stack(new_k), torch.stack(new_v)
