"""Step distillation of a frame-stack (unet) teacher: trajectory distillation or consistency distillation.

The teacher is frozen; the student (and, for CD, the target network) start as copies of it. Context comes
from the recorded frames (data/frame_store.py), and a share of each batch from the student's own open-loop
rollout (up to own_context_passes frames): the teacher labels drifted context as well as real, so the student
keeps the teacher's pull back toward the real scene. out_dir holds distill_state.safetensors (resumable),
log.jsonl and student.safetensors, the student's EMA with its sampler schedule in the metadata
(default_steps, default_times), which `nextframe export` and `rollout` use as they are.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time

import torch

from nextframe.data.frame_store import FrameStore
from nextframe.distill.checkpoint import load_state, save_state
from nextframe.distill.config import DistillConfig
from nextframe.distill.trajectory import teacher_times, trajectory_loss
from nextframe.distill.unet_consistency import unet_consistency_loss
from nextframe.models.flow import flow_schedule
from nextframe.models.registry import is_frame_stack
from nextframe.training.checkpoint import load_model, model_metadata, save_model
from nextframe.training.unet_trainer import context_batch
from nextframe.training.ema import ema_update

STATE_FILE = "distill_state.safetensors"
STUDENT_FILE = "student.safetensors"


def student_schedule(cfg: DistillConfig) -> list[float]:
    """The times the student is sampled with: what it was trained for."""
    if cfg.method == "trajectory":
        if cfg.student_steps not in (1, 2):
            raise ValueError(f"distill config: a trajectory student samples with 1 or 2 steps (got {cfg.student_steps})")
        return [1.0, 0.0] if cfg.student_steps == 1 else [1.0, cfg.mid_time, 0.0]
    return flow_schedule(cfg.student_steps, cfg.cd_shift)


class UNetDistillTrainer:
    def __init__(self, teacher_path: str, cfg: DistillConfig, progress: bool = True, store: FrameStore | None = None):
        if cfg.method not in ("trajectory", "cd"):
            raise ValueError(f"distill: method {cfg.method!r} is not available for frame-stack teachers (trajectory, cd)")
        if cfg.method == "cd" and cfg.cd_variant != "discrete":
            raise ValueError("distill: frame-stack teachers support discrete CD only")
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("distill: device 'cuda' asked for, but torch sees no CUDA device")
        self.cfg, self.progress, self.store = cfg, progress, store
        self.device = torch.device(cfg.device)
        self.teacher_path = teacher_path
        self.teacher = load_model(teacher_path).requires_grad_(False).to(self.device)
        if not is_frame_stack(self.teacher):
            raise ValueError(f"distill: {teacher_path} is not a frame-stack model; use the transformer trainer")
        self.teacher_meta = model_metadata(teacher_path)
        self.schedule = student_schedule(cfg)
        torch.manual_seed(cfg.seed)
        self.teacher.channels_last = True
        self.teacher = self.teacher.to(memory_format=torch.channels_last)
        self.student = copy.deepcopy(self.teacher).requires_grad_(True).train()
        self.ema = copy.deepcopy(self.teacher)
        self.modules = {"student": self.student, "ema": self.ema}
        if cfg.method == "cd":
            self.target = copy.deepcopy(self.teacher)
            self.modules["target"] = self.target
            self.grid = torch.tensor(flow_schedule(cfg.cd_intervals, cfg.cd_shift), dtype=torch.float32, device=self.device)
        self.opts = {"student": torch.optim.AdamW(self.student.parameters(), lr=cfg.lr, betas=(0.9, 0.99),
                                                  weight_decay=cfg.weight_decay)}
        self.step, self.elapsed_s = 0, 0.0
        os.makedirs(cfg.out_dir, exist_ok=True)
        self.state_path = os.path.join(cfg.out_dir, STATE_FILE)
        self.student_path = os.path.join(cfg.out_dir, STUDENT_FILE)
        self.log_path = os.path.join(cfg.out_dir, "log.jsonl")
        if os.path.isfile(self.state_path):
            self.step, meta = load_state(self.state_path, self.modules, self.opts)
            if meta.get("method") != cfg.method:
                raise ValueError(f"distill: {self.state_path} is a {meta.get('method')} run, the config asks for {cfg.method}")
            self.elapsed_s = float(meta.get("elapsed_s", 0.0))

    def save(self) -> None:
        save_state(self.state_path, self.modules, self.opts, self.step,
                   {"method": self.cfg.method, "teacher": self.teacher_path, "elapsed_s": f"{self.elapsed_s:.1f}"})
        save_model(self.ema, self.student_path, {
            "default_steps": str(len(self.schedule) - 1), "default_times": json.dumps(self.schedule),
            "default_context_noise": self.teacher_meta.get("default_context_noise", "0.0"),
            "distill_method": self.cfg.method, "distill_step": str(self.step)})

    def _log(self, record: dict) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def done(self, end: int) -> bool:
        over_time = self.cfg.time_budget_s > 0 and self.elapsed_s >= self.cfg.time_budget_s
        return self.step >= end or over_time

    def train(self, max_steps: int | None = None) -> int:
        from tqdm import tqdm

        cfg, k = self.cfg, self.teacher.cfg.context
        if self.store is None:
            c = self.teacher.cfg
            self.store = FrameStore.from_files(cfg.data, c.game, c.n_actions, self.device, cfg.cache_dir or None)
        if getattr(self.teacher, "palette", None) is None:  # a teacher saved before models carried their palette
            for m in (self.teacher, self.student, self.ema):
                m.palette = self.store.palette_rgb.numpy()
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 1_000_003 + self.step)
        host = torch.Generator().manual_seed(cfg.seed * 7_919 + self.step)
        end = cfg.total_steps if max_steps is None else min(cfg.total_steps, self.step + max_steps)
        t_times = list(cfg.teacher_times) or teacher_times(cfg.teacher_steps, cfg.teacher_shift)
        bar = tqdm(total=end, initial=self.step, desc=f"distill {cfg.method}", unit="step", disable=not self.progress)
        win_loss, win_n, win_t0, last = 0.0, 0, time.perf_counter(), time.perf_counter()
        while not self.done(end):
            lr = cfg.lr * min(1.0, (self.step + 1) / max(1, cfg.warmup_steps))
            for g in self.opts["student"].param_groups:
                g["lr"] = lr
            own = cfg.own_context_prob > 0 and float(torch.rand(1, generator=host)) < 0.5
            n_rollout = int(torch.randint(1, cfg.own_context_passes + 1, (1,), generator=host)) if own else 0
            n_own = min(cfg.batch_size, round(2 * cfg.own_context_prob * cfg.batch_size)) if own else 0
            frames, actions = self.store.window(self.store.sample_targets(cfg.batch_size, gen), k + n_rollout)
            batch = context_batch(frames, actions, k, cfg.context_noise_max, gen, self.student, n_own, n_rollout, 1, cfg.bf16)
            if cfg.method == "trajectory":
                loss = trajectory_loss(self.student, self.teacher, batch, t_times, cfg.mid_time, cfg.motion_weight, cfg.bf16, gen)
            else:
                loss = unet_consistency_loss(self.student, self.teacher, self.target, batch, self.grid, cfg.motion_weight,
                                             cfg.bf16, gen)
            opt = self.opts["student"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), cfg.grad_clip)
            opt.step()
            self.step += 1
            ema_update(self.ema, self.student, cfg.ema_decay)
            if cfg.method == "cd":
                ema_update(self.target, self.student, cfg.cd_target_decay)
            now = time.perf_counter()
            self.elapsed_s += now - last
            last = now
            win_loss += loss.detach()
            win_n += 1
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.done(end):
                mean_loss = float(win_loss) / win_n
                if not math.isfinite(mean_loss):
                    raise RuntimeError(f"distill: loss is {mean_loss} near step {self.step}; lower lr")
                rec = {"kind": "train", "step": self.step, "loss": mean_loss, "lr": lr,
                       "examples_per_s": win_n * cfg.batch_size / (time.perf_counter() - win_t0),
                       "elapsed_s": round(self.elapsed_s, 1), "time": time.time()}
                self._log(rec)
                bar.set_postfix(loss=f"{mean_loss:.4g}")
                win_loss, win_n, win_t0 = 0.0, 0, time.perf_counter()
            if self.step % cfg.ckpt_every == 0:
                self.save()
                last = time.perf_counter()
        bar.close()
        self.save()
        return self.step
