"""Native frames -> model resolution by area averaging, in NumPy (the runtime install has no torch).

Each output pixel is the mean of the input pixels its window covers (windows of adaptive average pooling:
rows floor(i*H/h) .. ceil((i+1)*H/h)), which keeps a tiny ball's mass. Sums are exact integers and the mean is
rounded half to even, so the result equals torch's F.interpolate(mode="area") rounded (tests/test_resize.py).
"""
from __future__ import annotations

import numpy as np


def _window_matrix(n_in: int, n_out: int) -> np.ndarray:
    """int64 [n_out, n_in]: 1 where input index j lies in output index i's window."""
    m = np.zeros((n_out, n_in), np.int64)
    for i in range(n_out):
        m[i, (i * n_in) // n_out : -(-((i + 1) * n_in) // n_out)] = 1
    return m


def to_model_resolution(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [T, H, W, 3] -> uint8 [T, 3, height, width] by area averaging."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"resize: expected uint8 frames [T, H, W, 3] (got {frames.dtype} {list(frames.shape)})")
    t, h_in, w_in, _ = frames.shape
    rows = _window_matrix(h_in, height).astype(np.float32)  # float32 sums of a few uint8s are exact integers
    cols_t = _window_matrix(w_in, width).astype(np.float32).T
    count = rows.sum(1)[:, None] * cols_t.sum(0)[None, :]
    out = np.empty((t, 3, height, width), np.uint8)
    for start in range(0, t, 256):  # bounded temporaries for long episodes; two large GEMMs per chunk
        x = frames[start : start + 256]
        n = len(x)
        s = rows @ x.transpose(1, 0, 2, 3).reshape(h_in, -1).astype(np.float32)  # [height, n*W*3]
        s = s.reshape(height, n, w_in, 3).transpose(1, 3, 0, 2).reshape(-1, w_in) @ cols_t  # [n*3*height, width]
        out[start : start + n] = np.clip(np.round(s.reshape(n, 3, height, width) / count), 0, 255).astype(np.uint8)
    return out
