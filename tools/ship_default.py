"""Write a trained model as a shipped model file (nextframe/default_model/): float16 weights (`load_model` casts
them back to float32), the sampler settings it was measured with, and where it came from.

    python tools/ship_default.py runs/distill/student.safetensors --steps 1 --train-step 34500 \\
        --provenance "one-step student of ..." --out nextframe/default_model/breakout.safetensors --force

The settings are what `demo`, `play` and `export` use by default; --steps N drops the model's own multi-step
schedule for N evenly spaced steps, --times 1,0.3,0 sets the schedule itself (noise levels from 1 down to 0). An existing --out is replaced only with --force (it is a file in the repository, not a user's).
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=None, help="denoising steps per frame by default (evenly spaced)")
    ap.add_argument("--times", default=None, help="the default schedule instead: noise levels, e.g. 1,0.3,0")
    ap.add_argument("--context-noise", type=float, default=0.0)
    ap.add_argument("--train-step", type=int, required=True, help="training steps of the model (its teacher's for a student)")
    ap.add_argument("--provenance", required=True)
    ap.add_argument("--palette-from", default=None,
                    help="an .npz with a 'palette' array (a frame store cache, data_cache/frame_store_*.npz): the game "
                         "colours generated frames are snapped to, for a model whose file has none")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    if (args.steps is None) == (args.times is None):
        print("ship_default: give --steps or --times", file=sys.stderr)
        return 2
    from nextframe.models.flow import is_schedule

    times = [float(v) for v in args.times.split(",")] if args.times else None
    if times is not None and not is_schedule(times):
        print(f"ship_default: --times {args.times} must fall from 1 to 0", file=sys.stderr)
        return 2
    if os.path.exists(args.out) and not args.force:
        print(f"ship_default: {args.out} exists; pass --force to replace it", file=sys.stderr)
        return 2
    from nextframe.training.checkpoint import load_model, model_metadata, save_model

    model = load_model(args.model)
    source = model_metadata(args.model)
    if args.palette_from:
        import numpy as np

        from nextframe.models.palette import check_palette

        with np.load(args.palette_from) as d:
            model.palette = check_palette(d["palette"])
    steps = len(times) - 1 if times else args.steps
    meta = {"default_steps": json.dumps(steps), **({"default_times": json.dumps(times)} if times else {}),
            "default_context_noise": json.dumps(args.context_noise),
            "train_step": str(args.train_step), "provenance": args.provenance,
            **{k: source[k] for k in ("distill_method", "distill_step") if k in source}}
    save_model(model.half(), args.out, meta)  # with the config and the palette, as every saved model
    print(json.dumps({"out": args.out, "bytes": os.path.getsize(args.out), **meta}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
