"""Thread pools of the C++ core's ONNX Runtime backend: a Session whose thread count matches the process-wide pool
(the first Session's count) shares that pool across its graphs (step, kv); a Session of another count gets one pool
per graph, and those pools must not spin against each other. Measured as the per-frame latency of a Session at
`--threads` in a fresh process (shared pool) and after a Session at `--first` threads (own pools), each in its own
child process, so each starts with no ONNX Runtime environment.

    python -m nextframe.benchmarks.thread_pools BUNDLE [--first 1] [--threads 2] [--frames 300] [--out results.json]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import time

import numpy as np


def _latency(bundle: str, threads: int, frames: int) -> dict:
    from nextframe.runtime import Session

    with Session(bundle, threads=threads, seed=0) as s:
        s.reset(np.zeros((s.context_depth, s.height, s.width, 3), np.uint8), [0] * s.context_depth)
        for _ in range(20):
            s.step(0)
        ms = []
        for i in range(frames):
            t0 = time.perf_counter()
            s.step(i % s.n_actions)
            ms.append((time.perf_counter() - t0) * 1000.0)
    a = np.asarray(ms)
    return {f"p{q}_ms": round(float(np.percentile(a, q)), 2) for q in (50, 90, 99)}


def _child(bundle: str, sequence: list[int], frames: int, queue) -> None:
    queue.put([_latency(bundle, n, frames) for n in sequence])


def in_fresh_process(bundle: str, sequence: list[int], frames: int) -> list[dict]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(bundle, sequence, frames, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def main():
    from nextframe.benchmarks.device_info import cpu_info, versions
    from nextframe.benchmarks.result_file import write_result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--first", type=int, default=1, help="thread count of the Session opened first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    shared = in_fresh_process(args.bundle, [args.threads], args.frames)[0]
    first, own = in_fresh_process(args.bundle, [args.first, args.threads], args.frames)
    result = {"benchmark": "thread_pools", "device": cpu_info(), "versions": versions(), "bundle": args.bundle,
              "threads": args.threads, f"shared_pool_{args.threads}_threads": shared,
              f"first_session_{args.first}_threads": first, f"own_pools_{args.threads}_threads_after_it": own,
              "own_vs_shared_p50": round(own["p50_ms"] / shared["p50_ms"], 3)}
    write_result(args.out, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
