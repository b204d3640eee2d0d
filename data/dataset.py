"""Training windows from episode files: `seq_len` consecutive frames at model resolution plus the action
that led to each frame. Frames are resized once per file and cached as .npy beside nothing else (cache
dir keyed by file content hash and resolution), so epochs after the first read small arrays only.
"""
from __future__ import annotations

import glob
import hashlib
import os

import numpy as np
import torch

from nextframe.atomic import write_atomic
from nextframe.data.episode import check_episode_fits, load_episode
from nextframe.data.resize import to_model_resolution  # noqa: F401  (re-exported: its long-standing home)


def expand_paths(inputs: list[str]) -> list[str]:
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(glob.glob(os.path.join(item, "*.npz")))
            if not found:
                raise ValueError(f"dataset: no .npz episodes in directory {item}")
            paths += found
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"dataset: no such file or directory ({item})")
    return paths


def cached_episode(path: str, height: int, width: int, cache_dir: str | None, game: str | None, n_actions: int):
    """Returns (frames uint8 [T+1, 3, h, w], actions int64 [T]) of an episode that fits the model (game, frameskip,
    action range: check_episode_fits; game None skips the game). The cache keeps the episode's game and
    frameskip, so a cached episode is checked as strictly as a fresh one."""
    key = cached = None
    if cache_dir:
        with open(path, "rb") as f:
            key = hashlib.sha256(f.read()).hexdigest()[:20]
        cached = os.path.join(cache_dir, f"{key}_{height}x{width}.npz")
        if os.path.isfile(cached):
            with np.load(cached) as d:
                if {"game", "frameskip"} <= set(d.files):  # older caches lack them: rebuilt below
                    frames, actions = d["frames"], d["actions"]
                    check_episode_fits(path, str(d["game"]), int(d["frameskip"]), actions, game or str(d["game"]), n_actions)
                    return frames, actions
    ep = load_episode(path)
    check_episode_fits(path, ep.game, ep.frameskip, ep.actions, game or ep.game, n_actions)
    frames = to_model_resolution(ep.frames, height, width)
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        write_atomic(cached, lambda tmp: np.savez(tmp, frames=frames, actions=ep.actions, game=np.array(ep.game),
                                                   frameskip=np.array(ep.frameskip)))
    return frames, ep.actions


class WindowDataset:
    """Uniform over all valid window starts of all episodes (longer episodes give more windows)."""

    def __init__(self, inputs, height, width, seq_len, no_action, cache_dir="data_cache", game: str | None = None):
        self.paths = expand_paths(list(inputs))
        self.seq_len, self.no_action = seq_len, no_action
        self.frames, self.actions = [], []
        for p in self.paths:
            fr, ac = cached_episode(p, height, width, cache_dir, game, no_action)
            if len(fr) < seq_len:
                continue
            self.frames.append(fr)
            # action leading to each frame; the first frame of an episode has none
            self.actions.append(np.concatenate([[no_action], ac]).astype(np.int64))
        if not self.frames:
            raise ValueError(f"dataset: no episode has {seq_len} frames or more ({len(self.paths)} files)")
        self.starts = np.array([len(f) - seq_len + 1 for f in self.frames])
        self.cum = np.cumsum(self.starts)

    @property
    def n_frames(self) -> int:
        return int(sum(len(f) for f in self.frames))

    def sample(self, batch: int, rng: np.random.Generator):
        """Returns frames float32 [B, F, 3, h, w] in [-1, 1] and actions int64 [B, F]."""
        idx = rng.integers(self.cum[-1], size=batch)
        ep = np.searchsorted(self.cum, idx, side="right")
        start = idx - np.concatenate([[0], self.cum[:-1]])[ep]
        fr = np.stack([self.frames[e][s : s + self.seq_len] for e, s in zip(ep, start)])
        ac = np.stack([self.actions[e][s : s + self.seq_len] for e, s in zip(ep, start)])
        x = torch.from_numpy(fr).float().div_(127.5).sub_(1.0)
        return x, torch.from_numpy(ac)
