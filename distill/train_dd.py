"""Distilled Decoding of the MAR image model (distill/distilled_decoding.py): teacher pairs from the C++ runtime,
then the student, resumable. Run as `python -m nextframe.distill.train_dd`.

Stage 1 (pairs.npz in the run dir, made once): n pairs per class of (label, noise, final tokens) from the teacher's
bundle with the fixed order and the chosen schedule. Stage 2: the student from the teacher's weights, trained on
them for --seconds; student.safetensors (EMA) carries dd_order and dd_two_step_revealed in its metadata, and
state.safetensors (training/checkpoint.py's training state) lets a rerun with the same --run continue.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time

import numpy as np
import torch

from nextframe.distill.distilled_decoding import DDStudent, dd_loss
from nextframe.models.mar_schedules import tokens_per_step
from nextframe.training.checkpoint import load_training_state, save_training_state
from nextframe.training.mar_checkpoint import load_mar, save_mar
from nextframe.training.ema import ema_update, warmup_decay


def make_pairs(bundle_dir: str, path: str, n_per_class: int, schedule: str, order: np.ndarray, seed: int,
               batch: int = 16) -> None:
    from nextframe.runtime.image_session import ImageSession

    with ImageSession(bundle_dir, batch=batch) as s:
        n_classes = len(s.classes)
        labels = np.repeat(np.arange(n_classes), n_per_class).astype(np.int64)
        noise = np.random.default_rng(seed).standard_normal((len(labels), s.bundle.n_tokens, s.bundle.token_dim),
                                                            dtype=np.float32)
        t0 = time.time()
        _, finals = s.generate(None, len(labels), labels=labels, noise=noise, order=np.tile(order, (len(labels), 1)),
                               schedule=schedule, return_tokens=True)
        print(f"pairs: {len(labels)} in {time.time() - t0:.0f} s", flush=True)
    np.savez(path, labels=labels, noise=noise, final=finals, order=order, schedule=schedule)


def train(args) -> None:
    os.makedirs(args.run, exist_ok=True)
    pairs_path = os.path.join(args.run, "pairs.npz")
    teacher = load_mar(args.teacher).float()
    n = teacher.cfg.n_tokens
    order = np.random.default_rng(args.seed).permutation(n).astype(np.int64)
    if not os.path.isfile(pairs_path):
        make_pairs(args.bundle, pairs_path, args.pairs_per_class, args.schedule, order, args.seed + 1)
    with np.load(pairs_path) as f:
        labels, noise, final = (torch.from_numpy(f[k]) for k in ("labels", "noise", "final"))
        order = f["order"]
    revealed = list(np.cumsum(tokens_per_step(args.n_ar_steps, n))[:-1])
    two_step = int(revealed[args.n_ar_steps // 2 - 1])
    student_path, state_path = os.path.join(args.run, "student.safetensors"), os.path.join(args.run, "state.safetensors")
    student = DDStudent.from_teacher(teacher)
    ema = copy.deepcopy(student)
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    step = load_training_state(state_path, student, ema, opt)[0] if os.path.isfile(state_path) else 0
    student.train()
    gen = torch.Generator().manual_seed(args.seed * 7919 + step)
    order_t = torch.from_numpy(order)
    meta = {"dd_order": json.dumps([int(i) for i in order]), "dd_two_step_revealed": two_step}
    with open(os.path.join(args.run, "log.jsonl"), "a") as log:
        n_val = min(256, len(labels) // 10)
        t_end, t_save, losses = time.time() + args.seconds, time.time(), []
        print(f"train-dd: {len(labels)} pairs ({n_val} held out), from step {step}", flush=True)
        while time.time() < t_end:
            idx = torch.randint(n_val, len(labels), (args.batch,), generator=gen)
            loss = dd_loss(student, noise[idx], labels[idx], final[idx], order_t, revealed, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
            ema_update(ema, student, warmup_decay(args.ema, step))
            step += 1
            losses.append(loss.item())
            if step % 50 == 0:
                with torch.no_grad():
                    ones = torch.ones(n_val, n)
                    val1 = float(((ema(noise[:n_val], ones, labels[:n_val]) - final[:n_val]) ** 2).mean())
                rec = {"step": step, "loss": float(np.mean(losses)), "val_one_step_mse": val1, "time": time.time()}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                print(rec, flush=True)
                losses = []
            if time.time() - t_save > 240:
                checkpoint(student, ema, opt, step, state_path, student_path, meta)
                t_save = time.time()
    checkpoint(student, ema, opt, step, state_path, student_path, meta)


def checkpoint(student, ema, opt, step, state_path, student_path, meta):
    save_training_state(state_path, student, ema, opt, step, {})
    save_mar(ema, student_path, {"step": step, **meta})


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m nextframe.distill.train_dd", description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True, help="the teacher's model file")
    ap.add_argument("--bundle", required=True, help="the teacher's AR bundle (makes the pairs)")
    ap.add_argument("--run", required=True)
    ap.add_argument("--schedule", default="fixed", help="the bundle schedule that defines the teacher's map")
    ap.add_argument("--n-ar-steps", type=int, required=True)
    ap.add_argument("--pairs-per-class", type=int, default=600)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)  # 1e-4 left the student above the class mean after 200 steps
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--seconds", type=float, default=1800)
    ap.add_argument("--seed", type=int, default=0)
    train(ap.parse_args(argv))


if __name__ == "__main__":
    main()
