"""Distillation configuration files (JSON): {"distill": DistillConfig fields, optional "model": the teacher's
ModelConfig fields, "comment"}. The model itself always comes from the teacher file; a "model" section is
only a check that the config was written for that teacher."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from nextframe.models.config import ModelConfig, model_config_from_dict  # noqa: F401
from nextframe.models.flow import is_schedule
from nextframe.training.config import read_json_config
from nextframe.validation import check_fields

METHODS = ("cd", "fdistill", "trajectory")  # trajectory: frame-stack (unet) teachers only
CD_VARIANTS = ("discrete", "continuous")
DIVERGENCES = ("js", "rkl", "fkl")


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    method: str = "cd"  # cd (consistency distillation) | fdistill (one-step f-divergence distribution matching)
    data: tuple[str, ...] = ("recordings/train",)
    out_dir: str = "runs/distill"
    seq_len: int = 8  # frames per teacher-forced window; every frame after the first is a target
    batch_size: int = 8
    lr: float = 1e-4  # student / generator
    warmup_steps: int = 20  # linear lr warm-up, then constant (a distilled student starts from a trained model)
    total_steps: int = 600
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.99  # EMA of the student: the exported weights
    context_noise_max: float = 0.1  # context augmentation U(0, this), as the teacher was trained
    own_context_prob: float = 0.0  # share of batches conditioned on the teacher's own chained predictions
    own_context_passes: int = 1  # up to this many chained passes (as in training: k-step compounded errors)
    pool_context_prob: float = 0.0  # share of batches whose context is the teacher's open-loop rollouts, 100s of frames deep
    pool_min_len: int = 100  # each pool rollout runs U(min, max) teacher frames, then restarts (training/rollout_pool.py)
    pool_max_len: int = 300
    pool_frames_per_step: int = 4  # rollout frames the teacher generates per distillation step
    motion_weight: float = 4.0  # extra weight on pixels that changed since the previous frame (regression losses)
    bf16: bool = True
    student_steps: int = 4  # the student's sampler steps, written to student.safetensors as default_steps
    eval_steps: tuple[int, ...] = (4, 2, 1)  # step counts the periodic evaluation samples the student with
    teacher_eval_steps: int = 16  # the teacher's reference samples in the evaluation (fine Euler grid)
    log_every: int = 10
    eval_every: int = 100
    ckpt_every: int = 50
    seed: int = 0
    cache_dir: str = "data_cache"
    # ---- consistency distillation
    cd_intervals: int = 16  # K teacher Euler intervals on flow_schedule(K, cd_shift)
    cd_shift: float = 1.0
    cd_target_decay: float = 0.95  # EMA decay of the target network (Song et al. 2023: mu)
    cd_variant: str = "discrete"  # discrete (teacher Euler step + target network) | continuous (sCM: JVP tangent)
    scm_warmup_steps: int = 100  # continuous: tangent warm-up, r from 0 to 1 over this many steps
    scm_tangent_c: float = 0.1  # continuous: tangent normalisation g / (rms(g) + c)
    scm_weight_lr: float = 1e-2  # continuous: lr of the learned per-time loss weight (it must settle in a short run)
    # ---- f-distill
    divergence: str = "js"  # js | rkl (= DMD) | fkl
    gen_every: int = 5  # one generator update per this many fake-score / discriminator updates
    fake_lr: float = 1e-4
    disc_lr: float = 1e-4
    lambda_gan: float = 0.01  # weight of the non-saturating GAN term in the generator loss
    ratio_min: float = 0.1  # density ratio r = exp(D logit) clamped to [ratio_min, ratio_max]
    ratio_max: float = 20.0
    ratio_bins: int = 4  # r normalised to mean 1 inside each of this many equal bins of t
    time_logit_mean: float = 0.0  # t ~ sigmoid(N(mean, std)) for the fake-score, DM and GAN terms and continuous CD
    time_logit_std: float = 1.0
    disc_block: int = -1  # teacher block whose output features the discriminator reads (-1: the middle one)
    disc_hidden: int = 256
    # ---- frame-stack (unet) teachers: distill/unet_trainer.py
    teacher_steps: int = 8  # trajectory: Euler steps of the teacher's ODE sample the student learns to reach
    teacher_shift: float = 1.0  # trajectory: the teacher's schedule flow_schedule(teacher_steps, teacher_shift)
    # trajectory: the teacher's schedule itself (noise levels 1 -> 0), e.g. (1.0, 0.15, 0.0) for a teacher shipped with
    # a low second step; empty: flow_schedule(teacher_steps, teacher_shift)
    teacher_times: tuple[float, ...] = ()
    mid_time: float = 0.5  # the two-step student's second time: schedule [1, mid_time, 0]
    time_budget_s: float = 0.0  # > 0: stop after this long (the lr warm-up still counts steps)
    device: str = "cpu"  # cpu | cuda

    RANGES: ClassVar[dict] = {
        "lr": (1e-12, 1.0), "fake_lr": (1e-12, 1.0), "disc_lr": (1e-12, 1.0), "warmup_steps": (0, None),
        "weight_decay": (0.0, 10.0), "grad_clip": (0.0, None), "context_noise_max": (0.0, 1.0),
        "motion_weight": (0.0, 1e6), "lambda_gan": (0.0, 1e3), "ratio_bins": (1, 1000), "seed": (0, 2**63 - 1),
        "cd_shift": (1e-3, 1e3), "time_logit_std": (0.0, 100.0), "teacher_shift": (1e-3, 1e3),
        "scm_warmup_steps": (0, None),
        "pool_min_len": (1, None), "pool_max_len": (1, None), "disc_block": (-1, 1024)}

    def __post_init__(self):
        check_fields(self, "distill config")
        if self.method not in METHODS:
            raise ValueError(f"distill config: method must be one of {', '.join(METHODS)} (got {self.method!r})")
        if self.divergence not in DIVERGENCES:
            raise ValueError(f"distill config: divergence must be one of {', '.join(DIVERGENCES)} (got {self.divergence!r})")
        if self.cd_variant not in CD_VARIANTS:
            raise ValueError(f"distill config: cd_variant must be one of {', '.join(CD_VARIANTS)} (got {self.cd_variant!r})")
        if self.scm_tangent_c <= 0 or self.scm_weight_lr <= 0:
            raise ValueError(f"distill config: scm_tangent_c and scm_weight_lr must be positive "
                             f"(got {self.scm_tangent_c}, {self.scm_weight_lr})")
        if self.seq_len < 2:
            raise ValueError(f"distill config: seq_len must be at least 2 (got {self.seq_len})")
        for name in ("batch_size", "total_steps", "log_every", "eval_every", "ckpt_every", "cd_intervals",
                     "gen_every", "ratio_bins", "student_steps", "disc_hidden", "teacher_eval_steps",
                     "own_context_passes", "pool_frames_per_step"):
            if getattr(self, name) < 1:
                raise ValueError(f"distill config: {name} must be positive (got {getattr(self, name)})")
        for name in ("ema_decay", "cd_target_decay"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"distill config: {name} must be in [0, 1) (got {getattr(self, name)})")
        if not 0 < self.ratio_min < self.ratio_max:
            raise ValueError(f"distill config: need 0 < ratio_min < ratio_max (got {self.ratio_min}, {self.ratio_max})")
        for name in ("own_context_prob", "pool_context_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"distill config: {name} must be in [0, 1] (got {getattr(self, name)})")
        if self.pool_context_prob > 0 and not self.seq_len <= self.pool_min_len <= self.pool_max_len:
            raise ValueError(f"distill config: need seq_len <= pool_min_len <= pool_max_len "
                             f"(got {self.seq_len}, {self.pool_min_len}, {self.pool_max_len})")
        if any(n < 1 for n in self.eval_steps):
            raise ValueError(f"distill config: eval_steps must be positive (got {list(self.eval_steps)})")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"distill config: device must be cpu or cuda (got {self.device!r})")
        if not 0.0 < self.mid_time < 1.0 or self.teacher_steps < 1 or self.time_budget_s < 0:
            raise ValueError(f"distill config: need 0 < mid_time < 1, teacher_steps >= 1, time_budget_s >= 0 "
                             f"(got {self.mid_time}, {self.teacher_steps}, {self.time_budget_s})")
        if self.teacher_times and not is_schedule(self.teacher_times):
            raise ValueError(f"distill config: teacher_times must fall from 1 to 0 (got {list(self.teacher_times)})")
        if self.method == "fdistill" and self.student_steps != 1:
            raise ValueError(f"distill config: an f-distill generator is one-step; student_steps must be 1 (got {self.student_steps})")
        if self.method == "cd":
            # a student schedule of N steps must land on the teacher grid, where the consistency was trained
            for n in {self.student_steps, *self.eval_steps}:
                if self.cd_intervals % n:
                    raise ValueError(f"distill config: cd_intervals {self.cd_intervals} is not a multiple of the "
                                     f"student step count {n}")


    @property
    def continuous_cd(self) -> bool:
        return self.method == "cd" and self.cd_variant == "continuous"

    @property
    def feature_block(self) -> int | None:
        """The discriminator's teacher block for forward_sequence (None: the middle one)."""
        return None if self.disc_block < 0 else self.disc_block


def load_distill_config(path: str, method: str | None = None) -> tuple[DistillConfig, dict | None]:
    """Returns (config, the "model" section or None). method (from the command line) must agree with the file's."""
    raw = read_json_config(path, "distill config")
    if not isinstance(raw, dict):
        raise ValueError(f"distill config: {path} must hold a JSON object")
    unknown = sorted(set(raw) - {"distill", "model", "comment"})
    if unknown:
        raise ValueError(f"distill config: {path} has unknown sections {unknown} (expected distill, model)")
    d = dict(raw.get("distill", {}))
    known = {f.name for f in dataclasses.fields(DistillConfig)}
    bad = sorted(set(d) - known)
    if bad:
        raise ValueError(f"distill config: {path} has unknown distill keys {bad}")
    if method is not None:
        if method not in METHODS:
            raise ValueError(f"distill: unknown method {method!r} (expected one of {', '.join(METHODS)})")
        if "method" in d and d["method"] != method:
            raise ValueError(f"distill: --method {method} but {path} is a {d['method']} config")
        d["method"] = method
    for name in ("data", "eval_steps"):
        if name in d:
            d[name] = tuple(d[name])
    model = raw.get("model")
    if model is not None:
        model_config_from_dict(model)  # unknown model keys fail here, before any teacher is loaded
    return DistillConfig(**d), model


def check_teacher(teacher_cfg: ModelConfig, expected: dict | None, teacher_path: str) -> None:
    """The config's "model" section (if any) must describe the teacher: a student is a copy of it."""
    if expected is None:
        return
    have, want = teacher_cfg.to_dict(), model_config_from_dict(expected).to_dict()
    if set(have) != set(want):
        raise ValueError(f"distill: teacher {teacher_path} is another kind of model than the config's model section")
    diff = sorted(k for k in want if have[k] != want[k])
    if diff:
        pairs = ", ".join(f"{k}: config {want[k]!r} vs teacher {have[k]!r}" for k in diff)
        raise ValueError(f"distill: teacher {teacher_path} does not match the config's model section ({pairs})")
