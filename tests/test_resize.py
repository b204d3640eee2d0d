"""The NumPy area resize (data/resize.py, torch-free for the runtime install) equals torch's
F.interpolate(mode="area") rounded, exactly, on real-looking and random frames at every model resolution used."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import square_episode
from nextframe.data.resize import to_model_resolution


def _torch_area(frames: np.ndarray, h: int, w: int) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    return F.interpolate(x, size=(h, w), mode="area").round().clamp(0, 255).to(torch.uint8).numpy()


@pytest.mark.parametrize("h, w", [(64, 64), (105, 80), (16, 16), (210, 160), (7, 5)])
def test_equals_torch_area(h, w):
    rng = np.random.default_rng(h * w)
    frames = np.concatenate([rng.integers(0, 256, (6, 210, 160, 3), dtype=np.uint8), square_episode(5, 1).frames])
    np.testing.assert_array_equal(to_model_resolution(frames, h, w), _torch_area(frames, h, w))


def test_refuses_what_is_not_uint8_rgb():
    with pytest.raises(ValueError, match="resize: expected uint8 frames"):
        to_model_resolution(np.zeros((2, 210, 160, 3), np.float32), 64, 64)
