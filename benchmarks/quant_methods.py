"""Post-training quantization side by side: for each FP32 bundle, its quantized copies by method (naive,
PTQ4DM, Q-Diffusion; Q-Diffusion with per-step-group scales) and back end (ONNX Runtime INT8; ModelOpt INT8/FP8
Q/DQ), each measured where users run it, in the C++ runtime: held-out mid-play quality (evaluation/midplay.py:
strict ball, bricks, paddle, PSNR vs the real frames and vs the FP32 bundle's own frames on the same noise),
the graph error recorded in its manifest (per noise level), and FPS, all bundles of a source timed interleaved
in one run. Optionally a GEMM-bound shape (a randomly initialised wide transformer) for how the INT8 gain
scales with the share of matrix products; its quality is not meaningful, its graph error and speed are.

    python benchmarks/quant_methods.py --bundle teacher4=runs/teacher4_bundle --bundle default=BUNDLE \\
        --variants naive,ptq4dm,qdiff,qdiff-g4,modelopt-int8 --gemm-shape --out results.json

A variant is METHOD[-gN][-nosplit][-pct][-attn8|-attnf][-keep=FRAGMENT] (ONNX Runtime INT8, N step groups; qdiff
splits convolutions over concatenations unless -nosplit; -pct / -minmax: activation ranges, default auto (percentile
for a U-Net, min-max for a transformer); -attn8 / -attnf: a transformer's attention products in int8 / float,
default auto (int8 from 128 tokens a frame); -keep: products whose node
name holds FRAGMENT stay float), modelopt-int8 / modelopt-fp8 (Q-Diffusion calibration) or w4a8 (ONNX Runtime
MatMulNBits: 4-bit weights, int8 activations, no calibration; transformer bundles only). On a one-step
bundle the three methods coincide (one noise level): only qdiff (and qdiff-nosplit) run.
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
from nextframe.benchmarks.process_pause import paused
from nextframe.benchmarks.result_file import write_result
from nextframe.evaluation import midplay


def parse_variant(text: str) -> dict:
    """modelopt-int8 | modelopt-fp8 | w4a8 | METHOD (ONNX Runtime INT8), each with options -gN (step groups),
    -nosplit, -pct / -minmax (activation ranges; default auto), -attn8 / -attnf (attention products; default auto),
    -keep=FRAGMENT (products named so stay float; repeatable)."""
    head, *options = text.split("-")
    spec = {"backend": "onnxruntime", "precision": "int8", "method": head, "groups": 1, "split": None,
            "keep_float": [], "calibration": "auto", "attention": "auto"}
    if head == "w4a8":
        spec.update(precision="w4a8", method="qdiff")
    elif head == "modelopt":
        spec.update(backend="modelopt", precision=options.pop(0), method="qdiff")
    for o in options:
        if o.startswith("g") and o[1:].isdigit():
            spec["groups"] = int(o[1:])
        elif o == "nosplit":
            spec["split"] = False
        elif o in ("pct", "minmax"):
            spec["calibration"] = "percentile" if o == "pct" else "minmax"
        elif o in ("attn8", "attnf"):
            spec["attention"] = "int8" if o == "attn8" else "float"
        elif o.startswith("keep="):
            spec["keep_float"].append(o[len("keep="):])
        else:
            raise ValueError(f"quant_methods: unknown variant option {o!r} in {text!r}")
    return spec


def agreement_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of one rollout's frames against another's (same clips, same noise): how far quantization moves
    what users see, apart from how good the FP32 frames are."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else round(10 * np.log10(255.0**2 / mse), 2)


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        dim, patch, depth = (int(x) for x in text.split(","))
    except ValueError:
        raise SystemExit(f"quant_methods: --gemm-shape wants DIM,PATCH,DEPTH (got {text!r})") from None
    if dim % 64 or 64 % patch or depth < 1:
        raise SystemExit(f"quant_methods: --gemm-shape {text}: dim must be a multiple of 64 (64-wide heads), patch "
                         "divide 64, depth >= 1")
    return dim, patch, depth


def gemm_bound_bundle(root: str, dim: int, patch: int, depth: int) -> str:
    import torch

    from nextframe.export.bundle import export_bundle
    from nextframe.models.config import ModelConfig
    from nextframe.models.dit import NextFrameDiT

    torch.manual_seed(0)
    model = NextFrameDiT(ModelConfig(dim=dim, patch=patch, depth=depth, heads=dim // 64)).eval()
    with torch.no_grad():  # zero-initialised outputs and gates would make every layer a no-op
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    path = os.path.join(root, f"gemm_dim{dim}_patch{patch}_depth{depth}")
    export_bundle(model, path, n_steps=1)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", action="append", default=[], help="NAME=FP32_BUNDLE_DIR (repeatable)")
    ap.add_argument("--variants", default="naive,ptq4dm,qdiff,qdiff-g2,modelopt-int8")
    ap.add_argument("--gemm-shape", action="append", nargs="?", const="512,4,6", default=[], metavar="DIM,PATCH,DEPTH",
                    help="also a random transformer of this shape (speed, error; repeatable; alone: 512,4,6)")
    ap.add_argument("--clips", type=int, default=15, help="held-out mid-play clips (of 30) for quality")
    ap.add_argument("--horizon", type=int, default=30)
    ap.add_argument("--calib-windows", type=int, default=16)
    ap.add_argument("--gemm-calib-windows", type=int, default=4,
                    help="calibration windows for the GEMM-bound shape (its cache feeds are 16 MB each; ONNX Runtime's "
                         "calibrator holds every intermediate tensor of every feed: 16 windows ran out of 24 GB)")
    ap.add_argument("--fps-frames", type=int, default=150)
    ap.add_argument("--threads", default="2", help="ONNX Runtime threads for quality and timing; a list (1,2) times "
                    "each count, and compares each bundle at its fastest count too")
    ap.add_argument("--pause-pid", type=int, action="append", default=[],
                    help="stop this process (SIGSTOP) while bundles are timed, e.g. a training run sharing the cores")
    ap.add_argument("--keep", default=None, help="write the quantized bundles here (default: a temporary dir)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from nextframe.data.record import record_episode
    from nextframe.quant.bundle import quantize_bundle

    variants = [v for v in args.variants.split(",") if v]
    threads = [int(t) for t in str(args.threads).split(",")]
    clips = midplay.load_or_record_clips("data_cache/midplay_clips.npz")
    clips = [midplay.Clip(c.frames[: 4 + args.horizon], c.lead_actions[: 4 + args.horizon], c.source)
             for c in clips[: args.clips]]
    calib = [record_episode("Breakout", 400, 6000 + i, 0)[0] for i in range(4)]  # seeds used nowhere else
    tmp = tempfile.TemporaryDirectory(prefix="nf-quant-")
    root = args.keep or tmp.name
    sources = dict(e.split("=", 1) for e in args.bundle)
    for shape in args.gemm_shape:
        dim, patch, depth = parse_shape(shape)
        sources[f"gemm_dim{dim}_patch{patch}" + (f"_depth{depth}" if depth != 6 else "")] = gemm_bound_bundle(root, dim, patch, depth)
    result = {"benchmark": "quant_methods", "device": cpu_info(), "versions": versions(),
              "clips": {"n": len(clips), "horizon": args.horizon, "digest": midplay.clips_digest(clips)},
              "timing": f"C++ runtime, ORT CPU, {'/'.join(map(str, threads))} threads, bundles of a source interleaved "
                        f"in rounds of {ROUND_FRAMES} frames", "sources": {}}
    for name, fp32 in sources.items():
        with open(os.path.join(fp32, "manifest.json")) as f:
            n_steps = json.load(f)["sampler"]["n_steps"]
        quality = not name.startswith("gemm_")
        rows = {"fp32": {"path": fp32}}
        for v in variants:
            spec = parse_variant(v)
            if n_steps == 1 and (spec["method"] != "qdiff" or spec["groups"] > 1) and spec["split"] is None:
                continue  # one noise level: the methods coincide
            if spec["groups"] > n_steps:
                continue
            out = os.path.join(root, f"{name}_{v}")
            t0 = time.time()
            m = quantize_bundle(fp32, out, calib, method=spec["method"], precision=spec["precision"],
                                n_windows=args.calib_windows if quality else args.gemm_calib_windows, frames_per_window=4, groups=spec["groups"],
                                backend=spec["backend"], split=spec["split"], keep_float=spec["keep_float"],
                                calibration=spec["calibration"], attention=spec["attention"],
                                calib_names=["recorded: Breakout seeds 6000-6003, 400 steps"])
            rows[v] = {"path": out, **spec, "quantize_s": round(time.time() - t0, 1),
                       "split_convs": len(m["quantization"]["split_convs"]),
                       "error_vs_fp32": m["quantization"]["error_vs_fp32"]}
        if quality:
            frames = {}
            for v, row in rows.items():
                t0 = time.time()
                frames[v] = midplay.runtime_predictor(row["path"], seed=0, threads=threads[-1])(clips)
                real = [midplay.per_frame(c.frames[4:], p, c.frames[3]) for c, p in zip(clips, frames[v])]
                row["midplay"] = midplay.by_horizon(real)
                row["psnr_vs_fp32_frames"] = agreement_psnr(frames[v], frames["fp32"])
                row["eval_s"] = round(time.time() - t0, 1)
                print(json.dumps({"source": name, "variant": v, "midplay_first_horizon": next(iter(row["midplay"].values())),
                                  "psnr_vs_fp32_frames": row["psnr_vs_fp32_frames"]}), flush=True)
        fps = {}
        with paused(args.pause_pid):
            for n in threads:
                fps[n] = time_bundles({v: r["path"] for v, r in rows.items()}, clips[0].frames, clips[0].lead_actions,
                                      args.fps_frames, n)
        best_fp32 = max(fps[n]["fp32"]["fps"] for n in threads)
        for v, row in rows.items():
            if len(threads) == 1:
                row["fps"] = fps[threads[0]][v]
                row["fps_ratio_vs_fp32"] = round(fps[threads[0]][v]["fps"] / fps[threads[0]]["fp32"]["fps"], 3)
            else:
                row["fps_by_threads"] = {str(n): fps[n][v] for n in threads}
                row["fps_ratio_vs_fp32"] = {str(n): round(fps[n][v]["fps"] / fps[n]["fp32"]["fps"], 3) for n in threads}
                best = max(threads, key=lambda n: fps[n][v]["fps"])
                row["fastest"] = {"threads": best, "fps": fps[best][v]["fps"],
                                  "ratio_vs_fastest_fp32": round(fps[best][v]["fps"] / best_fp32, 3)}
            if not args.keep:
                row.pop("path")
        result["sources"][name] = {"fp32_bundle": fp32, "n_steps": n_steps, "rows": rows}
        print(json.dumps({"source": name, "fps_ratio_vs_fp32": {v: r["fps_ratio_vs_fp32"] for v, r in rows.items()}}),
              flush=True)
        write_result(args.out, result)  # after every source: a later one failing keeps what was measured
    tmp.cleanup()
    write_result(args.out, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
