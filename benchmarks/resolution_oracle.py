"""How sharp can a world model at a given resolution draw the ball, at best? A perfect prediction at model
resolution (the real next frame, area-downsampled) is brought back to the 210x160 frames users see and the
strict ball probe (evaluation/midplay.ball_found: a blob at least half as red as the real ball within 4 px)
is asked whether a viewer sees the ball. An upper bound for any model at that resolution, however trained.

    python benchmarks/resolution_oracle.py [--out JSON]
"""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch
import torch.nn.functional as F

from nextframe.benchmarks.device_info import cpu_info
from nextframe.benchmarks.result_file import write_result
from nextframe.data.dataset import to_model_resolution
from nextframe.data.record import record_episode
from nextframe.evaluation.breakout_probe import ball_position
from nextframe.evaluation.midplay import ball_found
from nextframe.models.native_decoder import DetailTransferDecoder

RESOLUTIONS = {"64x64": (64, 64), "84x64": (84, 64), "70x80": (70, 80), "105x80": (105, 80)}


def upsample(low: np.ndarray, mode: str) -> np.ndarray:
    x = torch.from_numpy(low).float()
    kw = {"align_corners": False} if mode == "bilinear" else {}
    up = F.interpolate(x, size=(210, 160), mode=mode, **kw)
    return up.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--every", type=int, default=3, help="use every n-th frame with the ball in play")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    ep, _ = record_episode("Breakout", args.steps, args.seed, 0, "tracker")
    fr = ep.frames
    idx = [i for i in range(1, len(fr)) if not math.isnan(ball_position(fr[i])[0])][:: args.every]
    rows = {"native (space-to-depth, lossless)": float(np.mean([ball_found(fr[i], fr[i]) for i in idx])),
            "copy of the previous frame": float(np.mean([ball_found(fr[i], fr[i - 1]) for i in idx]))}
    for name, (h, w) in RESOLUTIONS.items():
        low = to_model_resolution(fr, h, w)
        for mode in ("bilinear", "nearest"):
            up = upsample(low[idx], mode)
            rows[f"{name} {mode}"] = float(np.mean([ball_found(fr[i], up[j]) for j, i in enumerate(idx)]))
        detail = [ball_found(fr[i], DetailTransferDecoder(fr[i - 1], low[i - 1])(low[i : i + 1])[0]) for i in idx]
        rows[f"{name} detail-transfer (the transformer's decoder)"] = float(np.mean(detail))
    out = {"benchmark": "resolution_oracle", "device": cpu_info(), "episode": {"policy": "tracker", "seed": args.seed,
           "steps": args.steps}, "n_frames": len(idx),
           "ball_found_by_resolution": {k: round(v, 3) for k, v in rows.items()}}
    write_result(args.out, out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
