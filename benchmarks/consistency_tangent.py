"""Why continuous-time CD (sCM) fails on this teacher and discrete CD does not: the parts of the teacher's
consistency tangent df/dt along its own probability-flow ODE, at several flow times, next to the finite
difference that discrete CD sees over one of its K grid intervals. Prints one JSON object and writes it.

    python benchmarks/consistency_tangent.py --model nextframe/default_model/breakout_dit.safetensors --out JSON

rms_dx: the frame-direction part J_x f . v_T;  rms_dt: the time part df/dt at fixed x_t (through the time
embedding);  rms_total: their sum (what sCM trains against);  rms_interval: (f(x_t, t) - f(x_{t-h}, t-h)) / h
with x_{t-h} one teacher Euler step down, h = 1/K (what discrete CD trains against, per unit time).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from nextframe.benchmarks.device_info import cpu_info, versions
from nextframe.benchmarks.result_file import write_result
from nextframe.data.dataset import WindowDataset
from nextframe.distill.continuous_consistency import jvp
from nextframe.distill.windows import Window
from nextframe.models.flow import add_noise, euler_update
from nextframe.training.checkpoint import load_model


def rms(x: torch.Tensor) -> float:
    return round(x.square().mean().sqrt().item(), 5)


def tangent_parts(model, w: Window, t_value: float, intervals: int, generator: torch.Generator) -> dict:
    t = torch.full(w.target.shape[:2], t_value)
    x = add_noise(w.target, t, torch.randn(w.target.shape, generator=generator))
    with torch.no_grad():
        x0 = w.predict(model, x, t)
    v = (x - x0) / t_value

    def f(xx, tt):
        return w.predict(model, xx, tt)

    _, j_x = jvp(f, (x, t), (v, torch.zeros_like(t)))
    _, j_t = jvp(f, (x, t), (torch.zeros_like(x), torch.ones_like(t)))
    out = {"t": t_value, "rms_dx": rms(j_x), "rms_dt": rms(j_t), "rms_total": rms(j_x + j_t)}
    h = 1.0 / intervals
    if t_value - h > 0:
        with torch.no_grad():
            back = f(euler_update(x, x0, t_value, t_value - h), t - h)
        out["rms_interval"] = rms((x0 - back) / h)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="nextframe/default_model/breakout_dit.safetensors")
    ap.add_argument("--data", default="recordings/train")
    ap.add_argument("--times", default="0.1,0.25,0.5,0.75,0.95")
    ap.add_argument("--intervals", type=int, default=16, help="discrete CD's K (configs/distill_cd.json)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model).requires_grad_(False)
    cfg = model.cfg
    data = WindowDataset([args.data], cfg.height, cfg.width, 8, cfg.no_action, "data_cache")
    frames, actions = data.sample(args.batch, np.random.default_rng(0))
    w = Window.from_batch(frames, actions, 0.0, False)
    g = torch.Generator().manual_seed(0)
    rows = [tangent_parts(model, w, float(t), args.intervals, g) for t in args.times.split(",")]
    result = {"benchmark": "consistency_tangent", "device": cpu_info(), "versions": versions(),
              "model": args.model, "intervals": args.intervals, "targets": w.n_targets, "rows": rows,
              "dt_share_of_total_mean": round(float(np.mean([r["rms_dt"] / r["rms_total"] for r in rows])), 3),
              "total_over_interval_mean": round(float(np.mean([r["rms_total"] / r["rms_interval"] for r in rows
                                                                 if "rms_interval" in r])), 2)}
    print(json.dumps(result))
    if args.out:
        write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
