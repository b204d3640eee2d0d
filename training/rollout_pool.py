"""Deep-horizon context for training: a pool of open-loop rollouts that keep running between training steps.

Own-prediction chains (trainer.own_predictions) show the model errors up to a few frames deep; the shipped
model still drifted after about 100 open-loop frames (static walls and bricks turn to colour noise) because it
never saw context that old. The pool runs `batch` rollouts with the KV-cached sampler from real context,
following the recorded actions, for up to `max_len` frames, advancing a few frames per training step (cheap:
two single-frame network calls per frame, no gradient). A training batch can then take as context the pool's
last `seq_len` generated frames (tens to hundreds of frames deep) with the real frames at the same positions
as targets.

Deep in a rollout, the generated scene and the real one legitimately differ where the game diverged (the ball
took another path, a brick broke in one and not the other); teaching the model to jump to the real content
there would teach it to guess. trainer.consistency_mask keeps the loss only where the real frame did not change
and the generated frame is within `tolerance` of it: the drift the model should undo, not the divergence it
cannot know about.
"""
from __future__ import annotations

import numpy as np
import torch

from nextframe.data.dataset import WindowDataset
from nextframe.models.dit import NextFrameDiT
from nextframe.models.sampling import CachedSampler


class RolloutPool:
    def __init__(self, model: NextFrameDiT, data: WindowDataset, batch: int, seq_len: int, min_len: int,
                 max_len: int, rng: np.random.Generator, generator: torch.Generator):
        if min_len < seq_len or max_len < min_len:
            raise ValueError(f"rollout pool: need seq_len <= min_len <= max_len (got {seq_len}, {min_len}, {max_len})")
        self.model, self.data, self.batch, self.seq_len = model, data, batch, seq_len
        self.min_len, self.max_len = min_len, max_len
        self.rng, self.generator = rng, generator
        self.context = model.cfg.context
        self._restart()

    def _restart(self) -> None:
        """New rollouts from random episode positions with room for `length` predicted frames."""
        self.length = int(self.rng.integers(self.min_len, self.max_len + 1))
        need = self.context + self.length
        eps = [i for i, fr in enumerate(self.data.frames) if len(fr) >= need]
        if not eps:
            raise ValueError(f"rollout pool: no episode has {need} frames (context {self.context} + {self.length})")
        pick = self.rng.choice(eps, size=self.batch)
        starts = [int(self.rng.integers(0, len(self.data.frames[e]) - need + 1)) for e in pick]
        self.real = torch.from_numpy(np.stack([self.data.frames[e][s : s + need] for e, s in zip(pick, starts)])).float().div_(127.5).sub_(1.0)
        self.actions = torch.from_numpy(np.stack([self.data.actions[e][s : s + need] for e, s in zip(pick, starts)]))
        self.sampler = CachedSampler(self.model, n_steps=1, generator=self.generator, batch=self.batch)
        self.sampler.reset(self.real[:, : self.context], [self.actions[:, i] for i in range(self.context)])
        self.generated = [self.real[:, i] for i in range(self.context)]  # the last frames shown to the model
        self.n = self.context  # rollout position of the next frame

    @property
    def horizon(self) -> int:
        """Open-loop frames generated so far by the current rollouts."""
        return self.n - self.context

    @torch.no_grad()
    def advance(self, n_frames: int) -> None:
        was_training = self.model.training
        self.model.eval()
        for _ in range(n_frames):
            if self.horizon >= self.length:
                self._restart()
            self.generated.append(self.sampler.step(self.actions[:, self.n]))
            self.generated = self.generated[-self.seq_len:]
            self.n += 1
        self.model.train(was_training)

    def window(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(frames shown to the model [B, F, 3, h, w], real frames at the same positions, their actions) for
        the last F = seq_len positions; the frames shown are generated except for real context frames."""
        if self.n < self.seq_len:
            self.advance(self.seq_len - self.n)
        sl = slice(self.n - self.seq_len, self.n)
        return torch.stack(self.generated, dim=1), self.real[:, sl], self.actions[:, sl]
