"""Can a discriminator on the teacher's features tell real frames from the teacher's one-step frames? f-distill
needs it to (its density ratio r comes from one); in the distillation runs it stayed at chance. This trains
heads alone, on the same inputs f-distill gives its discriminator (both frames noised to the same logit-normal
t, teacher features after the middle block, real context), and prints the logistic loss per window of steps
(chance: 2 ln 2 = 1.386) and the final accuracy on held-back batches. One JSON object, also written to --out.

    python benchmarks/discriminator_probe.py --model nextframe/default_model/breakout_dit.safetensors --out JSON

Heads: "mean" is distill/fdistill.DiscriminatorHead (MLP on the frame's mean token); "tokens" scores every
token with the same MLP and averages the logits (PatchGAN-style), so a few-pixel ball is not averaged away.
"""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nextframe.benchmarks.device_info import cpu_info, versions
from nextframe.benchmarks.result_file import write_result
from nextframe.data.dataset import WindowDataset
from nextframe.distill.fdistill import DiscriminatorHead, generate
from nextframe.distill.windows import Window
from nextframe.models.flow import add_noise, sample_train_times
from nextframe.training.checkpoint import load_model


class TokenHead(DiscriminatorHead):
    """The shipped head's MLP, applied per token before the mean instead of after it."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [B, F, N, D] -> [B, F]
        return self.net(features.float())[..., 0].mean(dim=2)


@torch.no_grad()
def features(teacher, w: Window, time_mean: float, time_std: float, g: torch.Generator):
    """(real, fake) teacher features at one shared t per slot; fake = the teacher's one-step frames."""
    fake_x0 = generate(teacher, w, torch.randn(w.target.shape, generator=g))
    t = sample_train_times(w.target.shape[:2], generator=g, mean=time_mean, std=time_std)
    _, real = w.predict(teacher, add_noise(w.target, t, torch.randn(w.target.shape, generator=g)), t, return_features=True)
    _, fake = w.predict(teacher, add_noise(fake_x0, t, torch.randn(fake_x0.shape, generator=g)), t, return_features=True)
    return real, fake


def probe(teacher, data, head: nn.Module, lr: float, steps: int, batch: int, time_mean: float, time_std: float,
          window: int, seed: int) -> dict:
    rng, g = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    losses = []
    for _ in range(steps):
        frames, actions = data.sample(batch, rng)
        real, fake = features(teacher, Window.from_batch(frames, actions, 0.0, False, g), time_mean, time_std, g)
        loss = F.softplus(-head(real)).mean() + F.softplus(head(fake)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    correct = total = 0
    with torch.no_grad():  # held-back batches: other data draws
        for _ in range(4):
            frames, actions = data.sample(batch, rng)
            real, fake = features(teacher, Window.from_batch(frames, actions, 0.0, False, g), time_mean, time_std, g)
            correct += int((head(real) > 0).sum()) + int((head(fake) < 0).sum())
            total += 2 * real.shape[0] * real.shape[1]
    return {"loss_by_window": [round(float(np.mean(losses[i:i + window])), 4) for i in range(0, steps, window)],
            "held_back_accuracy": round(correct / total, 3)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="nextframe/default_model/breakout_dit.safetensors")
    ap.add_argument("--data", default="recordings/train")
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    teacher = load_model(args.model).requires_grad_(False)
    cfg = teacher.cfg
    data = WindowDataset([args.data], cfg.height, cfg.width, 8, cfg.no_action, "data_cache")
    # configs/distill_fdistill.json: disc_lr 1e-4, time logit-normal(1.0, 1.2); then 10x lr, then lower t
    cases = [("mean", 1e-4, 1.0), ("mean", 1e-3, 1.0), ("tokens", 1e-3, 1.0), ("tokens", 1e-3, 0.0)]
    rows = []
    for kind, lr, time_mean in cases:
        head = (DiscriminatorHead if kind == "mean" else TokenHead)(cfg.dim, 256)
        r = probe(teacher, data, head, lr, args.steps, args.batch, time_mean, 1.2, args.window, seed=0)
        rows.append({"head": kind, "lr": lr, "time_logit_mean": time_mean, "time_logit_std": 1.2, **r})
        print(json.dumps(rows[-1]), flush=True)
    result = {"benchmark": "discriminator_probe", "device": cpu_info(), "versions": versions(), "model": args.model,
              "steps": args.steps, "batch": args.batch, "chance_loss": round(2 * math.log(2), 4), "rows": rows}
    print(json.dumps({"rows": [(r["head"], r["lr"], r["time_logit_mean"], r["loss_by_window"][-1],
                                r["held_back_accuracy"]) for r in rows]}))
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
