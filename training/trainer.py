"""Teacher-forced training of the next-frame model.

One window of F frames gives F-1 targets in a single pass: the clean frames (noise-augmented at a small
random level) and a noised copy of every frame share one sequence; noisy frame i sees clean frames
i-context..i-1 (see NextFrameDiT.forward_sequence). The first frame of a window has no context and is not
a target. Loss: MSE of the denoised frame, with extra weight on pixels that moved since the previous frame,
since the paddle and ball are a tiny share of the pixels but all of the game.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from nextframe.data.dataset import WindowDataset
from nextframe.models.config import ModelConfig
from nextframe.models.dit import NextFrameDiT
from nextframe.models.flow import add_noise, sample_train_times, x0_loss_weight
from nextframe.models.registry import check_trainable_size
from nextframe.training.checkpoint import load_training_state, save_model, save_training_state
from nextframe.training.config import TrainConfig
from nextframe.training.plot import write_loss_svg
from nextframe.training.rollout_pool import RolloutPool
from nextframe.training.ema import ema_update


def moved_mask(x0: torch.Tensor) -> torch.Tensor:
    """x0 [B, F, C, H, W] -> [B, F, 1, H, W] in {0, 1}: 1 where the frame changed since the one before (any
    channel by more than 0.1), dilated by 1 px; frame 0 is 0."""
    diff = (x0[:, 1:] - x0[:, :-1]).abs().amax(dim=2, keepdim=True)
    moved = (diff > 0.1).float()
    b, f = moved.shape[:2]
    moved = F.max_pool2d(moved.flatten(0, 1), 3, stride=1, padding=1).reshape(b, f, *moved.shape[2:])
    return torch.cat([torch.zeros_like(moved[:, :1]), moved], dim=1)


def motion_weights(x0: torch.Tensor, strength: float) -> torch.Tensor:
    """x0 [B, F, C, H, W] -> weights [B, F, 1, H, W]: 1 + strength where the frame changed (moved_mask)."""
    return 1.0 + strength * moved_mask(x0)


def motion_share_weights(x0: torch.Tensor, share: float) -> torch.Tensor:
    """x0 [B, F, C, H, W] -> weights [B, F, 1, H, W] with mean 1 per frame: `share` of the frame's weight is
    split evenly among the changed pixels (moved_mask), the rest spread over all pixels. motion_weights' fixed
    factor leaves a ball of a few pixels at 64x64 a negligible part of the loss; here it weighs as much as any
    other motion. Frames where nothing changed keep weight 1."""
    moved = moved_mask(x0)
    n_pix = moved.shape[-1] * moved.shape[-2]
    n_moved = moved.sum(dim=(2, 3, 4), keepdim=True)
    per_moved = share * n_pix / n_moved.clamp(min=1.0)
    weight = (1.0 - share) + moved * per_moved
    return torch.where(n_moved > 0, weight, torch.ones_like(weight))


def consistency_mask(shown: torch.Tensor, real: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Loss weights [B, F, 1, H, W] in {0, 1} for a rollout pool window (training/rollout_pool.py): shown[:, i]
    is the context for target real[:, i + 1]. A target pixel counts where the real scene did not change there
    (moved_mask) and the frame the model was shown differs from it by at most `tolerance`: the drift the model
    should undo, not the divergence of the game it cannot know about. Frame 0 is never a target (0)."""
    static = moved_mask(real)[:, 1:] == 0.0
    close = (shown[:, :-1] - real[:, 1:]).abs().amax(dim=2, keepdim=True) <= tolerance
    keep = (static & close).float()
    return torch.cat([torch.zeros_like(keep[:, :1]), keep], dim=1)


def training_loss(model: NextFrameDiT, frames: torch.Tensor, actions: torch.Tensor, cfg: TrainConfig,
                  generator: torch.Generator | None = None, shown: torch.Tensor | None = None) -> torch.Tensor:
    """shown: frames to use as context instead of `frames` (a rollout pool window); the loss then counts only
    the pixels consistency_mask keeps."""
    b, f = frames.shape[:2]
    clean_t = torch.rand(b, f, generator=generator) * cfg.context_noise_max
    context = frames
    if shown is not None:
        context = shown
    elif cfg.own_context_prob > 0 and float(torch.rand(1, generator=generator)) < cfg.own_context_prob:
        passes = 1 + int(torch.randint(cfg.own_context_passes, (1,), generator=generator))
        context = chained_own_predictions(model, context, actions, cfg, passes, generator)
    clean = add_noise(context, clean_t, torch.randn(frames.shape, generator=generator))
    t = sample_train_times((b, f), generator=generator, mean=cfg.time_logit_mean, std=cfg.time_logit_std)
    noisy = add_noise(frames, t, torch.randn(frames.shape, generator=generator))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
        denoised = model.forward_sequence(clean, clean_t, actions, noisy, t, actions, torch.arange(f))
    if shown is not None:
        weight = consistency_mask(shown, frames, cfg.pool_tolerance)
    elif cfg.motion_share > 0:
        weight = motion_share_weights(frames, cfg.motion_share)
    else:
        weight = motion_weights(frames, cfg.motion_weight)
    err = (denoised.float() - frames).square() * weight
    w = x0_loss_weight(t)
    return (err * w[:, :, None, None, None])[:, 1:].mean()


@torch.no_grad()
def own_predictions(model: NextFrameDiT, frames: torch.Tensor, actions: torch.Tensor, cfg: TrainConfig,
                    generator: torch.Generator | None) -> torch.Tensor:
    """The model's own one-step predictions of frames 1..F-1 from the frames before them (frame 0 stays as
    given). Used as context, they show the model its own errors, so it learns to correct them instead of
    compounding them over an open-loop rollout (exposure bias; measured: drift within 10 frames without it).
    Fed its own output again, a second pass gives predictions made from predicted context: two-step errors."""
    b, f = frames.shape[:2]
    noise = torch.randn(frames.shape, generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
        pred = model.forward_sequence(frames, torch.zeros(b, f), actions, noise, torch.ones(b, f), actions, torch.arange(f))
    return torch.cat([frames[:, :1], pred[:, 1:].float().clamp(-1, 1)], dim=1)


def chained_own_predictions(model: NextFrameDiT, frames: torch.Tensor, actions: torch.Tensor, cfg, passes: int,
                            generator: torch.Generator | None) -> torch.Tensor:
    """own_predictions fed its own output `passes` times: context with up to passes-step compounded errors."""
    for _ in range(passes):
        frames = own_predictions(model, frames, actions, cfg, generator)
    return frames


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.total_steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


class Trainer:
    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        torch.manual_seed(cfg.seed)
        check_trainable_size(model_cfg)
        self.model = NextFrameDiT(model_cfg)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        decay, no_decay = [], []
        for name, p in self.trainable_parameters(self.model, cfg.trainable):
            (no_decay if p.dim() < 2 or "embed" in name or "distance_bias" in name else decay).append(p)
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99))
        self.step = 0
        self.history: list[tuple[int, float]] = []
        os.makedirs(cfg.out_dir, exist_ok=True)
        self.ckpt_path = os.path.join(cfg.out_dir, "train_state.safetensors")
        self.log_path = os.path.join(cfg.out_dir, "log.jsonl")
        if os.path.isfile(self.ckpt_path):
            self.step, _ = load_training_state(self.ckpt_path, self.model, self.ema, self.opt)
            self.history = self._read_history()
        elif cfg.init_from:
            self.warm_start(cfg.init_from)

    @staticmethod
    def trainable_parameters(model: NextFrameDiT, prefixes: tuple[str, ...]) -> list[tuple[str, torch.nn.Parameter]]:
        """(name, parameter) pairs to optimise: all, or those whose name starts with one of `prefixes`; the
        others get requires_grad False, so the frozen part of the forward pass builds no graph."""
        if not prefixes:
            return list(model.named_parameters())
        chosen = []
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(tuple(prefixes)))
            if p.requires_grad:
                chosen.append((name, p))
        if not chosen:
            raise ValueError(f"train config: trainable {list(prefixes)} matches no parameter of the model "
                             f"(e.g. {next(iter(dict(model.named_parameters())))})")
        return chosen

    @torch.no_grad()
    def warm_start(self, path: str) -> None:
        """Copy weights from a model file. A layer that grew input features (e.g. the patch embedding when the
        previous frame is added to the input) keeps the old weights on the old features and zeros elsewhere,
        so the warm-started model computes exactly what the old one did."""
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            old = {k: f.get_tensor(k) for k in f.keys()}
        for name, p in self.model.state_dict().items():
            if name not in old:
                continue
            src = old[name]
            if src.shape == p.shape:
                p.copy_(src)
            elif src.dim() == p.dim() == 2 and src.shape[0] == p.shape[0] and src.shape[1] < p.shape[1]:
                p.zero_()
                in_old = src.shape[1]
                # patchify orders features (channel, py, px): old channels come first
                p[:, :in_old].copy_(src)
            else:
                raise ValueError(f"train: cannot warm-start {name} from {path} (shape {tuple(src.shape)} vs {tuple(p.shape)})")
        self.ema.load_state_dict(self.model.state_dict())

    def _read_history(self):
        hist = []
        if os.path.isfile(self.log_path):
            with open(self.log_path) as f:
                for line in f:
                    rec = json.loads(line)
                    if rec.get("kind") == "train" and rec["step"] <= self.step:
                        hist.append((rec["step"], rec["loss"]))
        return hist

    def _log(self, record: dict) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def _update_ema(self):
        ema_update(self.ema, self.model, self.cfg.ema_decay if self.step > self.cfg.warmup_steps else 0.0)

    def save(self):
        save_training_state(self.ckpt_path, self.model, self.ema, self.opt, self.step, {})
        save_model(self.ema, os.path.join(self.cfg.out_dir, "model_ema.safetensors"), {"train_step": str(self.step)})

    def evaluate(self) -> dict | None:
        if not self.cfg.val_episode:
            return None
        from nextframe.data.episode import load_episode
        from nextframe.evaluation.rollout import rollout_episode

        ep = load_episode(self.cfg.val_episode)
        _, m = rollout_episode(self.ema, ep, context=4, n_steps=self.cfg.eval_steps, n_predict=self.cfg.eval_frames)
        return {"model": m["model"]["all"], "copy_baseline": m["copy_baseline"]["all"]}

    def train(self, max_steps: int | None = None) -> list[tuple[int, float]]:
        from tqdm import tqdm

        cfg = self.cfg
        data = WindowDataset(cfg.data, self.model.cfg.height, self.model.cfg.width, cfg.seq_len,
                             self.model.cfg.no_action, cfg.cache_dir, game=self.model.cfg.game)
        rng = np.random.default_rng([cfg.seed, self.step])
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
        end = cfg.total_steps if max_steps is None else min(cfg.total_steps, self.step + max_steps)
        pool = None
        if cfg.pool_context_prob > 0:
            pool = RolloutPool(self.model, data, cfg.batch_size, cfg.seq_len, cfg.pool_min_len, cfg.pool_max_len,
                               rng, torch.Generator().manual_seed(cfg.seed * 7_919 + self.step))
        bar = tqdm(total=end, initial=self.step, desc="train", unit="step", disable=not self.progress)
        self.model.train()
        window_loss, window_t0, window_n = 0.0, time.perf_counter(), 0
        while self.step < end:
            for g in self.opt.param_groups:
                g["lr"] = lr_at(self.step, cfg)
            shown = None
            if pool is not None:
                pool.advance(cfg.pool_frames_per_step)
            if pool is not None and rng.random() < cfg.pool_context_prob:
                shown, frames, actions = pool.window()
            else:
                frames, actions = data.sample(cfg.batch_size, rng)
            loss = training_loss(self.model, frames, actions, cfg, gen, shown)
            if not torch.isfinite(loss):
                raise RuntimeError(f"train: loss is {loss.item()} at step {self.step}; lower lr or check the data")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], cfg.grad_clip)
            self.opt.step()
            self.step += 1
            self._update_ema()
            window_loss += loss.item()
            window_n += 1
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == end:
                dt = time.perf_counter() - window_t0
                rec = {"kind": "train", "step": self.step, "loss": window_loss / window_n, "lr": lr_at(self.step - 1, cfg),
                       "target_frames_per_s": window_n * cfg.batch_size * (cfg.seq_len - 1) / dt, "time": time.time()}
                self._log(rec)
                self.history.append((self.step, rec["loss"]))
                write_loss_svg(os.path.join(cfg.out_dir, "loss.svg"), *zip(*self.history))
                bar.set_postfix(loss=f"{rec['loss']:.4f}", fps=f"{rec['target_frames_per_s']:.0f}")
                window_loss, window_t0, window_n = 0.0, time.perf_counter(), 0
            if self.step % cfg.ckpt_every == 0 or self.step == end:
                self.save()
            if self.step % cfg.eval_every == 0 and cfg.val_episode:
                m = self.evaluate()
                self._log({"kind": "eval", "step": self.step, **m})
                bar.write(f"eval step {self.step}: {json.dumps(m)}")
                window_t0 = time.perf_counter()
        bar.close()
        return self.history
