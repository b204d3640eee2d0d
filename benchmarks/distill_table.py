"""Teacher vs distilled students, in one run on one machine: open-loop quality on the held-out episodes
(as benchmarks/heldout_quality.py measures it) and frame-loop FPS through the C++ runtime (ORT CPU), for
each (model, steps) entry. Prints one JSON object and writes it.

    python benchmarks/distill_table.py --entry teacher=nextframe/default_model/breakout_dit.safetensors:2 \\
        --entry cd=runs/distill_cd/student.safetensors:1 [--frames 300] [--out JSON]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from nextframe.benchmarks.device_info import cpu_info, versions
from nextframe.benchmarks.heldout_quality import evaluate_held_out, held_out_ball_tracking, held_out_episodes, quality_bar
from nextframe.benchmarks.result_file import write_result
from nextframe.data.dataset import to_model_resolution
from nextframe.export.bundle import export_bundle, sha256_file
from nextframe.training.checkpoint import load_model


CHUNK = 25  # frames per entry per round of the interleaved FPS measurement


def parse_entry(text: str) -> tuple[str, str, int]:
    try:
        name, rest = text.split("=", 1)
        path, steps = rest.rsplit(":", 1)
        return name, path, int(steps)
    except ValueError:
        raise ValueError(f"distill_table: --entry must be NAME=MODEL:STEPS (got {text!r})") from None


def runtime_fps(models: list, steps: list[int], episode, n_frames: int, warmup: int, threads: int) -> list[dict]:
    """C++ runtime FPS of every (model, steps) on the same context and actions, interleaved in rounds of CHUNK
    frames, so host noise lands on every entry alike (run one after another, two identical graphs measured
    65 and 94 FPS here). Statistics leave out each entry's first `warmup` frames."""
    from nextframe.runtime import Session

    cfg = models[0].cfg
    low = to_model_resolution(episode.frames[: cfg.context], cfg.height, cfg.width)
    leading = [cfg.no_action] + episode.actions[: cfg.context - 1].tolist()
    actions = np.repeat(np.random.default_rng(0).integers(0, cfg.n_actions, n_frames // 5 + 1), 5)[:n_frames]
    with tempfile.TemporaryDirectory(prefix="nf-distill-table-") as tmp:
        sessions = []
        for i, (model, n) in enumerate(zip(models, steps)):
            bundle = os.path.join(tmp, f"bundle{i}")
            export_bundle(model, bundle, n_steps=n)
            s = Session(bundle, backend="ort-cpu", threads=threads, seed=0, n_warmup_frames=warmup)
            s.reset(low.transpose(0, 2, 3, 1), leading)
            sessions.append(s)
        for lo in range(0, n_frames, CHUNK):
            for s in sessions:
                for a in actions[lo : lo + CHUNK]:
                    s.step(int(a))
        stats = [s.stats() for s in sessions]
        for s in sessions:
            s.close()
    keys = ("fps", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "engine_fraction")
    return [{k: round(float(st[k]), 3) for k in keys} for st in stats]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entry", action="append", required=True, help="NAME=MODEL:STEPS (repeatable)")
    ap.add_argument("--frames", type=int, default=300, help="open-loop frames per held-out episode")
    ap.add_argument("--context", type=int, default=4)
    ap.add_argument("--fps-frames", type=int, default=150)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--extra-seeds", type=int, default=0,
                    help="also roll out with sampler noise seeds 1..N: the spread of the all-frames metrics")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    entries = [parse_entry(e) for e in args.entry]
    episodes = held_out_episodes(args.frames + args.context - 1)
    rows, models = [], []
    for name, path, steps in entries:
        model = load_model(path)
        models.append(model)
        t0 = time.perf_counter()
        _, m, c = evaluate_held_out(model, episodes, args.context, steps)
        ball = held_out_ball_tracking(model, episodes, args.context, steps)
        row = {"name": name, "model": path, "model_sha256": sha256_file(path), "n_steps": steps,
               "quality": {h: m[h] for h in ("1-10", "11-30", "all") if h in m}, "copy_baseline": {h: c[h] for h in ("1-10", "11-30", "all") if h in c},
               "ball_tracking": ball, "quality_bar": quality_bar(m, c, ball),
               "quality_wall_s": round(time.perf_counter() - t0, 1)}
        if args.extra_seeds:
            # 300 open-loop frames diverge chaotically (another ball path): one noise seed is one sample
            alls = [m["all"]] + [evaluate_held_out(model, episodes, args.context, steps, seed=s)[1]["all"]
                                 for s in range(1, args.extra_seeds + 1)]
            row["all_by_seed"] = {k: [a[k] for a in alls] for k in ("psnr", "paddle_x_err")}
            row["all_seed_mean_std"] = {k: [round(float(np.mean(v)), 3), round(float(np.std(v, ddof=1)), 3)]
                                        for k, v in row["all_by_seed"].items()}
        print(json.dumps(row), flush=True)
        rows.append(row)
    fps = runtime_fps(models, [r["n_steps"] for r in rows], episodes[0][1], args.fps_frames, args.warmup, args.threads)
    for row, f in zip(rows, fps):
        row["cpp_runtime"] = f
    result = {"benchmark": "distill_table", "device": cpu_info(), "versions": versions(), "threads": args.threads,
              "fps_timing": f"all entries interleaved in rounds of {CHUNK} frames, {args.fps_frames} frames each",
              "episodes": [n for n, _ in episodes], "frames_per_episode": args.frames, "rows": rows}
    print(json.dumps({"rows": [(r["name"], r["n_steps"], r["quality"]["all"]["psnr"], r["quality"]["all"]["paddle_x_err"],
                                r["cpp_runtime"]["fps"]) for r in rows]}))
    write_result(args.out, result)


if __name__ == "__main__":
    main()
