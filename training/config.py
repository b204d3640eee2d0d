"""Training configuration files (JSON): {"model": ModelConfig fields, "train": TrainConfig fields}."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import ClassVar

from nextframe.models.config import ModelConfig, model_config_from_dict
from nextframe.validation import check_fields


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    data: tuple[str, ...] = ("recordings/train",)  # episode files or directories, relative to the config's cwd
    val_episode: str = ""  # an episode for periodic open-loop rollout metrics ("" = none)
    out_dir: str = "runs/default"
    seq_len: int = 8  # frames per training window; every frame after the first is a target
    batch_size: int = 8
    lr: float = 5e-4
    warmup_steps: int = 200
    total_steps: int = 4000
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    context_noise_max: float = 0.1  # clean context frames get noise level ~ U(0, this)
    time_logit_mean: float = 0.0  # noise levels t ~ sigmoid(N(mean, std)); see models/flow.sample_train_times
    time_logit_std: float = 1.0
    own_context_prob: float = 0.0  # share of batches whose context is the model's own predictions (trainer.own_predictions)
    own_context_passes: int = 1  # up to this many chained prediction passes (drawn 1..n): k-step compounded errors
    pool_context_prob: float = 0.0  # share of batches whose context comes from long open-loop rollouts (training/rollout_pool.py)
    pool_min_len: int = 100  # each pool rollout runs for U(min, max) predicted frames, then restarts
    pool_max_len: int = 300
    pool_frames_per_step: int = 4  # rollout frames generated per training step
    pool_tolerance: float = 0.5  # max |shown - real| (in [-1, 1] units) for a pool target pixel to count
    motion_weight: float = 4.0  # extra loss weight on pixels that changed since the previous frame
    motion_share: float = 0.0  # > 0: each frame's changed pixels carry this share of its loss however few they
    # are, so a 1-px ball weighs as much as the whole paddle (trainer.motion_share_weights); replaces motion_weight
    bf16: bool = True  # autocast matmuls to bfloat16 (fast on CPUs with AMX/AVX512-BF16; exact elsewhere)
    log_every: int = 20
    eval_every: int = 500
    eval_frames: int = 60
    eval_steps: int = 4
    ckpt_every: int = 200
    seed: int = 0
    init_from: str = ""  # a model file to warm-start from (weights whose shapes fit; see Trainer.warm_start)
    trainable: tuple[str, ...] = ()  # parameter name prefixes to train (e.g. ["refiner."]); the rest stays frozen.
    # () = all. A small head trained on a frozen model cannot unlearn what the model already does well.
    cache_dir: str = "data_cache"
    # ---- frame-stack models (arch "unet", training/unet_trainer.py)
    pure_noise_prob: float = 0.0  # share of targets trained at t = 1 exactly, where every sampler starts
    own_context_steps: int = 1  # sampler steps of the model's own rollouts used as context
    time_budget_s: float = 0.0  # > 0: stop after this long, the lr schedule running on time as well as steps
    device: str = "cpu"  # cpu | cuda
    own_context_after: int = 0  # no own-rollout context before this step (early rollouts are noise)
    event_rows: tuple[tuple[int, int], ...] = ()  # row ranges where a change marks a rare event (data/frame_store.py)
    event_weight: float = 1.0  # such targets are sampled this many times as often
    bounce_weight: float = 1.0  # targets where Breakout's ball changes direction, as often (data/ball_events.py)
    bounce_rule: str = "flip"  # "turn" also weighs bounces through a frame where the ball stops on an axis
    # torch.compile the network's training forward (inductor): 1.3x faster forward + backward on the 2-core CPU
    # for the native U-Net (bf16, channels-last), after a one-off compile of about 2 minutes
    torch_compile: bool = False

    RANGES: ClassVar[dict] = {
        "seq_len": (2, 4096), "batch_size": (1, 65536), "lr": (1e-12, 1.0), "warmup_steps": (0, None),
        "total_steps": (1, None), "min_lr_ratio": (0.0, 1.0), "weight_decay": (0.0, 10.0), "grad_clip": (0.0, None),
        "ema_decay": (0.0, 1.0), "context_noise_max": (0.0, 1.0), "time_logit_std": (0.0, 100.0),
        "own_context_prob": (0.0, 1.0), "own_context_passes": (1, 64), "pool_context_prob": (0.0, 1.0),
        "pool_min_len": (1, None), "pool_max_len": (1, None), "pool_frames_per_step": (1, 4096),
        "pool_tolerance": (0.0, 2.0), "motion_weight": (0.0, 1e6), "motion_share": (0.0, 0.999999),
        "log_every": (1, None), "eval_every": (1, None), "eval_frames": (1, None), "eval_steps": (1, 1000),
        "ckpt_every": (1, None), "seed": (0, 2**63 - 1), "pure_noise_prob": (0.0, 1.0),
        "own_context_steps": (1, 1000), "time_budget_s": (0.0, None), "own_context_after": (0, None),
        "event_rows": (0, 100000), "event_weight": (1e-6, 1e6),
        "bounce_weight": (1e-6, 1e6)}

    def __post_init__(self):
        check_fields(self, "train config")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"train config: device must be cpu or cuda (got {self.device!r})")
        if self.bounce_rule not in ("flip", "turn"):
            raise ValueError(f"train config: bounce_rule must be flip or turn (got {self.bounce_rule!r})")
        if any(r[0] >= r[1] for r in self.event_rows):
            raise ValueError(f"train config: event_rows must be [start, end) pairs (got {list(self.event_rows)})")
        if self.pool_context_prob > 0 and not self.seq_len <= self.pool_min_len <= self.pool_max_len:
            raise ValueError(f"train config: need seq_len <= pool_min_len <= pool_max_len "
                             f"(got {self.seq_len}, {self.pool_min_len}, {self.pool_max_len})")


def read_json_config(path: str, what: str):
    """The parsed JSON of a config file; a missing file or bad JSON is a one-line error naming `what`."""
    if os.path.isdir(path):
        raise ValueError(f"{what}: {path} is a directory, not a config file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: file not found ({path})")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{what}: {path} is not valid JSON ({e})") from None


def load_config(path: str) -> tuple[ModelConfig, TrainConfig]:
    """(model config of either family, TrainConfig)."""
    raw = read_json_config(path, "train config")
    unknown = sorted(set(raw) - {"model", "train", "comment"})
    if unknown:
        raise ValueError(f"train config: {path} has unknown sections {unknown} (expected model, train)")
    model = model_config_from_dict(raw.get("model", {}))
    train_raw = dict(raw.get("train", {}))
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(train_raw) - known)
    if bad:
        raise ValueError(f"train config: {path} has unknown train keys {bad}")
    return model, TrainConfig(**train_raw)  # check_fields turns JSON lists into tuples
