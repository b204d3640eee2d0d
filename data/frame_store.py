"""All frames of a set of episodes in one tensor (on the training device), and context windows for a
frame-stack model gathered from it by index.

Frames are stored as palette indices, one byte per pixel: an Atari screen holds a handful of the console's
128 colours (Breakout: 9), so 150,000 native frames take 5 GB instead of 15 and fit beside everything else in
a 24 GB machine. A window is decoded through the palette when it is gathered.

Context follows the runtime's rule (csrc/frame_history.h): the frame k steps back is the real one where the
episode has it; before the episode's first frame it is that first frame again, led by no action. A model
therefore also trains on the few frames after an episode starts, as it will run right after a reset.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from nextframe.atomic import write_atomic
from nextframe.data.dataset import expand_paths
from nextframe.data.episode import check_episode_fits, load_episode


class Palette:
    """RGB colours seen so far -> one-byte indices, stable once given (index 0 is black)."""

    def __init__(self):
        self.colors = np.zeros(1, np.int64)  # packed RGB by index
        # packed RGB -> index (-1: not seen): one gather per pixel, 3x a sorted search on this CPU; 32 MiB, made on
        # the first encode; its copy on a GPU store's device (encode_torch), dropped when a colour is learnt
        self._table: np.ndarray | None = None
        self._device_table: torch.Tensor | None = None

    @staticmethod
    def pack(frames: np.ndarray) -> np.ndarray:
        f = np.asarray(frames)
        return (f[..., 0].astype(np.int32) << 16) | (f[..., 1].astype(np.int32) << 8) | f[..., 2]

    def _host_table(self) -> np.ndarray:
        if self._table is None:
            self._table = np.full(1 << 24, -1, np.int16)
            self._table[self.colors] = np.arange(len(self.colors))
        return self._table

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [..., 3] RGB -> uint8 [...] indices; learns colours it has not seen."""
        table = self._host_table()
        packed = self.pack(frames)
        idx = table[packed]
        miss = idx < 0
        if miss.any():
            new = np.unique(packed[miss])
            if len(self.colors) + len(new) > 256:
                raise ValueError(f"frame store: more than 256 colours ({len(self.colors) + len(new)}); not an Atari screen")
            table[new] = np.arange(len(self.colors), len(self.colors) + len(new))
            self.colors = np.concatenate([self.colors, new.astype(np.int64)])
            self._device_table = None  # stale
            idx = table[packed]
        return idx.astype(np.uint8)

    def encode_torch(self, frames: np.ndarray, device) -> torch.Tensor:
        """encode() with the lookup on `device` (a GPU store is built from RGB chunks copied over as they are,
        not packed on the host: 300k frames in seconds); unseen colours are learnt on the host, as encode()."""
        t = torch.from_numpy(np.require(frames, requirements=["C", "W"])).to(device)  # a memory-mapped episode is read-only
        packed = (t[..., 0].int() << 16) | (t[..., 1].int() << 8) | t[..., 2].int()
        if self._device_table is None or self._device_table.device != packed.device:
            self._device_table = torch.from_numpy(self._host_table()).to(packed.device)
        idx = self._device_table[packed]
        if bool((idx < 0).any()):
            self.encode(frames)  # learns the new colours (and drops the stale device table)
            self._device_table = torch.from_numpy(self._host_table()).to(packed.device)
            idx = self._device_table[packed]
        return idx.to(torch.uint8)

    def rgb(self) -> torch.Tensor:
        p = self.colors
        return torch.from_numpy(np.stack([(p >> 16) & 255, (p >> 8) & 255, p & 255], axis=1).astype(np.uint8))


class FrameStore:
    def __init__(self, frames: torch.Tensor, palette: torch.Tensor, lead_actions: torch.Tensor,
                 episode_start: torch.Tensor, no_action: int):
        """frames uint8 [N, H, W] palette indices; palette uint8 [P, 3]; lead_actions int64 [N]: the action that
        led to each frame (no_action for an episode's first); episode_start int64 [N]: index of each frame's
        episode's first frame."""
        self.frames, self.lead_actions, self.episode_start = frames, lead_actions, episode_start
        self.palette_rgb = palette.cpu()
        self.palette = palette.float().div(127.5).sub(1.0).to(frames.device)  # [P, 3] in [-1, 1]
        self.no_action = no_action
        # frames with at least one real frame before them can be targets
        self.targets = torch.nonzero(torch.arange(len(frames), device=frames.device) > episode_start).flatten()
        if self.targets.numel() == 0:
            raise ValueError("frame store: no episode has two frames or more")
        self.target_weights: torch.Tensor | None = None  # sampling weights per target (None: uniform)

    def weight_events(self, rows: tuple[tuple[int, int], ...], weight: float, bounce_weight: float = 1.0,
                      bounce_rule: str = "flip") -> dict:
        """Sample targets whose frame changed within any of the row ranges `weight` times as often (Breakout:
        the score and brick rows, so a brick breaking, one frame in 20-50, is seen more often), and targets
        where the ball bounces (data/ball_events.py) bounce_weight times as often (the larger weight where
        both hold; bounce_rule: data/ball_events.py BOUNCE_RULES). Returns the share of targets that are each kind of event."""
        self.target_weights = None
        event = torch.zeros(len(self.targets), dtype=torch.bool, device=self.frames.device)
        if rows and weight != 1.0:
            for i in range(0, len(self.targets), 4096):
                t = self.targets[i : i + 4096]
                cur, prev = self.frames[t], self.frames[t - 1]
                for r0, r1 in rows:
                    event[i : i + len(t)] |= (cur[:, r0:r1] != prev[:, r0:r1]).flatten(1).any(dim=1)
            self.target_weights = torch.where(event, weight, 1.0).float()
        shares = {"event_share": float(event.float().mean())}
        if bounce_weight != 1.0:
            from nextframe.data.ball_events import bounce_targets

            bounce = bounce_targets(self.frames, self.palette_rgb, self.episode_start, bounce_rule)[self.targets.cpu()]
            bounce = bounce.to(self.frames.device)
            w = self.target_weights if self.target_weights is not None else torch.ones(len(self.targets), device=self.frames.device)
            self.target_weights = torch.where(bounce, torch.clamp(w, min=bounce_weight), w)
            shares["bounce_share"] = float(bounce.float().mean())
        return shares

    @classmethod
    def from_episodes(cls, episodes, no_action: int, device="cpu") -> "FrameStore":
        """episodes: a list of (frames uint8 [T+1, H, W, 3], actions int64 [T]) (arrays may be memory-mapped)."""
        episodes = list(episodes)
        return cls._build([len(fr) for fr, _ in episodes], (lambda i: episodes[i]), no_action, device)

    @classmethod
    def from_files(cls, inputs, game: str, n_actions: int, device="cpu", cache_dir: str | None = None) -> "FrameStore":
        """Episode files (docs/formats.md), read twice: once for their lengths (the action arrays only), once to
        encode them one at a time, so memory holds one decoded episode besides the store. With cache_dir, the
        encoded store is kept there (keyed by the files' paths, sizes and modification times) and memory-mapped
        on the next load: seconds instead of minutes for 150k frames."""
        paths = expand_paths(list(inputs))
        if cache_dir:
            import hashlib

            h = hashlib.sha256(f"{game}|{n_actions}".encode())
            for p in paths:
                st = os.stat(p)
                h.update(f"|{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}".encode())
            base = os.path.join(cache_dir, f"frame_store_{h.hexdigest()[:20]}")
            if os.path.isfile(base + ".npz") and os.path.isfile(base + ".npy"):
                with np.load(base + ".npz") as d:
                    lead, start, palette = d["lead_actions"], d["episode_start"], d["palette"]
                frames = torch.from_numpy(np.load(base + ".npy", mmap_mode="r").copy()).to(device)
                return cls(frames, torch.from_numpy(palette), torch.from_numpy(lead).to(device),
                           torch.from_numpy(start).to(device), n_actions)
            store = cls.from_files(paths, game, n_actions, device)
            os.makedirs(cache_dir, exist_ok=True)
            # the .npy last: both present means both complete
            write_atomic(base + ".npz", lambda tmp: np.savez(tmp, lead_actions=store.lead_actions.cpu().numpy(),
                                                             episode_start=store.episode_start.cpu().numpy(),
                                                             palette=store.palette_rgb.numpy()))
            write_atomic(base + ".npy", lambda tmp: np.save(tmp, store.frames.cpu().numpy()))
            return store
        lengths = []
        for path in paths:
            with np.load(path, allow_pickle=False) as d:
                if "actions" not in d.files:
                    raise ValueError(f"episode: {path} has no key 'actions' (keys: {sorted(d.files)})")
                lengths.append(len(d["actions"]) + 1)

        def episode(i):
            ep = load_episode(paths[i])
            check_episode_fits(paths[i], ep.game, ep.frameskip, ep.actions, game, n_actions)
            if len(ep.frames) != lengths[i]:
                raise ValueError(f"frame store: {paths[i]} changed while it was read")
            return ep.frames, ep.actions

        return cls._build(lengths, episode, n_actions, device)

    @classmethod
    def _build(cls, lengths: list[int], episode, no_action: int, device) -> "FrameStore":
        """episode(i) -> (frames, actions) of length lengths[i], encoded into one preallocated tensor."""
        if not lengths:
            raise ValueError("frame store: no episodes")
        n = sum(lengths)
        frames, palette = None, Palette()
        lead, start, at = [], [], 0
        for i, length in enumerate(lengths):
            fr, ac = episode(i)
            if fr.ndim != 4 or fr.shape[-1] != 3:
                raise ValueError(f"frame store: frames must be RGB [T, H, W, 3] (got shape {tuple(fr.shape)})")
            if frames is None:
                frames = torch.empty((n, *fr.shape[1:3]), dtype=torch.uint8, device=device)
            elif fr.shape[1:3] != frames.shape[1:]:
                raise ValueError(f"frame store: episodes differ in frame size ({fr.shape[1:3]} vs {tuple(frames.shape[1:])})")
            for j in range(0, length, 512):  # chunks bound the packed-int32 temporary
                chunk = np.asarray(fr[j : j + 512])
                frames[at + j : at + min(length, j + 512)] = (torch.from_numpy(palette.encode(chunk)) if frames.device.type == "cpu"
                                                               else palette.encode_torch(chunk, device))
            lead.append(torch.from_numpy(np.concatenate([[no_action], ac]).astype(np.int64)))
            start.append(torch.full((length,), at, dtype=torch.long))
            at += length
        return cls(frames, palette.rgb(), torch.cat(lead).to(device), torch.cat(start).to(device), no_action)

    def __len__(self) -> int:
        return len(self.frames)

    def sample_targets(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Target frame indices (uniform, or by weight_events); generator (if any) must live on the store's device."""
        if self.target_weights is not None:
            i = torch.multinomial(self.target_weights, batch, replacement=True, generator=generator)
        else:
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
        frames = self.palette[self.frames[idx].long()].permute(0, 1, 4, 2, 3)  # [B, F, H, W, 3] -> [B, F, 3, H, W]
        return frames.contiguous(), actions
