"""Rollout metrics per horizon: PSNR, paddle-x error and ball-position error (pixels, native resolution).

Position errors are capped at MISS_PX, and a predicted frame without a paddle or ball where the real frame
has one counts as MISS_PX, so a model cannot score well by blurring objects away. Frames whose real frame
shows no ball do not enter the ball metrics. `ball_hit_rate` is the share of those frames with the predicted
ball within HIT_PX of the real one.
"""
from __future__ import annotations

import math

import numpy as np

from nextframe.evaluation.breakout_probe import ball_position, paddle_x

MISS_PX = 40.0
HIT_PX = 8.0
HORIZONS = ((1, 10), (11, 30), (31, 100), (101, 300), (301, 10**9))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def per_frame(real: np.ndarray, pred: np.ndarray, last_context: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """real, pred uint8 [N, 210, 160, 3] -> per-frame arrays (NaN where the metric does not apply). With the
    last context frame, also the strict scores of evaluation/midplay.py: ball_found (a ball a viewer sees,
    within 4 px) and break_recall (bricks broken since the context that the prediction shows broken)."""
    n = len(real)
    out = {"psnr": np.empty(n), "paddle_err": np.empty(n), "ball_err": np.full(n, np.nan), "ball_hit": np.full(n, np.nan)}
    if last_context is not None:
        from nextframe.evaluation.midplay import per_frame as strict

        s = strict(real, pred, last_context)
        out["ball_found"], out["break_recall"] = s["ball_found"], s["break_recall"]
    for i in range(n):
        out["psnr"][i] = psnr(real[i], pred[i])
        pr, pp = paddle_x(real[i]), paddle_x(pred[i])
        out["paddle_err"][i] = np.nan if math.isnan(pr) else (MISS_PX if math.isnan(pp) else min(abs(pr - pp), MISS_PX))
        br, bp = ball_position(real[i]), ball_position(pred[i])
        if not math.isnan(br[0]):
            d = MISS_PX if math.isnan(bp[0]) else min(math.hypot(br[0] - bp[0], br[1] - bp[1]), MISS_PX)
            out["ball_err"][i] = d
            out["ball_hit"][i] = float(d <= HIT_PX)
    return out


def summarize(frames: dict[str, np.ndarray]) -> dict[str, float | None]:
    def mean(x):
        x = x[~np.isnan(x)]
        return None if x.size == 0 else round(float(x.mean()), 3)

    out = {"psnr": mean(frames["psnr"]), "paddle_x_err": mean(frames["paddle_err"]),
           "ball_err": mean(frames["ball_err"]), "ball_hit_rate": mean(frames["ball_hit"]),
           "n_frames": int(frames["psnr"].size)}
    for k in ("ball_found", "break_recall"):
        if k in frames:
            out[k] = mean(frames[k])
    return out


def by_horizon(frames: dict[str, np.ndarray]) -> dict[str, dict]:
    """Horizon h = frames after the last context frame (1 = the first prediction)."""
    n = frames["psnr"].size
    out = {"all": summarize(frames)}
    for lo, hi in HORIZONS:
        if lo > n:
            break
        sl = slice(lo - 1, min(hi, n))
        out[f"{lo}-{min(hi, n)}"] = summarize({k: v[sl] for k, v in frames.items()})
    return out
