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


# bench backend -> (device, DeviceSession backend) of the device-resident loops over the frame graph
DEVICE_BACKENDS = {"ort-device": ("cpu", "ort"), "ort-cuda-device": ("cuda", "ort"), "trt-device": ("cuda", "trt")}


def fps_of(mean_ms: float) -> float:
    """Frames per second, three significant figures at least: a model of published scale runs at 0.14 FPS on a CPU,
    which one decimal would round to 0.1 (and ratios of such values would be wrong by half)."""
    fps = 1000.0 / mean_ms
    return round(fps, 1) if fps >= 100 else float(f"{fps:.3g}")


def time_bundles(bundles: dict[str, str | tuple[str, str]], frames: np.ndarray, lead_actions: np.ndarray,
                 n_frames: int, threads: int = 2, seed: int = 0, backend: str = "ort-cpu", loops: dict | None = None) -> dict:
    """{name: {fps, latency_p50/p90/p99_ms, n_frames, n_steps, backend}}; bundles: name -> bundle dir, or -> (bundle
    dir, backend) to time one bundle on several backends side by side (else `backend` for all); loops: more frame loops
    timed in the same rounds, name -> (reset(frames, lead_actions), step(action)) (e.g. the PyTorch loop);
    frames/lead_actions: a real episode start (at least as many frames as the deepest context). Actions are scripted
    (held for 5 frames, seeded)."""
    from nextframe.evaluation.rollout import session_frames
    from nextframe.runtime import Session

    if not bundles:
        raise ValueError("bench: no bundle to time")
    sessions = {}
    try:
        bundles = {name: (v, backend) if isinstance(v, str) else tuple(v) for name, v in bundles.items()}
        for name, (path, be) in bundles.items():
            if be in DEVICE_BACKENDS:  # a device-resident loop over the bundle's frame graph
                from nextframe.runtime.device_session import DeviceSession

                device, kind = DEVICE_BACKENDS[be]
                sessions[name] = DeviceSession(path, device=device, backend=kind, threads=threads, seed=seed)
            else:
                sessions[name] = Session(path, backend=be, threads=threads, seed=seed, n_warmup_frames=5)
        rng = np.random.default_rng(seed)
        steps = {}
        for name, s in sessions.items():
            k = s.context_depth
            if len(frames) < k:
                raise ValueError(f"bench: {k} context frames needed for {name}, got {len(frames)}")
            s.reset(session_frames(s, frames[:k]), [int(a) for a in lead_actions[:k]])
            actions = np.repeat(rng.integers(0, s.n_actions, n_frames // 5 + 1), 5)[:n_frames]
            steps[name] = s.step
        for name, (reset, step) in (loops or {}).items():
            reset(frames, lead_actions)
            steps[name] = step
        ms: dict[str, list[float]] = {name: [] for name in steps}
        for lo in range(0, n_frames, ROUND_FRAMES):
            for name, step in steps.items():
                for a in actions[lo : lo + ROUND_FRAMES]:
                    t0 = time.perf_counter()
                    step(int(a))
                    ms[name].append((time.perf_counter() - t0) * 1000.0)
        out = {}
        for name, v in ms.items():
            a = np.asarray(v[5:] if len(v) > 10 else v)
            out[name] = {"fps": fps_of(float(a.mean())),
                         "latency_p50_ms": round(float(np.percentile(a, 50)), 2),
                         "latency_p90_ms": round(float(np.percentile(a, 90)), 2),
                         "latency_p99_ms": round(float(np.percentile(a, 99)), 2), "n_frames": int(a.size),
                         **({"n_steps": sessions[name].bundle.sampler["n_steps"], "backend": sessions[name].backend,
                             **describe(bundles[name][0])} if name in sessions else {"backend": name})}
        return out
    finally:
        for s in sessions.values():
            s.close()


def torch_loop(model_file: str, bundle_dir: str, threads: int, seed: int = 0, device: str = "cpu"):
    """The PyTorch frame loop of the model a bundle was exported from, as (reset(frames, lead_actions), step(action))
    for time_bundles' `loops`: eager, the bundle's schedule, the same context rule (a frame-stack model keeps frames,
    a transformer its KV cache). device "cuda": the reference a GPU runtime is measured against, each frame
    synchronised (its time is the GPU's work, not the launch). ValueError when the model is not the bundle's."""
    import json
    import os

    import torch

    from nextframe.data.resize import to_model_resolution
    from nextframe.models.registry import is_frame_stack
    from nextframe.models.sampling import CachedSampler
    from nextframe.models.unet_sampling import FrameStackSampler
    from nextframe.training.checkpoint import load_model

    with open(os.path.join(bundle_dir, "manifest.json")) as f:
        manifest = json.load(f)
    model = load_model(model_file).eval().to(device)
    if manifest.get("model") != model.cfg.to_dict():
        raise ValueError(f"bench: {model_file} is not the model {bundle_dir} was exported from; pass it with --model")
    torch.set_num_threads(threads)
    cfg, sampler_info = model.cfg, manifest["sampler"]
    gen = torch.Generator().manual_seed(seed)
    if is_frame_stack(model):
        sampler = FrameStackSampler(model, context_noise=sampler_info["context_noise"], times=sampler_info["times"],
                                    generator=gen)
    else:
        sampler = CachedSampler(model, n_steps=sampler_info["n_steps"], context_noise=sampler_info["context_noise"],
                                generator=gen)
        sampler.times = sampler_info["times"]

    def reset(frames: np.ndarray, lead_actions: np.ndarray) -> None:
        k = cfg.context
        low = to_model_resolution(frames[:k], cfg.height, cfg.width)
        sampler.reset(torch.from_numpy(low).float().div(127.5).sub(1.0), [int(a) for a in lead_actions[:k]])

    def step(action: int) -> None:
        with torch.no_grad():
            sampler.step(action)
        if device == "cuda":
            torch.cuda.synchronize()

    return reset, step
