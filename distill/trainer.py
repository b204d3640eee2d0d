"""DistillTrainer: runs consistency distillation or f-distill from a trained teacher file.

The teacher is loaded with training.checkpoint.load_model and frozen; every trained network (student or
generator, CD target, fake score) starts as a copy of it, so distillation begins from the teacher's own
predictions. out_dir holds distill_state.safetensors (every network, optimizer and the step: a rerun resumes
there), log.jsonl, and student.safetensors: the student's EMA as an ordinary model file whose metadata
default_steps is the student's step count, so `nextframe rollout --model` and `nextframe export` use it as is.
"""
from __future__ import annotations

import copy
import json
import os
import time

import numpy as np
import torch

from nextframe.data.dataset import WindowDataset
from nextframe.distill.checkpoint import load_state, save_state
from nextframe.distill.config import DistillConfig, check_teacher
from nextframe.distill.consistency import cd_grid, consistency_loss, student_times
from nextframe.distill.continuous_consistency import AdaptiveTimeWeight, continuous_consistency_loss, warmup_ratio
from nextframe.distill.fdistill import (DiscriminatorHead, discriminator_loss, fake_score_loss, generate,
                                        generator_loss)
from nextframe.distill.windows import Window
from nextframe.export.bundle import sha256_file
from nextframe.models.flow import flow_schedule
from nextframe.training.checkpoint import load_model, model_metadata, save_model
from nextframe.training.rollout_pool import RolloutPool
from nextframe.training.trainer import chained_own_predictions
from nextframe.training.ema import ema_update

STATE_FILE = "distill_state.safetensors"
STUDENT_FILE = "student.safetensors"


def _adamw(params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay)


class DistillTrainer:
    def __init__(self, teacher_path: str, cfg: DistillConfig, expected_model: dict | None = None, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        self.teacher_path = teacher_path
        self.teacher = load_model(teacher_path).requires_grad_(False)  # FileNotFoundError / ValueError: one line
        check_teacher(self.teacher.cfg, expected_model, teacher_path)
        if cfg.disc_block >= self.teacher.cfg.depth:
            raise ValueError(f"distill config: disc_block {cfg.disc_block} but the teacher has {self.teacher.cfg.depth} blocks")
        self.teacher_sha = sha256_file(teacher_path)
        self.teacher_meta = model_metadata(teacher_path)
        torch.manual_seed(cfg.seed)
        self.student = copy.deepcopy(self.teacher).requires_grad_(True).train()
        self.ema = copy.deepcopy(self.teacher)
        self.modules: dict[str, torch.nn.Module] = {"student": self.student, "ema": self.ema}
        self.opts = {"student": _adamw(self.student.parameters(), cfg.lr, cfg.weight_decay)}
        self.base_lr = {"student": cfg.lr}
        if cfg.continuous_cd:  # no target network: theta^- = sg(theta)
            self.time_weight = AdaptiveTimeWeight()
            self.modules["time_weight"] = self.time_weight
            self.opts["time_weight"] = _adamw(self.time_weight.parameters(), cfg.scm_weight_lr, 0.0)
            self.base_lr["time_weight"] = cfg.scm_weight_lr
        elif cfg.method == "cd":
            self.target = copy.deepcopy(self.teacher)
            self.grid = cd_grid(cfg.cd_intervals, cfg.cd_shift)
            self.modules["target"] = self.target
        else:
            self.fake = copy.deepcopy(self.teacher).requires_grad_(True).train()
            self.disc = DiscriminatorHead(self.teacher.cfg.dim, cfg.disc_hidden)
            self.modules.update(fake=self.fake, disc=self.disc)
            self.opts["fake"] = _adamw(self.fake.parameters(), cfg.fake_lr, cfg.weight_decay)
            self.opts["disc"] = _adamw(self.disc.parameters(), cfg.disc_lr, 0.0)
            self.base_lr.update(fake=cfg.fake_lr, disc=cfg.disc_lr)
        self.step = 0
        os.makedirs(cfg.out_dir, exist_ok=True)
        self.state_path = os.path.join(cfg.out_dir, STATE_FILE)
        self.log_path = os.path.join(cfg.out_dir, "log.jsonl")
        self.student_path = os.path.join(cfg.out_dir, STUDENT_FILE)
        if os.path.isfile(self.state_path):
            meta = model_metadata(self.state_path)  # checked before loading: other runs hold other networks
            if meta.get("method") != cfg.method:
                raise ValueError(f"distill: {cfg.out_dir} holds a {meta.get('method')} run, not {cfg.method}; use another --out-dir")
            if meta.get("cd_variant", "discrete") != cfg.cd_variant and cfg.method == "cd":
                raise ValueError(f"distill: {cfg.out_dir} holds a {meta.get('cd_variant', 'discrete')} cd run, not "
                                 f"{cfg.cd_variant}; use another --out-dir")
            if meta.get("teacher_sha256") != self.teacher_sha:
                raise ValueError(f"distill: {cfg.out_dir} was distilled from a different teacher than {teacher_path}")
            self.step, _ = load_state(self.state_path, self.modules, self.opts)
        self._eval_cache: dict | None = None

    # ---- bookkeeping ---------------------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def _set_lr(self) -> None:
        # linear warm-up, then constant: the student starts from a trained model, there is nothing to anneal
        scale = min(1.0, (self.step + 1) / max(1, self.cfg.warmup_steps))
        for name, opt in self.opts.items():
            for g in opt.param_groups:
                g["lr"] = self.base_lr[name] * scale

    def _update(self, name: str, loss: torch.Tensor, params, also: tuple[str, ...] = ()) -> None:
        """One optimizer step of `name` (gradient clipped over params), and of the optimizers in `also` that
        share its loss (clip-free: sCM's loss-weight function)."""
        if not torch.isfinite(loss):
            raise RuntimeError(f"distill: {name} loss is {loss.item()} at step {self.step}; lower lr or check the data")
        opts = [self.opts[n] for n in (name, *also)]
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        for opt in opts:
            opt.step()

    def save(self) -> None:
        meta = {"method": self.cfg.method, "cd_variant": self.cfg.cd_variant, "teacher": self.teacher_path,
                "teacher_sha256": self.teacher_sha, "config": self.teacher.cfg.to_json()}
        save_state(self.state_path, self.modules, self.opts, self.step, meta)
        save_model(self.ema, self.student_path, {
            "default_steps": str(self.cfg.student_steps),
            "default_context_noise": self.teacher_meta.get("default_context_noise", "0.0"),
            "distill_method": self.cfg.method, "distill_step": str(self.step),
            **({"cd_variant": self.cfg.cd_variant} if self.cfg.method == "cd" else {}),
            "teacher_sha256": self.teacher_sha})

    def _own_context(self, frames, actions, rng: np.random.Generator, gen: torch.Generator):
        """The teacher's own chained one-step predictions as context (or None): a student that only ever saw
        real context drifts open-loop sooner than its teacher, which was trained on its own predictions."""
        cfg = self.cfg
        if cfg.own_context_prob <= 0 or rng.random() >= cfg.own_context_prob:
            return None
        return chained_own_predictions(self.teacher, frames, actions, cfg, 1 + int(rng.integers(cfg.own_context_passes)), gen)

    def _window(self, data: WindowDataset, pool: RolloutPool | None, rng: np.random.Generator,
                gen: torch.Generator) -> Window:
        """One batch of conditioning: a rollout pool window (the teacher's own open-loop frames, up to
        pool_max_len deep: the context the teacher learned to recover from in phase 7, and which own-context
        chains of a few passes never reach), else real windows with or without own-prediction context.
        Every loss here compares the student with the teacher on the same context, so drifted context needs
        no consistency mask: the student should do whatever the teacher does there."""
        cfg = self.cfg
        if pool is not None:
            pool.advance(cfg.pool_frames_per_step)
            if rng.random() < cfg.pool_context_prob:
                shown, frames, actions = pool.window()
                return Window.from_batch(frames, actions, cfg.context_noise_max, cfg.bf16, gen, shown, deep=True)
        frames, actions = data.sample(cfg.batch_size, rng)
        return Window.from_batch(frames, actions, cfg.context_noise_max, cfg.bf16, gen, self._own_context(frames, actions, rng, gen))

    # ---- one step of each method ---------------------------------------------------------------------
    def _cd_step(self, w: Window, gen: torch.Generator) -> dict:
        cfg = self.cfg
        loss = consistency_loss(self.student, self.teacher, self.target, w, self.grid, cfg.motion_weight, gen)
        self._update("student", loss, self.student.parameters())
        ema_update(self.target, self.student, cfg.cd_target_decay)
        ema_update(self.ema, self.student, cfg.ema_decay)
        return {"loss": loss.item()}

    def _continuous_cd_step(self, w: Window, gen: torch.Generator) -> dict:
        cfg = self.cfg
        loss, stats = continuous_consistency_loss(
            self.student, self.teacher, self.time_weight, w, warmup_ratio(self.step, cfg.scm_warmup_steps),
            cfg.scm_tangent_c, cfg.time_logit_mean, cfg.time_logit_std, cfg.motion_weight, gen)
        self._update("student", loss, self.student.parameters(), also=("time_weight",))
        ema_update(self.ema, self.student, cfg.ema_decay)
        return {"loss": loss.item(), **stats}

    def _fdistill_step(self, w: Window, gen: torch.Generator) -> dict:
        cfg = self.cfg
        with torch.no_grad():
            x0_gen = generate(self.student, w, torch.randn(w.target.shape, generator=gen))
        loss_fake = fake_score_loss(self.fake, w, x0_gen, cfg.motion_weight, cfg.time_logit_mean, cfg.time_logit_std, gen)
        self._update("fake", loss_fake, self.fake.parameters())
        out = {"loss_fake": loss_fake.item()}
        # deep windows pair drifted context with real targets that may have diverged from it: a discriminator
        # trained there could tell real from fake by that mismatch alone, so it learns on real context only
        if not w.deep:
            loss_d = discriminator_loss(self.teacher, self.disc, w, x0_gen, cfg.feature_block, cfg.time_logit_mean,
                                        cfg.time_logit_std, gen)
            self._update("disc", loss_d, self.disc.parameters())
            out["loss_disc"] = loss_d.item()
        # two time-scale updates: the fake score must track G's current distribution for F - T to be its score gap
        if (self.step + 1) % cfg.gen_every == 0:
            loss_g, stats = generator_loss(self.student, self.teacher, self.fake, self.disc, w, cfg, gen)
            self._update("student", loss_g, self.student.parameters())
            ema_update(self.ema, self.student, cfg.ema_decay)
            out.update(loss=loss_g.item(), **stats)
        return out

    # ---- evaluation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, data: WindowDataset) -> dict:
        """On one fixed batch and fixed noise: the EMA student's N-step samples against the teacher's
        teacher_eval_steps-step samples (distillation error) and against the real frames; the teacher at the
        same N as the baseline the student must beat. MSE in [-1, 1] units, all targets of the batch."""
        cfg = self.cfg
        steps = [1] if cfg.method == "fdistill" else list(dict.fromkeys(cfg.eval_steps))
        if self._eval_cache is None:
            frames, actions = data.sample(cfg.batch_size, np.random.default_rng([cfg.seed, 999]))
            g = torch.Generator().manual_seed(cfg.seed + 999)
            w = Window.from_batch(frames, actions, 0.0, cfg.bf16, g)  # clean context, as the sampler's default
            noise = torch.randn(w.target.shape, generator=g)
            ref = w.sample(self.teacher, noise, flow_schedule(cfg.teacher_eval_steps, cfg.cd_shift)).clamp(-1, 1)
            base = {n: w.sample(self.teacher, noise, student_times(n, cfg.cd_shift)).clamp(-1, 1) for n in steps}
            self._eval_cache = {"w": w, "noise": noise, "ref": ref, "teacher": {
                f"{n}": {"to_teacher": (x - ref).square().mean().item(), "to_data": (x - w.target).square().mean().item()}
                for n, x in base.items()}, "teacher_ref_to_data": (ref - w.target).square().mean().item()}
        c = self._eval_cache
        out = {}
        for n in steps:
            x = c["w"].sample(self.ema, c["noise"], student_times(n, cfg.cd_shift)).clamp(-1, 1)
            out[f"{n}"] = {"to_teacher": (x - c["ref"]).square().mean().item(), "to_data": (x - c["w"].target).square().mean().item()}
        return {"student": out, "teacher": c["teacher"], "teacher_ref_to_data": c["teacher_ref_to_data"]}

    # ---- the loop ------------------------------------------------------------------------------------
    def train(self, max_steps: int | None = None) -> int:
        from tqdm import tqdm

        cfg, mcfg = self.cfg, self.teacher.cfg
        data = WindowDataset(cfg.data, mcfg.height, mcfg.width, cfg.seq_len, mcfg.no_action, cfg.cache_dir, game=mcfg.game)
        rng = np.random.default_rng([cfg.seed, self.step])
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
        end = cfg.total_steps if max_steps is None else min(cfg.total_steps, self.step + max_steps)
        bar = tqdm(total=end, initial=self.step, desc=f"distill {cfg.method}", unit="step", disable=not self.progress)
        if cfg.method == "fdistill":
            step_fn = self._fdistill_step
        else:
            step_fn = self._continuous_cd_step if cfg.continuous_cd else self._cd_step
        pool = None
        if cfg.pool_context_prob > 0:  # the frozen teacher rolls out: students are judged against its behaviour
            pool = RolloutPool(self.teacher, data, cfg.batch_size, cfg.seq_len, cfg.pool_min_len, cfg.pool_max_len,
                               rng, torch.Generator().manual_seed(cfg.seed * 7_919 + self.step))
        sums: dict[str, list[float]] = {}
        t0, n = time.perf_counter(), 0
        while self.step < end:
            self._set_lr()
            w = self._window(data, pool, rng, gen)
            for k, v in step_fn(w, gen).items():
                sums.setdefault(k, []).append(v)
            self.step += 1
            n += 1
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == end:
                dt = time.perf_counter() - t0
                rec = {"kind": "distill", "method": cfg.method, "step": self.step,
                       **{k: float(np.mean(v)) for k, v in sums.items()},
                       "target_frames_per_s": n * w.n_targets / dt, "time": time.time()}
                self._log(rec)
                shown = {k: f"{rec[k]:.4f}" for k in ("loss", "loss_fake", "loss_disc") if k in rec}
                bar.set_postfix(**shown, fps=f"{rec['target_frames_per_s']:.1f}")
                sums, t0, n = {}, time.perf_counter(), 0
            if self.step % cfg.ckpt_every == 0 or self.step == end:
                self.save()
            if self.step % cfg.eval_every == 0 or self.step == end:
                m = self.evaluate(data)
                self._log({"kind": "eval", "step": self.step, **m})
                bar.write(f"eval step {self.step}: {json.dumps(m['student'])}")
                t0 = time.perf_counter()
        bar.close()
        return self.step
