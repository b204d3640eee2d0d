"""Frame-stack U-Net world model (DIAMOND-style), at the game's native resolution.

The last `context` frames are stacked on the channels of the noisy frame; the actions that led to them and
the action that leads to the new frame condition every block (adaptive group norm), with the noise level and
the context-noise level. No attention and no cache: the network sees the past only through the stacked
frames, so the runtime keeps a short ring of frames instead of keys and values.

Resolution: frames are padded to a multiple of the total stride and folded losslessly into channels
(space-to-depth, 4x4 pixels per cell for Atari), so a 2x4-pixel ball reaches the network at full detail and
the output unfolds back to native pixels. A 64x64 model cannot draw a ball a user sees (unet_config.py).

Diffusion in rectified-flow time (x_t = (1 - t) x0 + t eps, the bundle's sampler convention) of the change
from the last context frame: 0.05-0.2% of Breakout's pixels change per step, and the whole game is in them.
With prev the last context frame, z_t = x_t - (1 - t) prev is the noised change (z0 = x0 - prev), and EDM's
preconditioning, rewritten in t so nothing diverges at t = 1 (pure noise), denoises it:
    sigma = t / (1 - t),  den = sqrt(t^2 + sd^2 (1 - t)^2)
    c_in = 1 / den,  c_skip = sd^2 (1 - t) / den^2,  c_out = t sd / den,  c_noise = log(sigma) / 4
    denoised = prev + c_skip z_t + c_out F(c_in z_t, ...)
Static content (walls, bricks, score) is therefore copied exactly, and a narrow first level only has to carry
what moves. At t = 0 the denoiser is the identity (c_skip = 1, c_out = 0): the consistency boundary holds by
design. sd stays at 0.5 although the change's std is 0.02-0.04: the changed pixels are of order 1, and a
small sd would scale them to ~70 at low noise (c_in).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nextframe.models.unet_config import UNetConfig

T_EPS = 1e-4  # c_noise clamps t to [T_EPS, 1 - T_EPS]


def preconditioning(t: torch.Tensor, sigma_data: float):
    """(c_in, c_skip, c_out, c_noise), each shaped like t."""
    t = t.float()
    sd2 = sigma_data * sigma_data
    den2 = t * t + sd2 * (1 - t) * (1 - t)
    den = den2.sqrt()
    tc = t.clamp(T_EPS, 1 - T_EPS)
    c_noise = torch.log(tc / (1 - tc)) / 4
    return 1 / den, sd2 * (1 - t) / den2, t * sigma_data / den, c_noise


def fold(x: torch.Tensor, cfg: UNetConfig, pad_value: float = -1.0) -> torch.Tensor:
    """[B, C, H, W] -> [B, C * fold^2, H' / fold, W' / fold] after padding to H' x W' (frames: black, -1;
    changes: none, 0)."""
    top, bottom, left, right = cfg.pad
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom), value=pad_value)
    return F.pixel_unshuffle(x, cfg.fold)


def unfold(x: torch.Tensor, cfg: UNetConfig) -> torch.Tensor:
    top, _, left, _ = cfg.pad
    x = F.pixel_shuffle(x, cfg.fold)
    return x[:, :, top : top + cfg.height, left : left + cfg.width]


class FourierFeatures(nn.Module):
    """sin/cos of a scalar at fixed geometric frequencies (0.5 .. 16 rad per unit): smooth in the scalar, so a
    consistency model's time derivative stays small (the sCM paper traces instability to fast time features)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(math.log(0.5), math.log(16.0), dim // 2)), persistent=False)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        a = s.float()[:, None] * self.freqs
        return torch.cat([a.cos(), a.sin()], dim=-1)


class AdaGroupNorm(nn.Module):
    def __init__(self, ch: int, cond_dim: int):
        super().__init__()
        self.ch = ch
        self.groups = max(1, ch // 16)
        self.proj = nn.Linear(cond_dim, 2 * ch)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x, cond):
        """cond: the conditioning vector [B, D], or a ModulationTable holding this norm's (1 + scale, shift)."""
        if isinstance(cond, ModulationTable):
            scale1p, shift = cond[self]
            return F.group_norm(x, self.groups, eps=1e-5) * scale1p + shift
        scale, shift = self.proj(cond)[:, :, None, None].chunk(2, dim=1)
        return F.group_norm(x, self.groups, eps=1e-5) * (1 + scale) + shift


class ModulationTable:
    """Every AdaGroupNorm's (1 + scale, shift) from one matrix product over the conditioning vector.

    Used at inference (eval mode): computed norm by norm, the 19 small projections export as 19 Gemms, each with
    its Unsqueezes, Split and "1 +" Add: 91 of the default step graph's 352 executed nodes, 3% of its time on one
    thread and more on two, where such small ops do not parallelise (benchmarks/results/
    graph_profile_unet_modulation_cpu.json: frame loop +3.6% FP32, +4.5% INT8 at two threads). The weights are
    concatenated at trace time (a constant in the exported graph) and the 1 folded into the scale half of the
    bias. Training keeps the per-norm projections (the same parameters; checkpoints load either way)."""

    def __init__(self, norms: list[AdaGroupNorm], cond: torch.Tensor):
        w = torch.cat([n.proj.weight for n in norms])
        b = torch.cat([torch.cat([n.proj.bias[: n.ch] + 1, n.proj.bias[n.ch :]]) for n in norms])
        parts = F.linear(cond, w, b)[:, :, None, None].split([n.ch for n in norms for _ in (0, 1)], dim=1)
        self._by_norm = {id(n): (parts[2 * i], parts[2 * i + 1]) for i, n in enumerate(norms)}

    def __getitem__(self, norm: AdaGroupNorm) -> tuple[torch.Tensor, torch.Tensor]:
        return self._by_norm[id(norm)]


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond_dim: int):
        super().__init__()
        self.norm1 = AdaGroupNorm(cin, cond_dim)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = AdaGroupNorm(cout, cond_dim)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, cond):
        h = self.conv1(F.silu(self.norm1(x, cond)))
        h = self.conv2(F.silu(self.norm2(h, cond)))
        return self.skip(x) + h


class CellStem(nn.Conv2d):
    """The first convolution, over the folded noisy change and context frames ([B, C, H, W] and [B, K, C, H, W]).

    A 1x1 convolution over f x f cells is an f x f convolution of stride f over the padded frames, which reads
    the frames where they lie: the fold's 6-d transposes and the concatenation took a quarter of the exported
    graph's time in ONNX Runtime (a one-step step graph 16.7 -> 13.7 ms, its INT8 copy 9.8 -> 7.6 ms). Same
    parameters as the plain convolution (checkpoints load unchanged); a wider stem folds as before."""

    def __init__(self, cfg: UNetConfig, out_channels: int):
        super().__init__(cfg.cell_features * (1 + cfg.context), out_channels, cfg.stem_kernel,
                         padding=cfg.stem_kernel // 2)
        self.cfg = cfg

    def forward(self, z_in, ctx_frames, channels_last: bool = False):
        cfg = self.cfg
        b, k = ctx_frames.shape[:2]
        ctx = ctx_frames.reshape(b, k * ctx_frames.shape[2], *ctx_frames.shape[3:])
        if cfg.stem_kernel != 1:
            z_cells = fold(z_in, cfg, 0.0)
            ctx = fold(ctx.reshape(b * k, *ctx_frames.shape[2:]), cfg).reshape(b, -1, *z_cells.shape[2:])
            h = torch.cat([z_cells, ctx], dim=1)
            if channels_last:
                h = h.contiguous(memory_format=torch.channels_last)
            return super().forward(h)
        top, bottom, left, right = cfg.pad
        f, c = cfg.fold, cfg.channels
        # a cell feature of pixel_unshuffle is (channel, row, column): exactly the kernel's weight layout
        w = self.weight.reshape(self.out_channels, -1, f, f)
        z = F.pad(z_in, (left, right, top, bottom), value=0.0)
        ctx = F.pad(ctx, (left, right, top, bottom), value=-1.0)  # black beyond the frame, as fold pads
        if channels_last:
            z, ctx = z.contiguous(memory_format=torch.channels_last), ctx.contiguous(memory_format=torch.channels_last)
        return F.conv2d(z, w[:, :c], self.bias, stride=f) + F.conv2d(ctx, w[:, c:], stride=f)


class FrameStackUNet(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        self.channels_last = False  # training sets it (faster convs); export keeps the plain layout
        w, d = cfg.widths, cfg.cond_dim
        self.noise_features = FourierFeatures(d)
        self.noise_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        # one table per slot: context frames K..1 back, then the action leading to the new frame
        self.action_embed = nn.Embedding((cfg.context + 1) * (cfg.n_actions + 1), d)
        nn.init.normal_(self.action_embed.weight, std=0.02)
        self.context_noise_embed = nn.Linear(1, d)
        cell = cfg.cell_features
        self.conv_in = CellStem(cfg, w[0])
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, ch in enumerate(w):
            self.down.append(nn.ModuleList(ResBlock(ch, ch, d) for _ in range(cfg.blocks)))
            if i + 1 < len(w):
                self.downsample.append(nn.Conv2d(ch, w[i + 1], 3, stride=2, padding=1))
        self.mid = ResBlock(w[-1], w[-1], d)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, ch in enumerate(w):
            self.up.append(nn.ModuleList(ResBlock(2 * ch if b == 0 else ch, ch, d) for b in range(cfg.blocks)))
            if i + 1 < len(w):
                self.upsample.append(nn.Conv2d(w[i + 1], ch, 3, padding=1))
        self.norm_out = AdaGroupNorm(w[0], d)
        self.conv_out = nn.Conv2d(w[0], cell, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        # a learned gain per cell feature and noise level on the network's own (preconditioned) input, added
        # to its output: denoising at mid noise levels needs F to return a scaled copy of the input noise
        # (EDM's c_skip fits data of std sd, not a change of std 0.03), and the first level's 32 channels
        # cannot carry the 48 features of a cell through the U-Net. Zero at first (a warm start computes
        # what the model did before). Measured without it: denoising error at t = 0.25-0.5 15x copy's.
        self.skip_gain = nn.Linear(d, cell)
        nn.init.zeros_(self.skip_gain.weight)
        nn.init.zeros_(self.skip_gain.bias)

    def condition(self, c_noise, action, ctx_actions, ctx_t):
        cfg = self.cfg
        slots = torch.cat([ctx_actions, action[:, None]], dim=1).long()  # [B, K + 1]
        offsets = torch.arange(cfg.context + 1, device=slots.device) * (cfg.n_actions + 1)
        cond = self.noise_mlp(self.noise_features(c_noise)) + self.action_embed(slots + offsets).sum(dim=1)
        cond = cond + self.context_noise_embed(ctx_t.float()[:, None] * 10.0)
        return F.silu(cond)

    def network(self, z_in, ctx_frames, cond):
        """F: the preconditioned noisy change and the context -> the output before c_out (at frame size)."""
        cfg = self.cfg
        mods = cond if self.training else ModulationTable(self.ada_norms, cond)
        h = self.conv_in(z_in, ctx_frames, self.channels_last)
        skips = []
        for i, blocks in enumerate(self.down):
            for blk in blocks:
                h = blk(h, mods)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, mods)
        for i in reversed(range(len(self.up))):
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = torch.cat([h, skips[i]], dim=1)
            for blk in self.up[i]:
                h = blk(h, mods)
        return unfold(self.conv_out(F.silu(self.norm_out(h, mods))), cfg) + self.skip_map(cond) * z_in

    @property
    def ada_norms(self) -> list[AdaGroupNorm]:
        return [m for m in self.modules() if isinstance(m, AdaGroupNorm)]

    def skip_map(self, cond):
        """skip_gain per cell feature as a per-pixel gain at frame size ([B, C, H, W]): what multiplying the
        folded input by it and unfolding computes, without folding the input."""
        cfg = self.cfg
        f, top, left = cfg.fold, cfg.pad[0], cfg.pad[2]
        g = self.skip_gain(cond).reshape(-1, cfg.channels, f, f)
        g = g.repeat(1, 1, cfg.padded_height // f, cfg.padded_width // f)
        return g[:, :, top : top + cfg.height, left : left + cfg.width]

    @staticmethod
    def noised_change(x, t, prev):
        """z_t = x_t - (1 - t) prev: the noisy frame as the noised change from prev."""
        return x - (1 - t.to(x.dtype))[:, None, None, None] * prev

    def forward(self, x, t, action, ctx_frames, ctx_actions, ctx_t):
        """The denoised frame.

        x [B, C, H, W]: the noisy frame at level t [B] (1 = pure noise); action [B] int64: the action that
        leads to it; ctx_frames [B, K, C, H, W]: the previous K frames, oldest first, as cached (noised to
        level ctx_t [B]); ctx_actions [B, K] int64: the action that led to each of them (no_action where none).
        """
        prev = ctx_frames[:, -1]
        z = self.noised_change(x, t, prev)
        _, c_skip, c_out, _ = preconditioning(t, self.cfg.sigma_data)
        out = self.forward_raw(x, t, action, ctx_frames, ctx_actions, ctx_t)
        return prev.float() + c_skip[:, None, None, None] * z.float() + c_out[:, None, None, None] * out.float()

    def network_target(self, x0, x, t, prev):
        """What F should output for the denoiser to return x0 (EDM's unit-variance training target)."""
        _, c_skip, c_out, _ = preconditioning(t, self.cfg.sigma_data)
        c_skip, c_out = c_skip[:, None, None, None], c_out[:, None, None, None]
        z = self.noised_change(x, t, prev)
        return (x0 - prev - c_skip * z) / c_out.clamp(min=1e-4)

    def forward_raw(self, x, t, action, ctx_frames, ctx_actions, ctx_t):
        """F itself (before prev, c_skip and c_out), for the training loss in its unit-variance space."""
        z = self.noised_change(x, t, ctx_frames[:, -1])
        c_in, _, _, c_noise = preconditioning(t, self.cfg.sigma_data)
        cond = self.condition(c_noise, action, ctx_actions, ctx_t)
        return self.network(z * c_in[:, None, None, None].to(z.dtype), ctx_frames, cond)
