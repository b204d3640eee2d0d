"""Open-loop rollout quality on held-out Breakout episodes, for one or more sampler settings, side by side
with the copy-last-context-frame baseline; checks the foundation quality bar and prints/writes JSON.

Held-out set: seeds never used in training (training: 1000, validation: 2000) and a policy mix never used in
training (the `reactive` policy, which is not in the training mix, plus the plain tracker).

    python benchmarks/heldout_quality.py [--model PATH] [--steps 1 2 4] [--context-noise 0 0.05] [--out JSON]

--steps defaults to the model's own schedule (a shipped model's default_steps and default_times); a step count
other than the model's own is evenly spaced.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from nextframe.benchmarks.device_info import cpu_info, versions
from nextframe.benchmarks.result_file import write_result
from nextframe.cli import DEFAULT_MODEL
from nextframe.data.record import make_env, record_episode
from nextframe.evaluation.ball_tracking import ball_tracking
from nextframe.evaluation.rollout import rollout_episode
from nextframe.training.checkpoint import load_model

HELD_OUT = (("reactive", 5001), ("reactive", 5002), ("reactive", 5003), ("tracker", 5004), ("tracker", 5005), ("tracker", 5006))
METRICS = ("psnr", "paddle_x_err", "ball_err", "ball_hit_rate")


def held_out_episodes(n_steps: int):
    env = make_env("Breakout")
    return [(f"{policy}_s{seed}", record_episode("Breakout", n_steps, seed, 0, policy, env)[0]) for policy, seed in HELD_OUT]


def mean_over_episodes(results: list[dict], who: str) -> dict:
    horizons = results[0][who].keys()
    out = {}
    for h in horizons:
        row = {}
        for m in METRICS:
            vals = [r[who][h][m] for r in results if h in r[who] and r[who][h][m] is not None]
            row[m] = round(float(np.mean(vals)), 3) if vals else None
        out[h] = row
    return out


def evaluate_held_out(model, episodes, context: int, steps: int, context_noise: float = 0.0, seed: int = 0,
                      times: list[float] | None = None):
    """Open-loop rollouts (PyTorch, sampler noise seed `seed`) of every held-out episode. Returns (per-episode
    metrics, the model's mean per horizon, the copy baseline's mean per horizon)."""
    per_ep = [{"episode": name, **rollout_episode(model, ep, context, steps, context_noise, seed=seed, times=times)[1]}
              for name, ep in episodes]
    return per_ep, mean_over_episodes(per_ep, "model"), mean_over_episodes(per_ep, "copy_baseline")


BALL_HORIZON, BALL_STARTS, BALL_TRACKED_FRAMES = 10, 5, 5


def held_out_ball_tracking(model, episodes, context: int, steps: int, context_noise: float = 0.0,
                           times: list[float] | None = None) -> dict:
    """Hit rate per horizon over mid-episode starts with the ball in play (evaluation/ball_tracking.py)."""
    model_hits, copy_hits = [], []
    for _, ep in episodes:
        r = ball_tracking(model, ep, context, steps, BALL_HORIZON, BALL_STARTS, context_noise, times=times)
        model_hits += r["model"]
        copy_hits += r["copy_baseline"]
    rate = lambda hits: [round(float(v), 3) for v in np.mean(hits, axis=0)] if hits else []
    return {"n_starts": len(model_hits), "horizon": BALL_HORIZON,
            "model_hit_rate_by_horizon": rate(model_hits), "copy_hit_rate_by_horizon": rate(copy_hits)}


def quality_bar(model: dict, copy: dict, ball: dict) -> dict:
    """The foundation issue's bar over all open-loop frames; "the ball tracked for the first frames" read as: the
    predicted ball within HIT_PX of the real one in at least half of the mid-episode starts, on average over
    the first BALL_TRACKED_FRAMES predictions."""
    m, c = model["all"], copy["all"]
    first = ball["model_hit_rate_by_horizon"][:BALL_TRACKED_FRAMES]
    return {
        "paddle_x_err_at_most_quarter_of_copy": m["paddle_x_err"] <= 0.25 * c["paddle_x_err"],
        "psnr_above_copy": m["psnr"] > c["psnr"],
        f"ball_tracked_first_{BALL_TRACKED_FRAMES}_frames": bool(first) and float(np.mean(first)) >= 0.5,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--steps", type=int, nargs="+", default=None, help="default: the model's own schedule")
    ap.add_argument("--context-noise", type=float, nargs="+", default=[0.0])
    ap.add_argument("--frames", type=int, default=300, help="open-loop frames per episode")
    ap.add_argument("--context", type=int, default=4)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from nextframe.cli import sampler_defaults

    model = load_model(args.model)
    own = sampler_defaults(args.model)
    episodes = held_out_episodes(args.frames + args.context - 1)
    runs = []
    for steps in args.steps or [own["steps"]]:
        times = own["times"] if steps == own["steps"] else None
        for cn in args.context_noise:
            t0 = time.perf_counter()
            per_ep, model_mean, copy_mean = evaluate_held_out(model, episodes, args.context, steps, cn, times=times)
            ball = held_out_ball_tracking(model, episodes, args.context, steps, cn, times=times)
            run = {"n_steps": steps, **({"times": times} if times else {}), "context_noise": cn, "model": model_mean,
                   "copy_baseline": copy_mean,
                   "ball_tracking": ball, "quality_bar": quality_bar(model_mean, copy_mean, ball),
                   "torch_eager_fps_p50": round(float(np.median([1000.0 / r["model_ms_per_frame_p50"] for r in per_ep])), 1),
                   "wall_s": round(time.perf_counter() - t0, 1), "per_episode": per_ep}
            print(json.dumps({k: v for k, v in run.items() if k != "per_episode"}), flush=True)
            runs.append(run)
    result = {"benchmark": "heldout_quality", "model": os.path.abspath(args.model), "device": cpu_info(), "versions": versions(),
              "episodes": [n for n, _ in episodes], "frames_per_episode": args.frames, "context": args.context, "runs": runs}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
