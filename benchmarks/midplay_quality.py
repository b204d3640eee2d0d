"""What a user watching the video would see, per horizon, on held-out mid-play clips (evaluation/midplay.py):
ball found (strict), brick agreement and break recall, paddle error, PSNR, for every model at the step counts
asked for and for copy-last-frame, plus the C++ runtime's FPS of each entry measured side by side in one run
(all sessions interleaved in rounds, so host noise hits them alike). Prints and writes one JSON object.

    python benchmarks/midplay_quality.py --entry teacher=runs/unet_teacher/model_ema.safetensors:1,4,8 \\
        --entry student=runs/distill/student.safetensors --entry int8=BUNDLE_DIR --fps --out results.json

With --seeds N every entry runs under N noise seeds and its scores are their mean (one seed's ball over frames 11-30
moves by about +-0.05 on these 30 clips); each seed's ball found is kept in the row.

An entry is NAME=PATH[:STEPS]: a model file (PyTorch rollouts, batched; STEPS a comma list of step counts or of
explicit noise-level schedules written T0/T1/.../0, e.g. 1,2,1/0.2/0; default the model's own schedule) or a bundle directory (rollouts through the C++ runtime, at the bundle's schedule).
Transformer models (64x64) are decoded to native resolution as `nextframe rollout` does.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from nextframe.benchmarks.bundle_timing import ROUND_FRAMES, time_bundles
from nextframe.benchmarks.device_info import cpu_info, versions
from nextframe.benchmarks.result_file import write_result
from nextframe.evaluation import midplay

TARGETS = {"ball_found_1_10": 0.8, "ball_found_11_30": 0.6, "brick_agreement": 0.9, "fps": 30.0}


def parse_steps(item: str) -> int | list[float]:
    """'4' -> 4 steps on the model's default spacing; '1/0.2/0' -> that schedule (from 1 down to 0)."""
    if "/" not in item:
        return int(item)
    from nextframe.models.flow import is_schedule

    times = [float(v) for v in item.split("/")]
    if not is_schedule(times):
        raise ValueError(f"midplay: schedule {item!r} must fall from 1 to 0, e.g. 1/0.2/0")
    return times


def parse_entry(text: str) -> tuple[str, str, list[int | list[float]] | None]:
    if "=" not in text:
        raise ValueError(f"midplay: entry {text!r} must be NAME=PATH[:STEPS]")
    name, rest = text.split("=", 1)
    path, steps = rest, None
    if ":" in rest and not os.path.exists(rest):
        path, s = rest.rsplit(":", 1)
        steps = [parse_steps(v) for v in s.split(",")]
    if not os.path.exists(path):
        raise FileNotFoundError(f"midplay: {path} not found (entry {name})")
    return name, path, steps


def model_schedule(path: str) -> tuple[int, list[float] | None]:
    from nextframe.cli import sampler_defaults

    d = sampler_defaults(path)
    return d["steps"], d["times"]


def targets_met(row: dict, copy: dict) -> dict:
    m = row["metrics"]
    found = lambda h: m[h]["ball_found"] is not None and m[h]["ball_found"] >= TARGETS[f"ball_found_{h.replace('-', '_')}"]  # noqa: E731
    met = {"ball_found_1_10": found("1-10"),
           "ball_found_11_30": found("11-30") if "11-30" in m else None,
           "brick_agreement": all(m[h]["brick_agreement"] >= TARGETS["brick_agreement"] for h in m),
           "psnr_above_copy": all(m[h]["psnr"] > copy[h]["psnr"] for h in m)}
    if "fps" in row:
        met["fps"] = row["fps"]["fps"] >= TARGETS["fps"]
    if "11-30" not in m:  # clips shorter than 30 frames
        met["ball_found_11_30"] = None
    return met


def over_seeds(make_predict, clips, args) -> dict:
    """evaluate() under seeds args.seed .. args.seed + args.seeds - 1, averaged (midplay.mean_over_seeds)."""
    if args.seeds < 1:
        raise ValueError(f"midplay: --seeds must be at least 1 (got {args.seeds})")
    runs = [midplay.evaluate(make_predict(args.seed + i), clips, 4, copy=False) for i in range(args.seeds)]
    return midplay.mean_over_seeds(runs)


def seed_fields(r: dict) -> dict:
    return {"seeds": r["n_seeds"], "ball_found_by_seed": r["ball_found_by_seed"], "ball_found_range": r["ball_found_range"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entry", action="append", default=[], help="NAME=PATH[:STEPS] (repeatable)")
    ap.add_argument("--clips-cache", default="data_cache/midplay_clips.npz")
    ap.add_argument("--n-per-episode", type=int, default=3)
    ap.add_argument("--n-sources", type=int, default=len(midplay.CLIP_SOURCES), help="held-out episodes clips are cut from")
    ap.add_argument("--horizon", type=int, default=60)
    ap.add_argument("--batch", type=int, default=10, help="clips per PyTorch batch")
    ap.add_argument("--fps", action="store_true", help="also time every entry in the C++ runtime, interleaved")
    ap.add_argument("--fps-frames", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=1,
                    help="noise seeds per entry (seed .. seed+N-1): scores are their mean, each seed's ball kept")
    ap.add_argument("--context-noise", type=float, default=0.0,
                    help="noise level of the generated frames as context (PyTorch entries; a bundle has its own)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from nextframe.export.bundle import export_bundle
    from nextframe.models.registry import is_frame_stack
    from nextframe.training.checkpoint import load_model

    entries = [parse_entry(e) for e in args.entry]
    clips = midplay.load_or_record_clips(args.clips_cache, n_per_episode=args.n_per_episode, horizon=args.horizon,
                                         sources=midplay.CLIP_SOURCES[: args.n_sources])
    copy = midplay.evaluate(lambda cl: np.stack([np.broadcast_to(c.frames[3], c.frames[4:].shape) for c in cl]), clips, 4)
    rows, bundles = [], {}
    tmp = tempfile.TemporaryDirectory(prefix="nf-midplay-")
    for name, path, steps in entries:
        if os.path.isdir(path):
            t0 = time.time()
            r = over_seeds(lambda seed: midplay.runtime_predictor(path, seed=seed, threads=args.threads), clips, args)
            with open(os.path.join(path, "manifest.json")) as f:
                n = json.load(f)["sampler"]["n_steps"]
            label = f"{name}@{n}"
            rows.append({"name": name, "steps": n, "label": label, "engine": "cpp-runtime", "path": path,
                         "metrics": r["model"], **seed_fields(r),
                         "ball_around_first_bounce": r["ball_around_first_bounce"], "eval_s": round(time.time() - t0, 1)})
            bundles[label] = path
            continue
        model = load_model(path)
        default_steps, default_times = model_schedule(path)
        for item in steps or [default_steps]:
            if isinstance(item, list):
                n, times, tag = len(item) - 1, item, "/".join(f"{v:g}" for v in item)
            else:
                n, times, tag = item, default_times if item == default_steps else None, str(item)
            t0 = time.time()
            if is_frame_stack(model):
                predict = lambda seed: midplay.unet_predictor(model, n_steps=n, times=times, seed=seed,  # noqa: E731
                                                              batch=args.batch, context_noise=args.context_noise)
            elif isinstance(item, list):
                raise ValueError(f"midplay: {name}: explicit schedules are for frame-stack models ({tag})")
            else:
                predict = lambda seed: midplay.dit_predictor(model, n_steps=n, seed=seed,  # noqa: E731
                                                             context_noise=args.context_noise)
            r = over_seeds(predict, clips, args)
            rows.append({"name": name, "steps": n, "label": f"{name}@{tag}", "engine": "pytorch", "path": path,
                         "metrics": r["model"], **seed_fields(r),
                         "ball_around_first_bounce": r["ball_around_first_bounce"], "context_noise": args.context_noise,
                         "eval_s": round(time.time() - t0, 1), **({"times": times} if times else {})})
            print(json.dumps({"entry": f"{name}@{tag}", **r["model"], "around_bounce": r["ball_around_first_bounce"]}),
                  flush=True)
            if args.fps:
                b = os.path.join(tmp.name, f"{name}_{tag.replace('/', '_')}")
                export_bundle(model, b, n_steps=None if times else n, times=times, context_noise=args.context_noise)
                bundles[f"{name}@{tag}"] = b
    if args.fps and bundles:
        fps = time_bundles(bundles, clips[0].frames, clips[0].lead_actions, args.fps_frames, args.threads, args.seed)
        for row in rows:
            if row["label"] in fps:
                row["fps"] = fps[row["label"]]
    for row in rows:
        row["targets_met"] = targets_met(row, copy["copy_baseline"])
    out = {"benchmark": "midplay_quality", "device": cpu_info(), "versions": versions(),
           "clips": {"n": len(clips), "digest": midplay.clips_digest(clips), "horizon": len(clips[0].frames) - 4,
                     "sources": sorted({c.source.split("@")[0] for c in clips})},
           "targets": TARGETS, "copy_baseline": copy["copy_baseline"], "rows": rows,
           "fps_timing": f"C++ runtime, ORT CPU, {args.threads} threads, sessions interleaved in rounds of {ROUND_FRAMES} frames"}
    tmp.cleanup()
    write_result(args.out, out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
