"""Next-frame sampling: the KV-cached loop the runtime mirrors, and a no-cache reference that recomputes
the whole history each frame. Both consume noise from one torch.Generator in the same order (per frame:
the initial noise, then the context-augmentation noise of the finished frame), so they give the same frames.

Frames are float tensors [3, H, W] in [-1, 1] at model resolution.
"""
from __future__ import annotations

import torch

from nextframe.models.dit import NextFrameDiT
from nextframe.models.flow import add_noise, euler_update, flow_schedule


class KvCache:
    """Ring of `context` slots of per-layer K/V. Slot of frame pos p is p % context; a slot's age (frames
    back from the frame being generated) is derived from its stored position, never stored in the keys."""

    def __init__(self, model: NextFrameDiT, batch: int = 1):
        cfg = model.cfg
        shape = (cfg.depth, batch, cfg.heads, cfg.context, cfg.tokens_per_frame, cfg.head_dim)
        p = next(model.parameters())
        self.k = torch.zeros(shape, dtype=p.dtype, device=p.device)
        self.v = torch.zeros(shape, dtype=p.dtype, device=p.device)
        self.slot_pos = [-1] * cfg.context  # frame position held by each slot, -1 = empty
        self.n_pushed = 0

    def ages(self) -> torch.Tensor:
        """Age of each slot relative to the next frame (position n_pushed); 0 for empty slots."""
        return torch.tensor([self.n_pushed - p if p >= 0 else 0 for p in self.slot_pos], dtype=torch.long,
                            device=self.k.device)

    def push(self, k: torch.Tensor, v: torch.Tensor) -> None:
        slot = self.n_pushed % len(self.slot_pos)
        self.k[:, :, :, slot] = k
        self.v[:, :, :, slot] = v
        self.slot_pos[slot] = self.n_pushed
        self.n_pushed += 1


class CachedSampler:
    def __init__(self, model: NextFrameDiT, n_steps: int = 4, context_noise: float = 0.0, shift: float = 1.0,
                 generator: torch.Generator | None = None, batch: int = 1):
        self.model, self.batch = model, batch
        self.times = flow_schedule(n_steps, shift)
        self.context_noise = context_noise
        self.generator = generator or torch.Generator().manual_seed(0)
        # the model's device (a GPU reference loop); the noise is drawn on the CPU generator and moved, so a seed
        # gives the same frames on every device
        self.device = next(model.parameters()).device
        self.cache = KvCache(model, batch)
        self.prev = self.prev2 = self._zeros()
        self.prev_action = self._action(model.cfg.no_action)

    def _zeros(self):
        cfg = self.model.cfg
        return torch.zeros(self.batch, cfg.channels, cfg.height, cfg.width, device=self.device)

    def _noise(self):
        cfg = self.model.cfg
        return torch.randn(self.batch, cfg.channels, cfg.height, cfg.width, generator=self.generator).to(self.device)

    def _full(self, value, dtype=torch.float32):
        return torch.full((self.batch,), value, dtype=dtype, device=self.device)

    @torch.no_grad()
    def push_frame(self, frame: torch.Tensor, action: int | torch.Tensor) -> None:
        """Write a finished (or real context) frame into the cache, with context-noise augmentation."""
        frame = frame.reshape(self.batch, *frame.shape[-3:]).to(self.device)
        x = add_noise(frame, self._full(self.context_noise), self._noise())
        a = self._action(action)
        _, k, v = self.model.step(x, self._full(self.context_noise), a, self.prev,
                                  self.cache.k, self.cache.v, self.cache.ages(), self.prev_action, kv_only=True,
                                  prev2=self.prev2)
        self.cache.push(k, v)
        # the next frame's prev2: the frame before x, or x itself after the first frame, as in forward_sequence
        self.prev2 = self.prev if self.cache.n_pushed > 1 else x
        self.prev, self.prev_action = x, a

    def _action(self, action):
        return torch.as_tensor(action, dtype=torch.long).reshape(-1).expand(self.batch).contiguous().to(self.device)

    @torch.no_grad()
    def reset(self, frames: torch.Tensor, actions) -> None:
        """frames [C, 3, H, W] (or [B, C, ...]) real context; actions [C]: the action leading to each frame."""
        self.cache = KvCache(self.model, self.batch)
        self.prev = self.prev2 = self._zeros()
        self.prev_action = self._action(self.model.cfg.no_action)
        if frames.dim() == 4:
            frames = frames[None]
        for i in range(frames.shape[1]):
            self.push_frame(frames[:, i], actions[i])

    @torch.no_grad()
    def denoise(self, action) -> torch.Tensor:
        a = self._action(action)
        x = self._noise()
        ages = self.cache.ages()
        for t, t_next in zip(self.times[:-1], self.times[1:]):
            denoised, _, _ = self.model.step(x, self._full(t), a, self.prev, self.cache.k, self.cache.v, ages,
                                             self.prev_action, prev2=self.prev2)
            x = euler_update(x, denoised, t, t_next)
        return x.clamp(-1.0, 1.0)

    @torch.no_grad()
    def step(self, action) -> torch.Tensor:
        frame = self.denoise(action)
        self.push_frame(frame, action)
        return frame


class UncachedSampler(CachedSampler):
    """Reference: every network call re-runs all past frames (noised as they were when pushed)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.history, self.history_actions = [], []

    @torch.no_grad()
    def push_frame(self, frame, action):
        frame = frame.reshape(self.batch, *frame.shape[-3:])
        self.history.append(add_noise(frame, self._full(self.context_noise), self._noise()))
        self.history_actions.append(self._action(action))

    @torch.no_grad()
    def reset(self, frames, actions):
        self.history, self.history_actions = [], []
        super().reset(frames, actions)

    @torch.no_grad()
    def denoise(self, action):
        a = self._action(action)
        x = self._noise()
        clean = torch.stack(self.history, dim=1)
        clean_t = torch.full(clean.shape[:2], self.context_noise)
        clean_a = torch.stack(self.history_actions, dim=1)
        pos = [clean.shape[1]]
        for t, t_next in zip(self.times[:-1], self.times[1:]):
            denoised = self.model.forward_sequence(clean, clean_t, clean_a, x[:, None], self._full(t)[:, None], a[:, None], pos)[:, 0]
            x = euler_update(x, denoised, t, t_next)
        return x.clamp(-1.0, 1.0)
