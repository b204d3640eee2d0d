"""One model's frame on every torch-based path, side by side in rounds, on a GPU (or on this CPU for a check): eager
PyTorch, a CUDA graph of the frame's calls (GPU only), the AOTInductor package called from Python, and the C++ core's
frame loop on the same package (backend aoti / aoti-cuda: inputs and outputs through host memory each call) and, on
the CPU, on ONNX Runtime. A frame is the bundle's step-graph calls (n_steps) plus a transformer's kv call, on fixed
inputs resident on the device, so the first three rows time the graphs alone and the core's rows what a user's
loop costs. Results in `bench --backend`'s format ("backends"), the device named in full (benchmarks/device_info.py),
for benchmarks/compare.py.

    python benchmarks/gpu_bench.py --model default --device cuda --out benchmarks/results/gpu_h200_default.json
    python benchmarks/gpu_bench.py --model nfd310m --device cuda --steps 4 --out ...   # NFD-310M-shaped, random
"""
from __future__ import annotations

import argparse
import copy
import faulthandler
import os
import tempfile
import time

import numpy as np
import torch

from nextframe.benchmarks.bundle_timing import fps_of
from nextframe.benchmarks.process_pause import paused, pids_from_file

ROUND = 20


def build_model(name: str):
    """default: the shipped model; nfd310m: a transformer of NFD-310M's shape (384x224 frames, patch 16, dim 1024,
    depth 16; random weights: speed only); tiny: a small transformer for a CPU check; tiny_unet: a small frame-stack
    U-Net at native Breakout resolution (random weights) for the CPU check of the device loop."""
    from nextframe.models.config import ModelConfig
    from nextframe.models.dit import NextFrameDiT

    if name == "default":
        from nextframe.cli import DEFAULT_MODEL, _load

        return _load(DEFAULT_MODEL).eval()
    shapes = {"nfd310m": dict(height=224, width=384, patch=16, dim=1024, depth=16, heads=16),
              "tiny": dict(height=32, width=32, patch=8, dim=64, depth=2, heads=2)}
    torch.manual_seed(0)
    if name == "tiny_unet":
        from nextframe.models.unet import FrameStackUNet
        from nextframe.models.unet_config import UNetConfig

        m = FrameStackUNet(UNetConfig(height=210, width=160, fold=4, widths=(8, 16), cond_dim=16, context=4, n_actions=4,
                                      game="Breakout")).eval()
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        return m
    m = NextFrameDiT(ModelConfig(**shapes[name], context=4, n_actions=4, game="Breakout")).eval()
    with torch.no_grad():  # zero-initialised outputs and gates would make every layer a no-op
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return m


def device_loop_rows(bundle: str, args, c, loops: dict, extra: dict, stage=print) -> None:
    """The C++ DeviceLoop (state on the device) beside the core's host loop: with and without a CUDA graph, and
    without fetching frames; its frames checked against FrameLoop's on the same package and seed first."""
    from nextframe import _core

    b = _core.Bundle.open(bundle)
    be = "aoti-cuda" if args.device == "cuda" else "aoti"
    rng = np.random.default_rng(0)
    ctx = rng.uniform(-1, 1, (c.context, 3, c.height, c.width)).astype(np.float32)
    lead = np.array([c.no_action] + [0] * (c.context - 1), np.int64)
    ref = _core.FrameLoop(b, backend=be, threads=args.threads, seed=3)
    variants = {"cpp_device_loop": dict(cuda_graph=False)}
    if args.device == "cuda":
        variants["cpp_device_loop_cuda_graph"] = dict(cuda_graph=True)
    worst, loops_made = 0.0, {}
    for name, kw in variants.items():
        stage(f"opening DeviceLoop {name}")
        dl = _core.DeviceLoop(b, device=args.device, threads=args.threads, seed=3, **kw)
        ref.reset(ctx, lead)
        dl.reset(ctx, lead)
        for a in [1, 2, 3, 0, 1, 1, 2, 3]:
            worst = max(worst, float(np.abs(dl.step(a) - ref.step(a)).max()))
        loops[name] = lambda dl=dl: dl.step(1)
        loops[f"{name}_no_fetch"] = lambda dl=dl: dl.step(1, fetch=False)
        loops_made[name] = dl
        stage(f"DeviceLoop {name}: frames within {worst:.2e} of FrameLoop's so far")
    extra["device_loop_max_abs_vs_frame_loop"] = worst
    extra["device_loops"] = loops_made


def summary(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"fps": fps_of(float(a.mean())), "latency_p50_ms": round(float(np.percentile(a, 50)), 3),
            "latency_p90_ms": round(float(np.percentile(a, 90)), 3), "latency_p99_ms": round(float(np.percentile(a, 99)), 3),
            "n_frames": int(a.size)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("default", "nfd310m", "tiny", "tiny_unet"), default="default")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps per frame (default: the model's)")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (the CPU check; the core's host side)")
    ap.add_argument("--no-core", action="store_true", help="skip the C++ core rows (no built core)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    # a crash inside a compiled library (the C++ core, the AOTI plugin, libtorch) still names its Python line
    faulthandler.enable()
    t_run = time.time()

    def stage(what: str) -> None:  # progress on stdout, so a run cut short or crashed says how far it got
        print(f"gpu_bench [{time.time() - t_run:6.1f} s] {what}", flush=True)

    from nextframe.benchmarks.device_info import cpu_info, gpu_info, versions
    from nextframe.benchmarks.result_file import write_result
    from nextframe.export.aoti import compile_package
    from nextframe.export.onnx import _Graph, example_step_inputs
    from nextframe.models.registry import is_frame_stack

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_bench: no CUDA device")
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    extra: dict = {}  # rows beside the timings (the device loop's parity)
    model = build_model(args.model).to(dev)
    stage(f"model {args.model} on {dev}")
    schedule = {"n_steps": args.steps or 4, "times": None}  # the random shapes: 4 steps (NFD's)
    if args.model == "default":  # the shipped default at its own schedule (two steps, 1 and 0.15), as users run it
        from nextframe.cli import DEFAULT_MODEL, sampler_defaults, schedule_args

        schedule = schedule_args(sampler_defaults(DEFAULT_MODEL), args.steps)
    steps = schedule["n_steps"] or len(schedule["times"]) - 1
    inputs = tuple(t.to(dev) for t in example_step_inputs(model))
    step = _Graph(model, kv_only=False)
    kv = None if is_frame_stack(model) else _Graph(model, kv_only=True)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def frame(call_step, call_kv):
        for _ in range(steps):
            call_step(*inputs)
        if call_kv is not None:
            call_kv(*inputs)

    loops = {}
    with torch.no_grad():
        loops["torch_eager"] = lambda: frame(step, kv)
        frame(step, kv)
        sync()
        stage("eager frame ran")
        tmp = tempfile.TemporaryDirectory(prefix="nf-gpubench-")
        t0 = time.time()  # compile, load and one parity call per graph (export/aoti.py)
        packages, parity = {}, None
        for name, module in (("step", step), ("kv", kv)):
            if module is not None:
                err, packages[name] = compile_package(model, os.path.join(tmp.name, f"{name}.pt2"), args.device,
                                                      kv_only=name == "kv")
                parity = err if name == "step" else parity  # the package against eager, same device and inputs
        compile_s = time.time() - t0
        stage(f"AOTI packages compiled and loaded in Python ({compile_s:.0f} s; step max abs vs eager {parity})")
        loops["aoti_python"] = lambda: frame(packages["step"], packages.get("kv"))
        if dev.type == "cuda":  # the CUDA-graph reference: the frame's calls captured once, replayed
            for _ in range(3):
                frame(step, kv)
            sync()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                frame(step, kv)
            loops["torch_cuda_graph"] = graph.replay
        sessions = {}
        if not args.no_core:
            from nextframe.export.bundle import export_bundle
            from nextframe.runtime import Session

            bundle = os.path.join(tmp.name, "bundle")
            # a CPU copy: moving the model itself would free the weights the CUDA graph above was captured on
            export_bundle(copy.deepcopy(model).cpu(), bundle, check=False, aoti=(args.device,), **schedule)
            stage("bundle exported with its AOTI package")
            backends = ["aoti-cuda"] if dev.type == "cuda" else ["aoti", "ort-cpu"]
            c = model.cfg
            rng = np.random.default_rng(0)
            ctx = rng.integers(0, 255, (c.context, c.height, c.width, 3), dtype=np.uint8)
            for be in backends:
                stage(f"opening the C++ core's Session on backend {be}")
                s = Session(bundle, backend=be, threads=args.threads, seed=0, n_warmup_frames=3)
                s.reset(ctx, [c.no_action] + [0] * (c.context - 1))
                stage(f"Session {be} ready")
                sessions[be] = s
                loops[f"cpp_{be}"] = lambda s=s: s.step(1)
            device_loop_rows(bundle, args, c, loops, extra, stage)
        ms = {k: [] for k in loops}
        stage(f"timing {len(loops)} loops over {args.frames} frames")
        # processes sharing the GPU (the device session's training jobs) stopped, so the timings are the GPU's alone;
        # their queued kernels drain during the warm-up
        with paused(pids_from_file(os.environ.get("NF_PAUSE_PIDFILE")), settle_s=1.0) as stopped:
            for name, fn in loops.items():  # warm-up
                for _ in range(args.warmup):
                    fn()
            sync()
            for lo in range(0, args.frames, ROUND):
                for name, fn in loops.items():
                    for _ in range(min(ROUND, args.frames - lo)):
                        t0 = time.perf_counter()
                        fn()
                        sync()
                        ms[name].append((time.perf_counter() - t0) * 1000.0)
        if stopped:
            extra["paused_during_timing"] = f"{len(stopped)} process(es) sharing the device, stopped while timing"
        for s in sessions.values():
            s.close()
        tmp.cleanup()
    rows = {k: summary(v) for k, v in ms.items()}
    if "device_loops" in extra:
        extra["device_loop_graph_replays"] = {k: dl.graph_replays for k, dl in extra.pop("device_loops").items()}
    ref = rows["torch_eager"]["fps"]
    c = model.cfg
    out = {"benchmark": "gpu_bench", "device": {**(gpu_info() or {}), **cpu_info()} if dev.type == "cuda" else cpu_info(),
           "versions": versions(), "threads": args.threads, "n_frames": args.frames,
           "model": {"name": args.model, "arch": "unet" if is_frame_stack(model) else "dit", "resolution": [c.height, c.width],
                     "n_steps": steps, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1)},
           "aoti_compile_s": round(compile_s, 1), "aoti_step_max_abs_vs_eager": parity,
           "timing": f"one frame = {steps} step-graph call(s){'' if kv is None else ' + the kv call'}; loops interleaved "
                     f"in rounds of {ROUND} frames, synchronised per frame",
           "backends": rows, "fps_ratio_vs_torch_eager": {k: round(r["fps"] / ref, 3) for k, r in rows.items()}, **extra}
    write_result(args.out, out)
    print(out)
    return out


if __name__ == "__main__":
    main()
