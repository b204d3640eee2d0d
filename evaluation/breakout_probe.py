"""Read the paddle and ball positions off a Breakout frame (native 210x160 RGB), real or predicted.

Both are the only red objects ((200, 72, 72)) below the bricks, so the probe works on "redness"
R - (G + B) / 2: 128 on paddle and ball, 0 on black background and grey walls. Predicted frames are
blurry, so positions are intensity-weighted centroids, not exact pixel matches. Returns NaN when absent.
"""
from __future__ import annotations

import numpy as np

PADDLE_ROWS = slice(189, 193)
BALL_ROWS = (93, 189)  # between the lowest brick row and the paddle
PLAY_COLS = (8, 152)
PADDLE_MIN_REDNESS = 40.0
BALL_MIN_REDNESS = 30.0


def redness(frame: np.ndarray) -> np.ndarray:
    f = frame.astype(np.float32)
    return f[..., 0] - 0.5 * (f[..., 1] + f[..., 2])


def paddle_x(frame: np.ndarray) -> float:
    c0, c1 = PLAY_COLS
    # the right wall is red at paddle height (columns 152-159): outside the play field, never the paddle
    profile = np.clip(redness(frame[PADDLE_ROWS, c0:c1]), 0, None).mean(axis=0)
    peak = profile.max()
    if peak < PADDLE_MIN_REDNESS:
        return float("nan")
    on = profile >= 0.5 * peak
    cols = np.arange(profile.size) + c0
    return float((cols[on] * profile[on]).sum() / profile[on].sum())


def ball_position(frame: np.ndarray) -> tuple[float, float]:
    r0, r1 = BALL_ROWS
    c0, c1 = PLAY_COLS
    red = np.clip(redness(frame[r0:r1, c0:c1]), 0, None)
    # 2x4 box sum matches the ball's footprint and ignores single noisy pixels
    integral = np.pad(red, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    box = (integral[4:, 2:] - integral[:-4, 2:] - integral[4:, :-2] + integral[:-4, :-2]) / 8.0
    if box.size == 0 or box.max() < BALL_MIN_REDNESS:
        return float("nan"), float("nan")
    y, x = np.unravel_index(int(box.argmax()), box.shape)
    ys, xs = slice(max(0, y - 3), y + 7), slice(max(0, x - 3), x + 5)
    patch = red[ys, xs]
    patch = np.where(patch >= 0.5 * patch.max(), patch, 0.0)
    gy, gx = np.mgrid[ys.start : ys.start + patch.shape[0], xs.start : xs.start + patch.shape[1]]
    w = patch.sum()
    return float((gx * patch).sum() / w + c0), float((gy * patch).sum() / w + r0)


def direction_flips(centres):
    """bool [N - 2]: entry i is True where frame i + 2 shows the ball moving against its direction into frame i + 1
    on either axis (a bounce off a wall, the paddle or a brick). centres: [N, 2] (x, y) ball positions, NaN where no
    ball is seen (never a flip); a numpy array or a torch tensor (the frame store's bounce targets use the same rule)."""
    v = centres[1:] - centres[:-1]  # v[i]: motion into frame i + 1
    with np.errstate(invalid="ignore"):
        return ((v[1:] * v[:-1]) < 0).any(1)


def direction_turns(centres):
    """bool [N - 2]: like direction_flips, and also where the motion on either axis stops or starts (sign to or from
    zero). Breakout's ball often reaches a wall in a frame where it does not move on that axis and leaves it in the
    next: a bounce in two frames that direction_flips never sees (about 4% of held-out mid-play frames, where the
    step-58,500 model is exact in 60%). numpy array or torch tensor; NaN (no ball) is never a turn."""
    v = centres[1:] - centres[:-1]
    lib = np if isinstance(v, np.ndarray) else __import__("torch")
    seen = ~lib.isnan(v[1:]).any(1) & ~lib.isnan(v[:-1]).any(1)
    return seen & (lib.sign(v[1:]) != lib.sign(v[:-1])).any(1)

