"""Train the MAR image model (models/mar.py) on labelled frames; resumable, with an EMA and a JSONL log.

Run as `python -m nextframe.training.train_mar`. The run directory holds
model_ema.safetensors (what ships), state.safetensors (weights, EMA, optimizer moments and step:
training/checkpoint.py's training state) and log.jsonl; rerunning with the same --run continues from the last
checkpoint.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time

import numpy as np
import torch

from nextframe.data.image_set import cached_image_set
from nextframe.models.mar import MarModel
from nextframe.models.mar_config import MarConfig
from nextframe.training.checkpoint import load_training_state, save_training_state
from nextframe.training.mar_checkpoint import read_mar_metadata, save_mar
from nextframe.training.ema import ema_update, warmup_decay


def token_stats(images: np.ndarray) -> tuple[float, float]:
    x = torch.from_numpy(images[:: max(1, len(images) // 4000)]).float() / 127.5 - 1.0
    return float(x.mean()), float(x.std())


def train(args) -> None:
    torch.manual_seed(args.seed)
    os.makedirs(args.run, exist_ok=True)
    state_path, ema_path = os.path.join(args.run, "state.safetensors"), os.path.join(args.run, "model_ema.safetensors")
    classes = tuple(args.classes.split(","))
    images, labels = cached_image_set(args.cache, args.data, classes, every=args.every)
    if os.path.isfile(state_path):
        cfg = MarConfig.from_json(read_mar_metadata(state_path)["config"])
    else:
        mean, std = token_stats(images)
        cfg = MarConfig(dim=args.dim, depth=args.depth, heads=args.heads, head_width=args.head_width,
                        head_depth=args.head_depth, classes=classes, token_mean=mean, token_std=std)
    model = MarModel(cfg)
    ema = copy.deepcopy(model)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.02)
    step = load_training_state(state_path, model, ema, opt)[0] if os.path.isfile(state_path) else 0
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"train-mar: {len(images)} frames, {len(classes)} classes, {n_params / 1e6:.2f}M params, from step {step}", flush=True)
    rng = np.random.default_rng([args.seed, step])
    gen = torch.Generator().manual_seed(args.seed * 100003 + step)
    with open(os.path.join(args.run, "log.jsonl"), "a") as log:
        t_end = time.time() + args.seconds
        t_save = time.time()
        losses = []
        while step < args.steps and time.time() < t_end:
            idx = rng.integers(0, len(images), args.batch)
            x = torch.from_numpy(images[idx])
            tokens = model.to_tokens(x)
            y = torch.from_numpy(labels[idx])
            lr = args.lr * min(1.0, (step + 1) / args.warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            loss = model.loss(tokens, y, gen, noise_draws=args.noise_draws)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            ema_update(ema, model, warmup_decay(args.ema, step))
            step += 1
            losses.append(loss.item())
            if step % args.log_every == 0:
                rec = {"step": step, "loss": float(np.mean(losses)), "lr": lr, "time": time.time()}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                print(rec, flush=True)
                losses = []
            if time.time() - t_save > args.save_every_s:
                checkpoint(model, ema, opt, step, state_path, ema_path)
                t_save = time.time()
    checkpoint(model, ema, opt, step, state_path, ema_path)
    print(f"train-mar: stopped at step {step}", flush=True)


def checkpoint(model, ema, opt, step, state_path, ema_path):
    save_training_state(state_path, model, ema, opt, step, {})
    save_mar(ema, ema_path, {"step": step})


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m nextframe.training.train_mar", description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", required=True, help="directories of recorded episodes")
    ap.add_argument("--cache", required=True, help="npz cache of the frames at model resolution")
    ap.add_argument("--run", required=True)
    ap.add_argument("--classes", default="Breakout,Pong,SpaceInvaders,Freeway,MsPacman")
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--head-width", type=int, default=256)
    ap.add_argument("--head-depth", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--noise-draws", type=int, default=2)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--steps", type=int, default=10**9)
    ap.add_argument("--seconds", type=float, default=3600)
    ap.add_argument("--save-every-s", type=float, default=300)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    train(ap.parse_args(argv))


if __name__ == "__main__":
    main()
