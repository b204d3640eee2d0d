"""Frame-loop latency, side by side in one process on one bundle: the C++ runtime (ONNX Runtime CPU; also with
the cache written by the step graph instead of the kv graph), a Python loop over ONNX Runtime
(runtime/reference.py), the PyTorch eager loop with KV cache (which, like the runtime, computes only K/V for
the cache write: models.sampling.CachedSampler), and PyTorch without a cache. Parity is checked first (C++ vs
PyTorch on fed noise), then time, the cached loops interleaved. Prints one JSON object and writes it.

    python benchmarks/bench_frame_loop.py [--model M | --bundle DIR] [--frames 200] [--out JSON]
    nextframe bench [BUNDLE] [--model M] [--frames 200] [--json] [--out JSON]     (the same run)

What the user feels is `step(action) -> frame` (timed around the Python call); the C++ core also reports the
share of its frame time spent inside engine calls. "fps_with_decode" adds the native-resolution decoder.
The no-cache loop is timed as its history grows (4..64 frames) against the cached loop's constant cost.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time

import numpy as np
import torch

from nextframe import _core
from nextframe.benchmarks.bundle_timing import fps_of
from nextframe.benchmarks.device_info import cpu_info, versions
from nextframe.benchmarks.result_file import write_result
from nextframe.cli import add_bench_arguments, sampler_defaults, schedule_args
from nextframe.data.dataset import to_model_resolution
from nextframe.data.record import record_episode
from nextframe.export.bundle import export_bundle, sha256_file
from nextframe.export.onnx import step_by_name
from nextframe.models.registry import is_frame_stack
from nextframe.models.sampling import CachedSampler, UncachedSampler
from nextframe.models.unet_sampling import FrameStackSampler
from nextframe.training.checkpoint import load_model

PARITY_NMSE_BOUND = 1e-6  # C++ vs PyTorch on fed noise (tests/test_runtime_parity.py explains the bound)
CHUNK = 20  # frames per loop per round


def summary(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"n_frames": int(a.size), "latency_p50_ms": round(float(np.percentile(a, 50)), 3),
            "latency_p90_ms": round(float(np.percentile(a, 90)), 3), "latency_p99_ms": round(float(np.percentile(a, 99)), 3),
            "latency_mean_ms": round(float(a.mean()), 3), "latency_max_ms": round(float(a.max()), 3),
            "fps": fps_of(float(a.mean()))}


def timed(step, actions, warmup: int) -> tuple[list[float], list]:
    out, ms = [], []
    for i, a in enumerate(actions):
        t0 = time.perf_counter()
        f = step(int(a))
        dt = (time.perf_counter() - t0) * 1000.0
        if i >= warmup:
            ms.append(dt)
        out.append(f)
    return ms, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", default=None, help="an exported bundle (default: export --model to a temp dir)")
    add_bench_arguments(ap)
    args = ap.parse_args()
    out = run(args)
    print(json.dumps(out))


def run(args) -> dict:
    """One side-by-side run; returns the result dict (and writes it to args.out when given)."""
    if args.frames < args.warmup + 10:
        raise ValueError(f"bench: --frames must be at least warmup + 10 = {args.warmup + 10} (got {args.frames})")
    if args.threads < 1:
        raise ValueError(f"bench: --threads must be at least 1 (got {args.threads})")
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    if args.bundle is not None:
        return _run_on_bundle(args, model, args.bundle)
    d = sampler_defaults(args.model)
    with tempfile.TemporaryDirectory(prefix="nf-bench-") as tmp:
        bundle = os.path.join(tmp, "bundle")
        export_bundle(model, bundle, context_noise=d["context_noise"], **schedule_args(d, None))
        return _run_on_bundle(args, model, bundle)


def _run_on_bundle(args, model, bundle: str) -> dict:
    from nextframe.runtime import Session
    from nextframe.runtime.reference import ReferenceLoop
    import onnxruntime as ort

    if not os.path.isfile(os.path.join(bundle, "manifest.json")):
        raise FileNotFoundError(f"bench: {bundle} is not a bundle (no manifest.json)")
    with open(os.path.join(bundle, "manifest.json")) as f:
        manifest = json.load(f)
    if manifest.get("model") != model.cfg.to_dict():
        raise ValueError(f"bench: the bundle's model config differs from {args.model}'s; pass the model the bundle was exported from (--model)")
    n_steps, cn = manifest["sampler"]["n_steps"], manifest["sampler"]["context_noise"]
    cfg = model.cfg

    # inputs: a real episode's first frames as context, then a scripted action sequence (same for every loop)
    ep, _ = record_episode(cfg.game, cfg.context + 8, 4242, 0, "tracker")
    low = to_model_resolution(ep.frames, cfg.height, cfg.width)
    ctx = low[: cfg.context]
    leading = [cfg.no_action] + ep.actions[: cfg.context - 1].tolist()
    rng = np.random.default_rng(args.seed)
    actions = np.repeat(rng.integers(0, cfg.n_actions, args.frames // 5 + 1), 5)[: args.frames]
    ctx_float = torch.from_numpy(ctx).float().div(127.5).sub(1.0)

    # ---- parity first: C++ vs PyTorch on the same fed noise ---------------------------------------
    n_par = 6
    g = np.random.default_rng(1)
    noise = [g.standard_normal((cfg.channels, cfg.height, cfg.width)).astype(np.float32) for _ in range(cfg.context + 2 * n_par)]
    s = Session(bundle, backend="ort-cpu", threads=args.threads, seed=args.seed)
    s.feed_noise(np.stack(noise))
    s.reset(ctx.transpose(0, 2, 3, 1), leading)
    cpp_frames = [s.step_raw(int(a)) for a in actions[:n_par]]
    ref = ReferenceLoop(manifest, lambda feed: torch_step(model, manifest, feed), noise)
    ref.reset(ctx_float.numpy(), leading)
    torch_frames = [ref.step(int(a)) for a in actions[:n_par]]
    nmse = max(float(np.mean((c - t) ** 2) / max(np.mean(t**2), 1e-30)) for c, t in zip(cpp_frames, torch_frames))
    s.close()
    if not nmse <= PARITY_NMSE_BOUND:
        raise RuntimeError(f"bench: the C++ runtime and PyTorch disagree (NMSE {nmse:.3g} > {PARITY_NMSE_BOUND}); "
                           "is the bundle exported from this model?")

    # ---- the cached loops, interleaved: rounds of CHUNK frames each in turn, so host noise (other
    # tenants, frequency changes) lands on every loop alike instead of on whichever ran during it -----
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1

    def ort_fn(graph: str):
        sess = ort.InferenceSession(os.path.join(bundle, manifest["graphs"][graph]["file"]), so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return lambda feed: dict(zip(names, sess.run(None, feed)))

    has_kv = "kv" in manifest["graphs"]
    ng = np.random.default_rng(2)
    # one session (the step graph also writes the cache): onnxruntime's Python API gives each session its
    # own thread pool, and two pools alternating every frame spin against each other (measured here:
    # 20.9 ms per frame vs 11.2 ms for one session); the C++ core shares one pool between its two sessions
    py_loop = ReferenceLoop(manifest, ort_fn("step"), [ng.standard_normal(cfg.channels * cfg.height * cfg.width).astype(np.float32)
                                                       for _ in range(cfg.context + 2 * args.frames)])
    py_loop.reset(ctx_float.numpy(), leading)
    frame_stack = is_frame_stack(model)
    times = manifest["sampler"]["times"]
    if frame_stack:  # the PyTorch loop of the frame-stack model keeps frames, as the core does
        eager = FrameStackSampler(model, context_noise=cn, times=times, generator=torch.Generator().manual_seed(args.seed))
    else:
        eager = CachedSampler(model, n_steps=n_steps, context_noise=cn, generator=torch.Generator().manual_seed(args.seed))
        eager.times = times
    eager.reset(ctx_float, leading)
    sessions = {"cpp_runtime": Session(bundle, backend="ort-cpu", threads=args.threads, seed=args.seed, n_warmup_frames=args.warmup)}
    if has_kv:  # the same core writing the cache with the step graph: what the kv graph saves
        sessions["cpp_runtime_step_graph_only"] = Session(bundle, backend="ort-cpu", threads=args.threads, seed=args.seed,
                                                          n_warmup_frames=args.warmup, use_kv_graph=False)
    for sess in sessions.values():
        sess.reset(ctx.transpose(0, 2, 3, 1), leading)
    loops = {**{name: sess.step for name, sess in sessions.items()}, "python_ort_loop": py_loop.step, "torch_eager_cached": eager.step}
    ms = {name: [] for name in loops}
    frames = []
    for lo in range(0, args.frames, CHUNK):
        for name, step in loops.items():
            chunk_ms, out = timed(step, actions[lo : lo + CHUNK], max(0, args.warmup - lo))
            ms[name] += chunk_ms
            if name == "cpp_runtime":
                frames += out
    results = {name: summary(v) for name, v in ms.items()}
    core = sessions["cpp_runtime"].stats()
    results["cpp_runtime"]["core_stats"] = core
    decode_ms = 0.0  # a native-resolution bundle needs no decoder
    if sessions["cpp_runtime"].bundle.has_native_decoder:
        decode = _core.NativeDecoder(sessions["cpp_runtime"].bundle)  # the core's decoder, as Session.step_native runs it
        decode.set_reference(ep.frames[cfg.context - 1], low[cfg.context - 1])
        t0 = time.perf_counter()
        for f in frames[: min(50, len(frames))]:
            decode.decode(np.ascontiguousarray(f.transpose(2, 0, 1)))
        decode_ms = (time.perf_counter() - t0) * 1000.0 / min(50, len(frames))
    for sess in sessions.values():
        sess.close()

    # ---- PyTorch without a cache, as its history grows (models with a cache only) -----------------------
    by_hist = {}
    if not frame_stack:
        sm = UncachedSampler(model, n_steps=n_steps, context_noise=cn, generator=torch.Generator().manual_seed(args.seed))
        sm.reset(ctx_float, leading)
        nc_ms, _ = timed(sm.step, actions[: 64 + args.warmup], args.warmup)
        results["torch_eager_no_cache"] = summary(nc_ms)
        hist = np.arange(len(nc_ms)) + cfg.context + args.warmup  # context frames + generated ones
        results["torch_eager_no_cache"]["latency_ms_by_history"] = by_hist = {
            str(h): round(float(nc_ms[i]), 2) for i, h in enumerate(hist) if h in (4, 8, 16, 32, 64)}

    cpp, torch_c = results["cpp_runtime"], results["torch_eager_cached"]
    frame_ms = core["latency_mean_ms"]
    out = {
        "benchmark": "frame_loop", "device": cpu_info(), "versions": {**versions(), "onnxruntime": ort.__version__},
        "bundle_sha256": sha256_file(os.path.join(bundle, "manifest.json")), "precision": "fp32",
        "model_arch": "unet" if frame_stack else "dit",
        "n_steps": n_steps, "resolution": [cfg.height, cfg.width],
        "tokens_per_frame": None if frame_stack else cfg.tokens_per_frame,
        "warmup_frames": args.warmup, "n_frames": args.frames, "threads": args.threads,
        "parity_cpp_vs_torch_max_nmse": nmse,
        "runtime_fps": cpp["fps"], "torch_fps": torch_c["fps"],
        "speedup_cpp_vs_torch_eager": round(cpp["fps"] / torch_c["fps"], 2),
        "speedup_cpp_vs_python_ort": round(cpp["fps"] / results["python_ort_loop"]["fps"], 2),
        "speedup_kv_graph": (round(cpp["fps"] / results["cpp_runtime_step_graph_only"]["fps"], 2)
                             if "cpp_runtime_step_graph_only" in results else None),
        "timing": f"cached loops interleaved in rounds of {CHUNK} frames; the no-cache loop after them",
        "cpp_runtime_overhead_fraction": round(1.0 - core["engine_fraction"], 4) if frame_ms else None,
        "native_decode_ms": round(decode_ms, 3) if decode_ms else None,
        "fps_with_decode": round(1000.0 / (cpp["latency_mean_ms"] + decode_ms), 1),
        "no_cache_vs_cached_latency_at_64_frames": (round(by_hist["64"] / torch_c["latency_p50_ms"], 2) if "64" in by_hist else None),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "loops": results,
    }
    write_result(args.out, out)
    return out


@torch.no_grad()
def torch_step(model, manifest: dict, feed: dict) -> dict:
    """The PyTorch model as a graph function of the reference loop: inputs by name, outputs by name."""
    graph = manifest["graphs"]["step"]
    outs = step_by_name(model, [torch.from_numpy(np.asarray(feed[i["name"]])) for i in graph["inputs"]])
    return {o["name"]: v.numpy() for o, v in zip(graph["outputs"], outs)}


if __name__ == "__main__":
    main()
