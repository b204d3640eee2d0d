"""Ball tracking from mid-episode starts.

Rollouts from an episode's first frames say little about the ball: it is not served yet, so "the ball in the
first open-loop frames" means predicting a serve. Here each rollout starts where the ball is in play: the
context frames and the next `horizon` real frames all show it. The score is the share of starts whose
predicted ball lies within HIT_PX of the real one, per horizon (1 = the first prediction), for the model and
for the copy-last-context-frame baseline.
"""
from __future__ import annotations

import math

import numpy as np

from nextframe.data.dataset import to_model_resolution
from nextframe.data.episode import Episode
from nextframe.evaluation.breakout_probe import ball_position
from nextframe.evaluation.metrics import per_frame
from nextframe.evaluation.rollout import predict_lowres, predict_native
from nextframe.models.native_decoder import DetailTransferDecoder
from nextframe.models.registry import is_frame_stack


def ball_in_play_starts(frames: np.ndarray, context: int, horizon: int, n_starts: int) -> list[int]:
    """Up to n_starts start frames, spread over the episode and not overlapping, whose context + horizon frames
    all show the ball."""
    span = context + horizon
    visible = np.array([not math.isnan(ball_position(f)[0]) for f in frames])
    ok = [s for s in range(len(frames) - span + 1) if visible[s : s + span].all()]
    starts: list[int] = []
    for s in ok:
        if not starts or s >= starts[-1] + span:
            starts.append(s)
    if len(starts) <= n_starts:
        return starts
    return [starts[int(i)] for i in np.linspace(0, len(starts) - 1, n_starts).round()]


def ball_tracking(model, episode: Episode, context: int = 4, n_steps: int = 1, horizon: int = 10,
                  n_starts: int = 5, context_noise: float = 0.0, seed: int = 0, times: list[float] | None = None) -> dict:
    """{"starts": [...], "model": hits [n_starts, horizon], "copy_baseline": hits [n_starts, horizon]} (lists).
    times: a frame-stack model's explicit schedule (else n_steps evenly spaced)."""
    cfg = model.cfg
    starts = ball_in_play_starts(episode.frames, context, horizon, n_starts)
    model_hits, copy_hits = [], []
    for s in starts:
        native = episode.frames[s : s + context + horizon]
        actions = episode.actions[s : s + context + horizon - 1]
        first = int(episode.actions[s - 1]) if s > 0 else None
        if is_frame_stack(model):
            pred, _ = predict_native(model, native, actions, context, n_steps, context_noise, seed, horizon, times,
                                     first_action=first)
        else:
            low = to_model_resolution(native, cfg.height, cfg.width)
            pred_low, _ = predict_lowres(model, low, actions, context, n_steps, context_noise, seed, horizon, first)
            pred = DetailTransferDecoder(native[context - 1], low[context - 1])(pred_low)
        real = native[context:]
        # every real frame here shows the ball, so ball_hit has no NaN
        model_hits.append(per_frame(real, pred)["ball_hit"].tolist())
        copy_hits.append(per_frame(real, np.repeat(native[context - 1 : context], horizon, axis=0))["ball_hit"].tolist())
    return {"starts": starts, "model": model_hits, "copy_baseline": copy_hits}
