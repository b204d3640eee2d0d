"""Next-frame sampling for the frame-stack U-Net, as the runtime does it (csrc/frame_loop.cpp).

The loop keeps the frames it pushed (real context, then its own output), each noised to the context-noise
level as it is pushed. The context of the next frame is the last K of them, oldest first; where fewer than K
were pushed, the first one stands in for the missing ones, led by no action (data/frame_store.py trains on
the same rule). Noise comes from one torch.Generator in the runtime's order: per frame the initial noise,
then the context-augmentation noise of the finished frame.

Frames are float tensors [B, C, H, W] in [-1, 1] at model resolution (native for Atari models), each generated
one snapped to the game's palette when the model has one (models/palette.py).
"""
from __future__ import annotations

import torch

from nextframe.models.flow import euler_update, flow_schedule
from nextframe.models.palette import snap_torch
from nextframe.models.unet import FrameStackUNet


class FrameStackSampler:
    def __init__(self, model: FrameStackUNet, n_steps: int = 1, context_noise: float = 0.0, shift: float = 1.0,
                 generator: torch.Generator | None = None, batch: int = 1, times: list[float] | None = None,
                 device=None, palette="model"):
        """palette: the colours every generated frame is snapped to (models/palette.py); "model": the model's own
        (from its file, as the exported bundle does), None: no snapping."""
        self.model, self.batch = model, batch
        self.palette = getattr(model, "palette", None) if isinstance(palette, str) and palette == "model" else palette
        self.times = list(times) if times is not None else flow_schedule(n_steps, shift)
        self.context_noise = float(context_noise)
        self.generator = generator or torch.Generator().manual_seed(0)
        self.device = device or next(model.parameters()).device
        self.frames: list[torch.Tensor] = []
        self.actions: list[torch.Tensor] = []

    @property
    def cfg(self):
        return self.model.cfg

    def _noise(self) -> torch.Tensor:
        c = self.cfg
        return torch.randn(self.batch, c.channels, c.height, c.width, generator=self.generator).to(self.device)

    def _action(self, action) -> torch.Tensor:
        return torch.as_tensor(action, dtype=torch.long).reshape(-1).expand(self.batch).to(self.device)

    def context(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(frames [B, K, C, H, W], actions [B, K]) the next frame is conditioned on."""
        k = self.cfg.context
        if not self.frames:
            raise ValueError("sampler: no context frame pushed; call reset with at least one frame")
        n = len(self.frames)
        idx = [max(n - k + i, 0) for i in range(k)]
        frames = torch.stack([self.frames[i] for i in idx], dim=1)
        no_action = torch.full((self.batch,), self.cfg.no_action, dtype=torch.long, device=self.device)
        actions = torch.stack([self.actions[i] if n - k + j >= 0 else no_action for j, i in enumerate(idx)], dim=1)
        return frames, actions

    @torch.no_grad()
    def push_frame(self, frame: torch.Tensor, action) -> None:
        frame = frame.reshape(self.batch, *frame.shape[-3:]).to(self.device)
        cn = self.context_noise
        self.frames.append((1.0 - cn) * frame + cn * self._noise())
        self.actions.append(self._action(action))
        if len(self.frames) > self.cfg.context:  # only the last K are ever read
            self.frames.pop(0)
            self.actions.pop(0)

    @torch.no_grad()
    def reset(self, frames: torch.Tensor, actions) -> None:
        """frames [n, C, H, W] (or [B, n, C, H, W]) real context; actions [n] (or [B, n]): the action leading
        to each frame."""
        self.frames, self.actions = [], []
        if frames.dim() == 4:
            frames = frames[None]
        actions = torch.as_tensor(actions, dtype=torch.long)
        for i in range(frames.shape[1]):
            self.push_frame(frames[:, i], actions[..., i])

    @torch.no_grad()
    def denoise(self, action) -> torch.Tensor:
        a = self._action(action)
        ctx, ctx_actions = self.context()
        ctx_t = torch.full((self.batch,), self.context_noise, device=self.device)
        x = self._noise()
        for t, t_next in zip(self.times[:-1], self.times[1:]):
            tt = torch.full((self.batch,), t, device=self.device)
            denoised = self.model(x, tt, a, ctx, ctx_actions, ctx_t)
            x = euler_update(x, denoised, t, t_next)
        x = x.clamp(-1.0, 1.0)
        return x if self.palette is None else snap_torch(x, self.palette)

    @torch.no_grad()
    def step(self, action) -> torch.Tensor:
        frame = self.denoise(action)
        self.push_frame(frame, action)
        return frame
