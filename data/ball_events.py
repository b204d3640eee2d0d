"""Where Breakout's ball changes direction, read off a frame store's palette-index frames: the targets a world model
most often gets wrong. Measured on the step-41,500 student over 30 held-out mid-play clips (open loop, frames 1-30;
evaluation/midplay.py around_first_bounce): the ball was found in 61% of the frames before a clip's first real
bounce and in 37% from it on (16 clips bounce within 30 frames). Sampling these targets more often
(TrainConfig.bounce_weight) shows the trainer more of the one thing the loss sees least: a 2x4 pixel ball reversing.
"""
from __future__ import annotations

import torch

from nextframe.evaluation.breakout_probe import BALL_ROWS, PLAY_COLS, direction_flips, direction_turns

BALL_RGB = (200, 72, 72)  # the only colour of ball and paddle (the top brick row's too, above BALL_ROWS)

BOUNCE_RULES = ("flip", "turn")  # TrainConfig.bounce_rule; "flip" is what phases 4-7 trained with


def ball_centres(frames: torch.Tensor, palette_rgb: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """float [N, 2] (x, y) centroid of the ball-coloured pixels between the bricks and the paddle of each uint8
    [N, H, W] palette-index frame; NaN where there are none (no ball in play, or the game has no such colour)."""
    match = (palette_rgb.to(torch.int64) == torch.tensor(BALL_RGB)).all(dim=1).nonzero().flatten()
    out = torch.full((len(frames), 2), float("nan"))
    if match.numel() == 0:
        return out
    r0, r1 = BALL_ROWS
    c0, c1 = PLAY_COLS
    ys = torch.arange(r0, r1, dtype=torch.float32).view(1, -1, 1)
    xs = torch.arange(c0, c1, dtype=torch.float32).view(1, 1, -1)
    for i in range(0, len(frames), chunk):
        on = (frames[i : i + chunk, r0:r1, c0:c1].cpu() == int(match[0])).float()
        n = on.sum(dim=(1, 2))
        has = n > 0
        out[i : i + chunk, 0] = torch.where(has, (on * xs).sum(dim=(1, 2)) / n.clamp(min=1), float("nan"))
        out[i : i + chunk, 1] = torch.where(has, (on * ys).sum(dim=(1, 2)) / n.clamp(min=1), float("nan"))
    return out


def bounce_frames(centres: torch.Tensor, episode_start: torch.Tensor, rule: str = "flip") -> torch.Tensor:
    """bool [N]: frame t shows the ball moving against its previous direction (either axis) compared with frame
    t-1, all three frames t-2..t in one episode with the ball on screen. rule "turn" also counts frames where the
    motion on an axis stops or starts (evaluation/breakout_probe.py direction_turns: bounces through a wall-contact
    frame)."""
    if rule not in BOUNCE_RULES:
        raise ValueError(f"ball events: unknown bounce rule {rule!r} (expected one of {', '.join(BOUNCE_RULES)})")
    n = len(centres)
    bounce = torch.zeros(n, dtype=torch.bool)
    if n < 3:
        return bounce
    flip = (direction_flips if rule == "flip" else direction_turns)(centres)  # NaN compares False: no ball, no bounce
    t = torch.arange(2, n)
    bounce[2:] = flip & (t - 2 >= episode_start[2:].cpu())
    return bounce


def bounce_targets(frames: torch.Tensor, palette_rgb: torch.Tensor, episode_start: torch.Tensor,
                   rule: str = "flip") -> torch.Tensor:
    """bool [N]: frames that show a bounce or the first frame after one (whose context holds one frame of the new
    direction only)."""
    b = bounce_frames(ball_centres(frames, palette_rgb), episode_start, rule)
    after = torch.zeros_like(b)
    after[1:] = b[:-1] & (torch.arange(1, len(b)) > episode_start[1:].cpu())
    return b | after
