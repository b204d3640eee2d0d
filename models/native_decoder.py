"""Model resolution -> native resolution (210x160) for Atari frames.

A bilinear upsample alone loses the sharp static content (walls, bricks, score digits): on real Breakout
frames a 64x64 round trip scores 23 dB PSNR, below the copy-last-frame baseline (~30 dB). This decoder adds
back the high-frequency detail of a reference native frame (the last real context frame) wherever the
upsampled prediction agrees with the upsampled reference, i.e. where the scene has not changed. Moving
content (paddle, ball, broken bricks) comes from the prediction alone. Oracle check on real frames: 37 dB.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

NATIVE_SIZE = (210, 160)
AGREE_THRESHOLD = 20.0  # max channel difference (0..255) under which a pixel counts as unchanged


def upsample(frames: torch.Tensor) -> torch.Tensor:
    """float [N, 3, h, w] (0..255) -> float [N, 3, 210, 160]."""
    return F.interpolate(frames, size=NATIVE_SIZE, mode="bilinear", align_corners=False)


class DetailTransferDecoder:
    def __init__(self, reference_native: np.ndarray, reference_lowres: np.ndarray):
        """reference_native uint8 [210, 160, 3]; reference_lowres uint8 [3, h, w] (its model-resolution twin)."""
        ref = torch.from_numpy(reference_native).permute(2, 0, 1)[None].float()
        self.ref_up = upsample(torch.from_numpy(reference_lowres)[None].float())
        self.detail = ref - self.ref_up

    def __call__(self, lowres: np.ndarray) -> np.ndarray:
        """uint8 [N, 3, h, w] -> uint8 [N, 210, 160, 3]."""
        up = upsample(torch.from_numpy(lowres).float())
        agree = ((up - self.ref_up).abs().amax(dim=1, keepdim=True) < AGREE_THRESHOLD).float()
        out = up + agree * self.detail
        return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def plain_upsample(lowres: np.ndarray) -> np.ndarray:
    up = upsample(torch.from_numpy(lowres).float())
    return up.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
