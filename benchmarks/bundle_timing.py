"""C++ runtime latency of several bundles measured side by side: every session is opened first, then they take
turns in rounds of a few frames, so host noise (other processes, frequency changes) hits them alike and their
ratios are comparable on a noisy machine. Used by `nextframe bench A B ...` and benchmarks/midplay_quality.py.
"""
from __future__ import annotations

import time

import numpy as np

ROUND_FRAMES = 25


def describe(bundle_dir: str) -> dict:
    """What a reader of the timing needs to know about a bundle: its precision and quantization method."""
    import json
    import os

    with open(os.path.join(bundle_dir, "manifest.json")) as f:
        q = json.load(f).get("quantization")
    return {"precision": q["precision"], "method": q["method"]} if q else {"precision": "fp32"}


def time_bundles(bundles: dict[str, str | tuple[str, str]], frames: np.ndarray, lead_actions: np.ndarray,
                 n_frames: int, threads: int = 2, seed: int = 0, backend: str = "ort-cpu") -> dict:
    """{name: {fps, latency_p50/p90/p99_ms, n_frames, n_steps, backend}}; bundles: name -> bundle dir, or -> (bundle
    dir, backend) to time one bundle on several backends side by side (else `backend` for all); frames/lead_actions:
    a real episode start (at least as many frames as the deepest context). Actions are scripted (held for 5 frames,
    seeded)."""
    from nextframe.evaluation.rollout import session_frames
    from nextframe.runtime import Session

    if not bundles:
        raise ValueError("bench: no bundle to time")
    sessions = {}
    try:
        bundles = {name: (v, backend) if isinstance(v, str) else tuple(v) for name, v in bundles.items()}
        for name, (path, be) in bundles.items():
            sessions[name] = Session(path, backend=be, threads=threads, seed=seed, n_warmup_frames=5)
        rng = np.random.default_rng(seed)
        ms: dict[str, list[float]] = {name: [] for name in sessions}
        for name, s in sessions.items():
            k = s.context_depth
            if len(frames) < k:
                raise ValueError(f"bench: {k} context frames needed for {name}, got {len(frames)}")
            s.reset(session_frames(s, frames[:k]), [int(a) for a in lead_actions[:k]])
            actions = np.repeat(rng.integers(0, s.n_actions, n_frames // 5 + 1), 5)[:n_frames]
        for lo in range(0, n_frames, ROUND_FRAMES):
            for name, s in sessions.items():
                for a in actions[lo : lo + ROUND_FRAMES]:
                    t0 = time.perf_counter()
                    s.step(int(a))
                    ms[name].append((time.perf_counter() - t0) * 1000.0)
        out = {}
        for name, v in ms.items():
            a = np.asarray(v[5:] if len(v) > 10 else v)
            out[name] = {"fps": round(1000.0 / float(a.mean()), 1),
                         "latency_p50_ms": round(float(np.percentile(a, 50)), 2),
                         "latency_p90_ms": round(float(np.percentile(a, 90)), 2),
                         "latency_p99_ms": round(float(np.percentile(a, 99)), 2), "n_frames": int(a.size),
                         "n_steps": sessions[name].bundle.sampler["n_steps"], "backend": sessions[name].backend,
                         **describe(bundles[name][0])}
        return out
    finally:
        for s in sessions.values():
            s.close()
