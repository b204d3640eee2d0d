"""Training of the frame-stack U-Net world model (models/unet.py), on the CPU or a CUDA device.

Every example is one target frame, its K context frames and the actions: the frames live in one uint8 tensor
on the training device (data/frame_store.py), so a batch is an index gather, not a data loader. Loss: EDM's
unit-variance target for the network output F, with extra weight where the frame changed (the paddle, the
ball and a breaking brick are a few hundred of 33,600 pixels). Noise levels are logit-normal in flow time,
plus a share at t = 1 exactly, where every sampler starts (the one-step prediction is made there).

Against drift, a share of each batch takes its context from the model's own open-loop rollout of up to
`own_context_passes` frames, started from real context R frames before the target and following the
recorded actions: the model learns to pull its own errors back toward the real frame instead of compounding
them. The context is augmented with noise at a random level, given to the model (ctx_t), as the runtime can.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time

import torch
import torch.nn.functional as F

from nextframe.data.frame_store import FrameStore
from nextframe.models.palette import snap_torch
from nextframe.models.registry import check_trainable_size
from nextframe.models.unet import FrameStackUNet
from nextframe.models.unet_config import UNetConfig
from nextframe.training.checkpoint import load_training_state, save_model, save_training_state
from nextframe.training.config import TrainConfig
from nextframe.training.plot import write_loss_svg
from nextframe.training.ema import ema_update, warmup_decay

T_MIN = 2e-3  # below this c_out ~ 0 and the unit-variance target is ill-conditioned


def sample_times(b: int, cfg: TrainConfig, generator, device) -> torch.Tensor:
    t = torch.sigmoid(cfg.time_logit_mean + cfg.time_logit_std * torch.randn(b, generator=generator, device=device))
    t = torch.where(torch.rand(b, generator=generator, device=device) < cfg.pure_noise_prob, torch.ones_like(t), t)
    return t.clamp(T_MIN, 1.0)


def change_weights(prev: torch.Tensor, target: torch.Tensor, strength: float) -> torch.Tensor:
    """[B, 1, H, W]: 1 + strength where target differs from prev (any channel by > 0.1), dilated by 1 px."""
    moved = ((target - prev).abs().amax(dim=1, keepdim=True) > 0.1).float()
    return 1.0 + strength * F.max_pool2d(moved, 3, stride=1, padding=1)


def autocast(device: torch.device, enabled: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def rollout_context(model: FrameStackUNet, frames: torch.Tensor, actions: torch.Tensor, n_frames: int,
                    n_steps: int, generator, bf16: bool) -> torch.Tensor:
    """frames [B, K + n_frames + 1, ...] real, actions likewise (lead actions). The model rolls out frames
    K .. K + n_frames - 1 from the real first K, open loop; returns the last K frames of that rollout, the
    context for target frame K + n_frames (the rollout's own predictions, snapped to the model's palette where it
    has one, and real frames where n_frames < K)."""
    k = model.cfg.context
    b = frames.shape[0]
    ctx = frames[:, :k]
    times = [1.0 - i / n_steps for i in range(n_steps + 1)]
    zeros = torch.zeros(b, device=frames.device)
    for r in range(n_frames):
        a, ca = actions[:, k + r], actions[:, r : r + k]
        x = torch.randn(frames[:, 0].shape, generator=generator, device=frames.device)
        for t, t_next in zip(times[:-1], times[1:]):
            with autocast(frames.device, bf16):
                d = model(x, torch.full((b,), t, device=frames.device), a, ctx, ca, zeros).float()
            x = d + (t_next / t) * (x - d)
        x = x.clamp(-1, 1)
        if getattr(model, "palette", None) is not None:  # as the runtime keeps its frames (models/palette.py)
            x = snap_torch(x, model.palette)
        ctx = torch.cat([ctx[:, 1:], x[:, None]], dim=1)
    return ctx


@dataclasses.dataclass
class ContextBatch:
    """One training example per row: what the model is conditioned on and the real frame it should produce."""
    target: torch.Tensor  # [B, C, H, W] the real frame
    prev_real: torch.Tensor  # [B, C, H, W] the real frame before it (for change weights)
    action: torch.Tensor  # [B] the action that led to target
    ctx: torch.Tensor  # [B, K, C, H, W] context, noised to ctx_t
    ctx_actions: torch.Tensor  # [B, K]
    ctx_t: torch.Tensor  # [B]

    def predict(self, model: FrameStackUNet, x: torch.Tensor, t: torch.Tensor, bf16: bool) -> torch.Tensor:
        with autocast(x.device, bf16):
            return model(x, t, self.action, self.ctx, self.ctx_actions, self.ctx_t).float()


def context_batch(frames: torch.Tensor, actions: torch.Tensor, context: int, context_noise_max: float, generator=None,
                  rollout_model: FrameStackUNet | None = None, n_own: int = 0, n_rollout: int = 0,
                  own_steps: int = 1, bf16: bool = True) -> ContextBatch:
    """frames [B, K + R + 1, C, H, W] in [-1, 1] (R = n_rollout), actions [B, K + R + 1] lead actions; the last
    frame is the target. The first n_own examples take their context from rollout_model's own R-frame rollout,
    the rest the real K frames before the target. Context noise: level ~ U(0, context_noise_max) per example."""
    k, r, dev = context, n_rollout, frames.device
    b = frames.shape[0]
    ctx = frames[:, r : r + k]
    if n_own and r:
        own = rollout_context(rollout_model, frames[:n_own], actions[:n_own], r, own_steps, generator, bf16)
        ctx = torch.cat([own, ctx[n_own:]], dim=0)
    ctx_t = torch.rand(b, generator=generator, device=dev) * context_noise_max
    noise = torch.randn(ctx.shape, generator=generator, device=dev)
    ctx = (1 - ctx_t)[:, None, None, None, None] * ctx + ctx_t[:, None, None, None, None] * noise
    return ContextBatch(frames[:, -1], frames[:, -2], actions[:, -1], ctx, actions[:, r : r + k], ctx_t)


def unet_loss(model: FrameStackUNet, batch: ContextBatch, cfg: TrainConfig, generator=None, forward=None) -> torch.Tensor:
    """forward: model.forward_raw or a compiled version of it (cfg.torch_compile)."""
    b, dev = batch.target.shape[0], batch.target.device
    t = sample_times(b, cfg, generator, dev)
    x = (1 - t)[:, None, None, None] * batch.target + t[:, None, None, None] * torch.randn(
        batch.target.shape, generator=generator, device=dev)
    with autocast(dev, cfg.bf16):
        out = (forward or model.forward_raw)(x, t, batch.action, batch.ctx, batch.ctx_actions, batch.ctx_t)
    goal = model.network_target(batch.target, x, t, batch.ctx[:, -1])
    weight = change_weights(batch.prev_real, batch.target, cfg.motion_weight)
    return ((out.float() - goal).square() * weight).mean()


def lr_scale(progress: float, warmup: float, min_ratio: float) -> float:
    if progress < warmup:
        return progress / max(warmup, 1e-9)
    p = (progress - warmup) / max(1e-9, 1 - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


class UNetTrainer:
    def __init__(self, model_cfg: UNetConfig, cfg: TrainConfig, progress: bool = True, store: FrameStore | None = None):
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("train: device 'cuda' asked for, but torch sees no CUDA device")
        self.cfg, self.progress = cfg, progress
        self.device = torch.device(cfg.device)
        torch.manual_seed(cfg.seed)
        check_trainable_size(model_cfg)
        self.model = FrameStackUNet(model_cfg).to(self.device)
        # channels-last convs: 1.5x faster here on the CPU (shared/world-model-notes.md) and cuDNN's fast path
        self.model.channels_last = True
        self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.forward = torch.compile(self.model.forward_raw) if cfg.torch_compile else self.model.forward_raw
        decay = [p for n, p in self.model.named_parameters() if p.dim() >= 2 and "embed" not in n]
        no_decay = [p for n, p in self.model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99))
        self.step = 0
        self.elapsed_s = 0.0  # training time behind the weights (resumes carry it)
        self.store = store
        os.makedirs(cfg.out_dir, exist_ok=True)
        self.ckpt_path = os.path.join(cfg.out_dir, "train_state.safetensors")
        self.log_path = os.path.join(cfg.out_dir, "log.jsonl")
        self.model_path = os.path.join(cfg.out_dir, "model_ema.safetensors")
        self.history: list[tuple[int, float]] = []
        if os.path.isfile(self.ckpt_path):
            self.step, meta = load_training_state(self.ckpt_path, self.model, self.ema, self.opt)
            self.elapsed_s = float(meta.get("elapsed_s", 0.0))
        elif cfg.init_from:
            self.warm_start(cfg.init_from, model_cfg)

    # parameters a warm start may lack: zero-initialised additions that leave the old model's output unchanged
    NEW_ZERO_INIT = ("skip_gain.",)

    @torch.no_grad()
    def warm_start(self, path: str, model_cfg: UNetConfig) -> None:
        from safetensors import safe_open

        from nextframe.training.checkpoint import model_metadata

        have = UNetConfig.from_dict(json.loads(model_metadata(path).get("config", "{}")))
        # a wider input kernel is a function-preserving change: the old 1x1 weights become the centre tap
        if dataclasses.replace(have, stem_kernel=model_cfg.stem_kernel) != model_cfg or have.stem_kernel > model_cfg.stem_kernel:
            raise ValueError(f"train: init_from {path} has another model config")
        with safe_open(path, framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
        if have.stem_kernel != model_cfg.stem_kernel:
            w = torch.zeros_like(self.model.conv_in.weight)
            c = (model_cfg.stem_kernel - have.stem_kernel) // 2
            w[:, :, c : c + have.stem_kernel, c : c + have.stem_kernel] = state["conv_in.weight"]
            state["conv_in.weight"] = w
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith(self.NEW_ZERO_INIT) for k in missing):
            raise ValueError(f"train: cannot warm-start from {path} (missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.ema.load_state_dict(self.model.state_dict())

    def progress_fraction(self) -> float:
        p = self.step / self.cfg.total_steps
        if self.cfg.time_budget_s > 0:
            p = max(p, self.elapsed_s / self.cfg.time_budget_s)
        return min(1.0, p)

    def _log(self, record: dict) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def _update_ema(self):
        ema_update(self.ema, self.model, warmup_decay(self.cfg.ema_decay, self.step))

    def save(self):
        save_training_state(self.ckpt_path, self.model, self.ema, self.opt, self.step,
                            {"elapsed_s": round(self.elapsed_s, 1)})
        save_model(self.ema, self.model_path, {"train_step": str(self.step), "default_steps": "4"})

    def load_data(self) -> FrameStore:
        if self.store is None:
            c = self.model.cfg
            self.store = FrameStore.from_files(self.cfg.data, c.game, c.n_actions, self.device, self.cfg.cache_dir or None)
        # the game's colours travel with the saved model: generated frames are snapped to them (models/palette.py)
        self.model.palette = self.ema.palette = self.store.palette_rgb.numpy()
        shares = self.store.weight_events(self.cfg.event_rows, self.cfg.event_weight, self.cfg.bounce_weight,
                                          self.cfg.bounce_rule)
        self._log({"kind": "data", "frames": len(self.store), "targets": len(self.store.targets), **shares})
        return self.store

    def train(self, max_steps: int | None = None) -> list[tuple[int, float]]:
        from tqdm import tqdm

        cfg, k = self.cfg, self.model.cfg.context
        store = self.load_data()
        # tensors are drawn on the training device (a CPU draw of a batch of noise frames, copied over, would
        # cost more than the GPU's step); the per-batch choices come from a host generator (no device sync)
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 1_000_003 + self.step)
        host = torch.Generator().manual_seed(cfg.seed * 7_919 + self.step)
        end = cfg.total_steps if max_steps is None else min(cfg.total_steps, self.step + max_steps)
        warmup = cfg.warmup_steps / cfg.total_steps
        bar = tqdm(total=end, initial=self.step, desc="train", unit="step", disable=not self.progress)
        self.model.train()
        win_loss, win_n, win_t0 = 0.0, 0, time.perf_counter()
        last = time.perf_counter()
        while self.step < end and self.progress_fraction() < 1.0:
            lr = cfg.lr * lr_scale(self.progress_fraction(), warmup, cfg.min_lr_ratio)
            for g in self.opt.param_groups:
                g["lr"] = lr
            own = (cfg.own_context_prob > 0 and self.step >= cfg.own_context_after
                   and float(torch.rand(1, generator=host)) < 0.5)
            # half the batches carry own-context examples, at twice the share: one rollout length per batch
            n_rollout = int(torch.randint(1, cfg.own_context_passes + 1, (1,), generator=host)) if own else 0
            n_own = min(cfg.batch_size, round(2 * cfg.own_context_prob * cfg.batch_size)) if own else 0
            frames, actions = store.window(store.sample_targets(cfg.batch_size, gen), k + n_rollout)
            batch = context_batch(frames, actions, k, cfg.context_noise_max, gen, self.model, n_own, n_rollout,
                                  cfg.own_context_steps, cfg.bf16)
            loss = unet_loss(self.model, batch, cfg, gen, self.forward)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.opt.step()
            self.step += 1
            self._update_ema()
            now = time.perf_counter()
            self.elapsed_s += now - last
            last = now
            win_loss += loss.detach()  # no device sync per step; checked at each log
            win_n += 1
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == end:
                dt = time.perf_counter() - win_t0
                mean_loss = float(win_loss) / win_n
                if not math.isfinite(mean_loss):
                    raise RuntimeError(f"train: loss is {mean_loss} near step {self.step}; lower lr or check the data")
                rec = {"kind": "train", "step": self.step, "loss": mean_loss, "lr": lr,
                       "target_frames_per_s": win_n * cfg.batch_size / dt, "elapsed_s": round(self.elapsed_s, 1),
                       "time": time.time()}
                self._log(rec)
                self.history.append((self.step, rec["loss"]))
                bar.set_postfix(loss=f"{rec['loss']:.4f}", fps=f"{rec['target_frames_per_s']:.0f}")
                win_loss, win_n, win_t0 = 0.0, 0, time.perf_counter()
            if self.step % cfg.ckpt_every == 0:
                self.save()
                last = time.perf_counter()
        bar.close()
        self.save()
        if len(self.history) >= 2:
            write_loss_svg(os.path.join(cfg.out_dir, "loss.svg"), *zip(*self.history))
        return self.history
