"""Snapping generated frames to the game's colours.

An Atari screen shows a handful of the console's colours (Breakout: 9). A native-resolution model's frame is
snapped to the nearest of them before it becomes context, so the next frame is conditioned on a screen the game
could show and small colour errors cannot pile up over an open loop (measured on a one-step U-Net over 300
frames: PSNR 22.4 dB without, 29.1 dB with, copying the last frame 27.8; without it the bricks turn yellow and
the walls fray within 100 frames). The palette travels with the model (its file's metadata, taken from the
training data) into the bundle's manifest (frame.palette), and the C++ core snaps the same way
(csrc/frame_loop.cpp: squared RGB distance in [-1, 1] units, summed r, g, b in that order, the first colour on a
tie), as does the NumPy reference loop.
"""
from __future__ import annotations

import json

import numpy as np


def check_palette(palette) -> np.ndarray:
    """uint8 [P, 3] from a nested list / array of RGB triples (0-255, 1 to 256 colours); ValueError otherwise."""
    a = np.asarray(palette)
    if a.ndim != 2 or a.shape[1] != 3 or not 1 <= len(a) <= 256:
        raise ValueError(f"palette: expected 1..256 RGB triples (got shape {list(a.shape)})")
    if not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() > 255:
        raise ValueError("palette: values must be integers in 0..255")
    return a.astype(np.uint8)


def palette_json(palette) -> str:
    return json.dumps(check_palette(palette).tolist())


def snap_torch(x, palette: np.ndarray):
    """x [B, 3, H, W] in [-1, 1] -> each pixel replaced by its nearest palette colour (same dtype, device)."""
    import torch  # not at module level: the runtime-only install (runtime/reference.py) has no torch

    p = torch.from_numpy(np.asarray(palette)).float().div(127.5).sub(1.0).to(x.device)  # [P, 3]
    xf = x.float()
    pr, pg, pb = (p[:, i][None, :, None, None] for i in range(3))
    d = (xf[:, 0:1] - pr) ** 2 + (xf[:, 1:2] - pg) ** 2 + (xf[:, 2:3] - pb) ** 2  # [B, P, H, W]
    return p[d.argmin(1)].permute(0, 3, 1, 2).to(x.dtype)


def snap_numpy(x: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """The same on float32 [..., 3, H, W] (the reference loop's frames)."""
    p = np.asarray(palette).astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    shape = x.shape
    f = x.reshape(3, -1).astype(np.float32)
    d = (f[0][None] - p[:, 0:1]) ** 2 + (f[1][None] - p[:, 1:2]) ** 2 + (f[2][None] - p[:, 2:3]) ** 2  # [P, HW]
    return p[d.argmin(0)].T.reshape(shape).astype(np.float32)
