"""What frame-stack U-Net shapes cost on this CPU: parameters, GFLOP per denoiser call (conv and matmul),
ONNX Runtime latency per call (2 threads, the runtime's engine), PyTorch eager latency, and training throughput
(examples per second, forward + backward + AdamW, bf16 autocast, channels-last). Random weights: timings are
real, outputs meaningless. The ORT and eager calls of all shapes are timed interleaved in rounds.

    python benchmarks/unet_cost.py [--out JSON]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from nextframe.benchmarks.device_info import cpu_info, versions
from nextframe.benchmarks.result_file import write_result
from nextframe.models.unet import FrameStackUNet
from nextframe.models.unet_config import UNetConfig

SHAPES = {"w24b1": {"widths": (24, 48, 96, 128)}, "w32b1 (shipped)": {"widths": (32, 64, 128, 128)},
          "w32b2": {"widths": (32, 64, 128, 128), "blocks": 2}, "w48b1": {"widths": (48, 96, 192, 192)},
          "w64b1": {"widths": (64, 128, 256, 256)}}
NAMES = ("x", "t", "action", "ctx_frames", "ctx_actions", "ctx_t")


def inputs(cfg: UNetConfig, b: int = 1):
    return (torch.randn(b, 3, cfg.height, cfg.width), torch.full((b,), 0.7), torch.full((b,), 2),
            torch.rand(b, cfg.context, 3, cfg.height, cfg.width) * 2 - 1, torch.ones(b, cfg.context, dtype=torch.long),
            torch.zeros(b))


def train_rate(cfg: UNetConfig, seconds: float, batch: int = 16) -> float:
    m = FrameStackUNet(cfg)
    m.channels_last = True
    m = m.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), 1e-4)
    ins = inputs(cfg, batch)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m.forward_raw(*ins)
        loss = out.float().square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return batch * n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--train-seconds", type=float, default=8.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
    rows, sessions, models, feeds = {}, {}, {}, {}
    tmp = tempfile.TemporaryDirectory()
    for name, kw in SHAPES.items():
        cfg = UNetConfig(**kw)
        m = FrameStackUNet(cfg).eval()
        ins = inputs(cfg)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            m(*ins)
        path = os.path.join(tmp.name, "g.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(m, ins, path, input_names=list(NAMES), output_names=["denoised"], opset_version=20, dynamo=False)
        sessions[name] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        models[name], feeds[name] = (m, ins), {k: v.numpy() for k, v in zip(NAMES, ins)}
        rows[name] = {"config": cfg.to_dict(), "params_m": round(sum(p.numel() for p in m.parameters()) / 1e6, 2),
                      "gflop_per_call": round(fc.get_total_flops() / 1e9, 3), "ort_ms": [], "eager_ms": []}
    with torch.no_grad():
        for _ in range(args.rounds):
            for name in SHAPES:
                s, (m, ins) = sessions[name], models[name]
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    s.run(None, feeds[name])
                    rows[name]["ort_ms"].append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                m(*ins)
                rows[name]["eager_ms"].append((time.perf_counter() - t0) * 1000)
    for name, kw in SHAPES.items():
        r = rows[name]
        o, e = np.asarray(r.pop("ort_ms")[args.calls:]), np.asarray(r.pop("eager_ms")[1:])
        r.update({"ort_ms_p50": round(float(np.percentile(o, 50)), 2), "ort_ms_p90": round(float(np.percentile(o, 90)), 2),
                  "ort_ms_p99": round(float(np.percentile(o, 99)), 2), "eager_ms_p50": round(float(np.percentile(e, 50)), 2),
                  "ort_gflop_per_s": round(r["gflop_per_call"] / float(np.median(o)) * 1000, 1),
                  "train_examples_per_s": round(train_rate(UNetConfig(**kw), args.train_seconds), 1)})
        print(json.dumps({name: r}), flush=True)
    out = {"benchmark": "unet_cost", "device": cpu_info(), "versions": {**versions(), "onnxruntime": ort.__version__},
           "threads": args.threads, "frame": [210, 160], "timing": f"ORT and eager interleaved over {args.rounds} rounds",
           "shapes": rows}
    write_result(args.out, out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
