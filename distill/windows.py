"""Teacher-forced conditioning shared by every distillation loss.

A window of F real frames gives F-1 targets (frames 1..F-1; frame 0 has no context and is never a target).
Student, teacher, target and fake-score networks all see the same clean context (the real frames 0..F-2,
noise-augmented once per batch at a level U(0, context_noise_max), as the teacher was trained), the same
actions and the same positions, so their predictions differ only by the network, never by the input.
"""
from __future__ import annotations

import dataclasses

import torch

from nextframe.models.dit import NextFrameDiT
from nextframe.models.flow import add_noise, euler_update, x0_loss_weight
from nextframe.training.trainer import motion_weights


@dataclasses.dataclass
class Window:
    clean: torch.Tensor  # [B, F-1, C, H, W] noise-augmented real frames 0..F-2
    clean_t: torch.Tensor  # [B, F-1]
    clean_action: torch.Tensor  # [B, F-1]
    target: torch.Tensor  # [B, F-1, C, H, W] real frames 1..F-1
    action: torch.Tensor  # [B, F-1] the action leading to each target
    pos: torch.Tensor  # [F-1] = 1..F-1
    prev: torch.Tensor  # [B, F-1, C, H, W] the real frame before each target (unaugmented)
    bf16: bool = True
    deep: bool = False  # context from a rollout pool: the real targets may have diverged from it (another ball path)

    @classmethod
    def from_batch(cls, frames, actions, context_noise_max: float, bf16: bool, generator=None,
                   shown: torch.Tensor | None = None, deep: bool = False) -> "Window":
        """shown: frames to condition on instead of the real ones (the teacher's own predictions,
        training.trainer.own_predictions, or a rollout pool window: deep); targets and `prev` stay real."""
        b, f = frames.shape[:2]
        context = frames if shown is None else shown
        clean_t = torch.rand(b, f - 1, generator=generator) * context_noise_max
        clean = add_noise(context[:, :-1], clean_t, torch.randn(frames[:, :-1].shape, generator=generator))
        return cls(clean, clean_t, actions[:, :-1], frames[:, 1:], actions[:, 1:], torch.arange(1, f),
                   frames[:, :-1], bf16, deep)

    @property
    def n_targets(self) -> int:
        return self.target.shape[0] * self.target.shape[1]

    def predict(self, model: NextFrameDiT, x: torch.Tensor, t: torch.Tensor, return_features: bool = False,
                feature_block: int | None = None):
        """x0 prediction (float32) of every target slot from x [B, F-1, C, H, W] at times t [B, F-1]."""
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            out = model.forward_sequence(self.clean, self.clean_t, self.clean_action, x, t, self.action, self.pos,
                                         return_features=return_features, feature_block=feature_block)
        if return_features:
            return out[0].float(), out[1].float()
        return out.float()

    def sample(self, model: NextFrameDiT, noise: torch.Tensor, times: list[float]) -> torch.Tensor:
        """Deterministic Euler in x0 parameterisation over times (1 -> 0), as models/sampling.CachedSampler runs
        one frame, but for every target slot at once (teacher-forced context). No clamp: callers decide."""
        x = noise
        for t, t_next in zip(times[:-1], times[1:]):
            x = euler_update(x, self.predict(model, x, torch.full(x.shape[:2], t)), t, t_next)
        return x

    def change_weights(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        """Per-pixel loss weights [B, F-1, 1, H, W]: 1 + strength where x differs from the real previous frame
        (the trainer's motion weighting, pairwise, so it also applies to generated targets)."""
        b, f = x.shape[:2]
        pairs = torch.stack([self.prev, x], dim=2).flatten(0, 1)  # [B*(F-1), 2, C, H, W]
        return motion_weights(pairs, strength)[:, 1].reshape(b, f, 1, *x.shape[-2:])


def time_weight(t: torch.Tensor) -> torch.Tensor:
    """The trainer's x0-loss weight (models.flow.x0_loss_weight), shaped to broadcast over [B, F, C, H, W]."""
    return per_slot(x0_loss_weight(t))


def per_slot(t: torch.Tensor) -> torch.Tensor:
    """[B, F] -> [B, F, 1, 1, 1], to scale frames by a per-slot time."""
    return t[..., None, None, None]
