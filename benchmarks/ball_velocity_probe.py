"""Does a frame-stack model read the ball's velocity from its context? On the held-out mid-play clips
(evaluation/midplay.py), the strict ball probe on the first predicted frames with the real context, with every
context frame replaced by the last one (no motion information: a model that only knows "the ball moves about
3-4 px diagonally" scores about a quarter there), and with the last two context frames swapped (reversed
motion). A model that reads velocity scores well with real context and badly with the other two.

    python benchmarks/ball_velocity_probe.py --model A=runs/x/model_ema.safetensors --model B=... --out r.json
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from nextframe.benchmarks.device_info import cpu_info, versions
from nextframe.benchmarks.result_file import write_result
from nextframe.evaluation import midplay

CONTEXTS = ("real", "static", "swapped")


def altered(clips: list[midplay.Clip], kind: str, frames: int) -> list[midplay.Clip]:
    k = midplay.CONTEXT
    out = []
    for c in clips:
        f = c.frames[: k + frames].copy()
        if kind == "static":
            f[:k] = f[k - 1]
        elif kind == "swapped":
            f[[k - 2, k - 1]] = f[[k - 1, k - 2]]
        out.append(midplay.Clip(f, c.lead_actions[: k + frames].copy(), c.source))
    return out


def probe(model, clips: list[midplay.Clip], n_steps: int, frames: int, seeds: int) -> dict:
    import torch

    k = midplay.CONTEXT
    out = {}
    for kind in CONTEXTS:
        found = []
        for seed in range(seeds):
            with torch.no_grad():
                preds = midplay.unet_predictor(model, n_steps=n_steps, seed=seed, batch=15)(altered(clips, kind, frames))
            found.append([[midplay.ball_found(c.frames[k + j], p[j]) for j in range(frames)] for c, p in zip(clips, preds)])
        a = np.asarray(found, dtype=float)  # [seed, clip, frame]; the real frames decide (NaN: no ball to find)
        out[kind] = {"ball_found_per_frame": [round(float(v), 3) for v in np.nanmean(a, axis=(0, 1))],
                     "ball_found_mean": round(float(np.nanmean(a)), 3), "n": int(np.sum(~np.isnan(a)))}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH of a frame-stack model (repeatable)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--frames", type=int, default=3, help="predicted frames scored per clip")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from nextframe.training.checkpoint import load_model, model_metadata

    clips = midplay.load_or_record_clips("data_cache/midplay_clips.npz")
    result = {"benchmark": "ball_velocity_probe", "device": cpu_info(), "versions": versions(), "steps": args.steps,
              "seeds": args.seeds, "clips": {"n": len(clips), "digest": midplay.clips_digest(clips)}, "models": {}}
    for entry in args.model:
        name, path = entry.split("=", 1)
        r = probe(load_model(path).eval(), clips, args.steps, args.frames, args.seeds)
        result["models"][name] = {"path": path, "train_step": model_metadata(path).get("train_step"), **r}
        print(json.dumps({"model": name, **{k: v["ball_found_mean"] for k, v in r.items()}}), flush=True)
    write_result(args.out, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
