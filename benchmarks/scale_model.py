"""Write one of gpu_bench's random-weight model shapes as a model file, so that the ordinary pipeline (`nextframe
export`, `nextframe bench`) runs it: the NFD-310M shape (224x384 frames, patch 16, dim 1024, depth 16; 1.2 GB in
float32) measures what a model of published scale costs on a machine, and checks that export and the core hold up at
that size. Random weights: timing and parity only, its frames are noise.

    python benchmarks/scale_model.py --model nfd310m --out /tmp/nfd310m.safetensors
    nextframe export /tmp/nfd310m.safetensors --out /tmp/nfd310m_bundle --steps 4 --frame-graph
    nextframe bench /tmp/nfd310m_bundle --backend ort-cpu,ort-device --frames 20 --warmup 2 --json
"""
from __future__ import annotations

import argparse
import os

from nextframe.benchmarks.gpu_bench import build_model


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("nfd310m", "tiny"), default="nfd310m")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if os.path.exists(args.out):  # never replace a file the user has
        raise SystemExit(f"scale_model: {args.out} exists (choose another --out)")
    from nextframe.training.checkpoint import save_model

    model = build_model(args.model)
    save_model(model, args.out, {"note": f"gpu_bench's {args.model} shape, random weights (speed only)"})
    n = sum(p.numel() for p in model.parameters())
    print(f"scale_model: {args.model}, {n / 1e6:.1f}M parameters -> {args.out}")
    return args.out


if __name__ == "__main__":
    main()
