"""All frames of a set of episodes in one uint8 tensor (on the training device), and context windows for a
frame-stack model gathered from it by index.

Context follows the runtime's rule (csrc/frame_history.h): the frame k steps back is the real one where the
episode has it; before the episode's first frame it is that first frame again, led by no action. A model
therefore also trains on the few frames after an episode starts, as it will run right after a reset.
"""
from __future__ import annotations

import numpy as np
import torch

from nextframe.data.dataset import expand_paths
from nextframe.data.episode import load_episode


class FrameStore:
    def __init__(self, frames: torch.Tensor, lead_actions: torch.Tensor, episode_start: torch.Tensor, no_action: int):
        """frames uint8 [N, C, H, W]; lead_actions int64 [N]: the action that led to each frame (no_action for
        an episode's first); episode_start int64 [N]: index of each frame's episode's first frame."""
        self.frames, self.lead_actions, self.episode_start = frames, lead_actions, episode_start
        self.no_action = no_action
        # frames with at least one real frame before them can be targets
        self.targets = torch.nonzero(torch.arange(len(frames), device=frames.device) > episode_start).flatten()
        if self.targets.numel() == 0:
            raise ValueError("frame store: no episode has two frames or more")

    @classmethod
    def from_episodes(cls, episodes, no_action: int, device="cpu") -> "FrameStore":
        """episodes: a list of (frames uint8 [T+1, H, W, C], actions int64 [T]) (arrays may be memory-mapped).
        The frames go straight into one preallocated tensor on `device`, episode by episode."""
        episodes = list(episodes)
        if not episodes:
            raise ValueError("frame store: no episodes")
        n = sum(len(fr) for fr, _ in episodes)
        h, w, c = episodes[0][0].shape[1:]
        frames = torch.empty((n, c, h, w), dtype=torch.uint8, device=device)
        lead, start, at = [], [], 0
        for fr, ac in episodes:
            if fr.shape[1:] != (h, w, c):
                raise ValueError(f"frame store: episodes differ in frame shape ({fr.shape[1:]} vs {(h, w, c)})")
            frames[at : at + len(fr)] = torch.from_numpy(np.array(fr)).to(device).permute(0, 3, 1, 2)
            lead.append(torch.from_numpy(np.concatenate([[no_action], ac]).astype(np.int64)))
            start.append(torch.full((len(fr),), at, dtype=torch.long))
            at += len(fr)
        return cls(frames, torch.cat(lead).to(device), torch.cat(start).to(device), no_action)

    @classmethod
    def from_files(cls, inputs, game: str, n_actions: int, device="cpu") -> "FrameStore":
        episodes = []
        for path in expand_paths(list(inputs)):
            ep = load_episode(path)
            if ep.game != game:
                raise ValueError(f"frame store: {path} is {ep.game}, the model is {game}")
            if ep.actions.size and int(ep.actions.max()) >= n_actions:
                raise ValueError(f"frame store: {path} has action {int(ep.actions.max())}, the model has {n_actions}")
            episodes.append((ep.frames, ep.actions))
        return cls.from_episodes(episodes, n_actions, device)

    def __len__(self) -> int:
        return len(self.frames)

    def sample_targets(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform target frame indices; generator (if any) must live on the store's device."""
        i = torch.randint(len(self.targets), (batch,), generator=generator, device=self.targets.device)
        return self.targets[i]

    def window(self, target: torch.Tensor, back: int) -> tuple[torch.Tensor, torch.Tensor]:
        """target [B] frame indices -> (frames float [B, back + 1, C, H, W] in [-1, 1], lead actions [B, back + 1])
        for the frames target - back .. target, oldest first, under the episode-start rule."""
        offsets = torch.arange(back, -1, -1, device=target.device)
        want = target[:, None] - offsets[None, :]
        start = self.episode_start[target][:, None]
        idx = torch.maximum(want, start)
        actions = torch.where(want > start, self.lead_actions[idx], torch.full_like(idx, self.no_action))
        frames = self.frames[idx].float().div_(127.5).sub_(1.0)
        return frames, actions
