"""Soak test of the C++ frame loop: 100,000 frames (about 55 minutes of play at 30 FPS) through one Session, with a
reset from real frames every `--reset-every` frames as a game restarting would, reporting resident memory (RSS) and
latency percentiles at the start and at the end. A leak shows as RSS growing with frames, fragmentation or a
growing structure as latency drifting; both are reported as end/start ratios measured in this one run.

    python -m nextframe.benchmarks.soak [--bundle B] [--frames 100000] [--threads 2] [--out results/soak.json]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

WINDOW = 5000  # frames in each of the start and end latency windows


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def percentiles(ms: np.ndarray) -> dict:
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 3) for q in (50, 90, 99)}


def _thin(points: list, n: int) -> list:
    """About n of the points, evenly spaced, the last one always kept."""
    kept = points[:: max(1, len(points) // n)]
    return kept if kept[-1] == points[-1] else kept + [points[-1]]


def soak(bundle: str, frames: np.ndarray, lead_actions: np.ndarray, n_frames: int, threads: int, seed: int,
         reset_every: int, speculate: bool, rss_every: int = 1000) -> dict:
    from nextframe.evaluation.rollout import session_frames
    from nextframe.runtime import Session

    rng = np.random.default_rng(seed)
    actions = np.repeat(rng.integers(0, 1 << 30, n_frames // 6 + 1), 6)[:n_frames]  # held ~6 frames, like a player
    ms = np.empty(n_frames)
    rss = []
    with Session(bundle, backend="ort-cpu", threads=threads, seed=seed, speculate=speculate) as s:
        k = s.context_depth
        context = session_frames(s, frames[:k])
        lead = [int(a) for a in lead_actions[:k]]
        s.reset(context, lead)
        rss.append((0, round(rss_mib(), 1)))
        t_start = time.perf_counter()
        for i in range(n_frames):
            if reset_every and i and i % reset_every == 0:
                s.reset(context, lead)
            t0 = time.perf_counter()
            s.step(int(actions[i] % s.n_actions))
            ms[i] = (time.perf_counter() - t0) * 1000.0
            if (i + 1) % rss_every == 0:
                rss.append((i + 1, round(rss_mib(), 1)))
        wall = time.perf_counter() - t_start
        stats = s.stats()
    w = min(WINDOW, n_frames // 4)
    start, end = ms[10 : 10 + w], ms[-w:]  # the first frames warm the engine up
    after_warmup = [m for f, m in rss if f >= min(2 * w, n_frames)]
    rss_growth = (rss[-1][1] - after_warmup[0]) if after_warmup else float("nan")
    return {
        "bundle": bundle, "n_frames": n_frames, "threads": threads, "speculate": speculate, "reset_every": reset_every,
        "wall_s": round(wall, 1), "fps": round(n_frames / wall, 1),
        "latency_start": percentiles(start), "latency_end": percentiles(end),
        "latency_end_over_start": {q: round(percentiles(end)[q] / percentiles(start)[q], 3) for q in ("p50_ms", "p99_ms")},
        "rss_mib_start": rss[1][1] if len(rss) > 1 else rss[0][1], "rss_mib_end": rss[-1][1],
        "rss_growth_mib_after_warmup": round(rss_growth, 1),
        "rss_mib_by_frame": _thin(rss, 20),
        "runtime_stats": stats,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=None, help="bundle dir (default: the shipped model, exported once)")
    ap.add_argument("--episode", default=None, help="an episode .npz for the context frames (default: record one)")
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reset-every", type=int, default=10_000)
    ap.add_argument("--speculate", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from nextframe import _core
    from nextframe.benchmarks.device_info import cpu_info
    from nextframe.benchmarks.result_file import write_result

    if args.bundle is None:
        from nextframe.cli import default_bundle

        args.bundle = default_bundle()
    game = _core.Bundle.open(args.bundle).game
    if args.episode:
        from nextframe.data.episode import load_episode

        episode = load_episode(args.episode)
    else:
        from nextframe.data.record import record_episode

        episode, _ = record_episode(game, 40, 990001 + args.seed, 0, "tracker")
    lead = np.concatenate([[len(_core.Bundle.open(args.bundle).actions)], episode.actions])  # no_action first
    out = {"device": cpu_info(), **soak(args.bundle, episode.frames[30:], lead[30:], args.frames, args.threads,
                                        args.seed, args.reset_every, args.speculate)}
    write_result(args.out, out)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
