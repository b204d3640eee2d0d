"""Experiment behind the model card's "refiner alone" rows: train only a motion refiner (models/dit.py
MotionRefiner) on top of a frozen model, at the shipped sampler's single step (t = 1, real context), with
`motion_share` of each frame's loss on its moving pixels. Writes the refiner model (the frozen weights plus
the trained refiner) as a model file. Not yet part of `nextframe train`.

    python tools/train_refiner_frozen.py --model runs/phase7.safetensors --out runs/p7_refiner.safetensors \
        [--hidden 32] [--steps 500] [--motion-share 0.5] [--lr 3e-3]
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from nextframe.data.dataset import WindowDataset
from nextframe.models.dit import MotionRefiner, NextFrameDiT, previous_frames
from nextframe.training.checkpoint import load_model, save_model
from nextframe.training.trainer import motion_share_weights, moved_mask


def one_step_inputs(base: NextFrameDiT, frames: torch.Tensor, actions: torch.Tensor):
    """The frozen model's one-step predictions from pure noise on real context, and each frame's prev/prev2."""
    b, f = frames.shape[:2]
    with torch.no_grad():
        pred = base.forward_sequence(frames, torch.zeros(b, f), actions, torch.randn(frames.shape), torch.ones(b, f),
                                     actions, torch.arange(f))
    prev, prev2 = previous_frames(frames, torch.arange(f))
    flat = lambda z: z[:, 1:].flatten(0, 1)  # noqa: E731  (frame 0 is never a target)
    return flat(pred), flat(prev), flat(prev2)


def moving_pixel_error(refiner, batch) -> tuple[float, float]:
    """(squared error per moving pixel, mean squared error over all pixels), channels summed."""
    frames, pred, prev, prev2 = batch
    with torch.no_grad():
        out = refiner(pred, prev, prev2)
    target = frames[:, 1:].flatten(0, 1)
    moved = moved_mask(frames)[:, 1:].flatten(0, 1)
    err = (out - target).square().sum(1, keepdim=True)
    return float((err * moved).sum() / moved.sum()), float(err.mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default="recordings/train")
    ap.add_argument("--val", default="recordings/val")
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--motion-share", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    base = load_model(args.model).eval()
    cfg = base.cfg
    refiner = MotionRefiner(cfg.channels, args.hidden)
    opt = torch.optim.AdamW(refiner.parameters(), lr=args.lr)
    train = WindowDataset([args.data], cfg.height, cfg.width, 8, cfg.no_action)
    val = WindowDataset([args.val], cfg.height, cfg.width, 8, cfg.no_action)
    rng = np.random.default_rng(args.seed)
    vf, va = val.sample(32, np.random.default_rng(args.seed + 1))
    val_batch = (vf, *one_step_inputs(base, vf, va))
    print({"step": 0, "moving_px_err_and_all_px_err": moving_pixel_error(refiner, val_batch)}, flush=True)
    t0 = time.time()
    for step in range(1, args.steps + 1):
        frames, actions = train.sample(args.batch, rng)
        pred, prev, prev2 = one_step_inputs(base, frames, actions)
        w = motion_share_weights(frames, args.motion_share)[:, 1:].flatten(0, 1)
        loss = ((refiner(pred, prev, prev2) - frames[:, 1:].flatten(0, 1)).square() * w).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            print({"step": step, "s": round(time.time() - t0), "moving_px_err_and_all_px_err": moving_pixel_error(refiner, val_batch)},
                  flush=True)
    model = NextFrameDiT(dataclasses.replace(cfg, motion_refiner=args.hidden))
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("refiner.") for k in missing)
    model.refiner.load_state_dict(refiner.state_dict())
    save_model(model, args.out, {"train_step": str(args.steps)})
    print({"model": args.out})


if __name__ == "__main__":
    main()
