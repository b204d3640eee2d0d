"""Model configuration as data: every shape the exporter and the runtime need is derived from here."""
from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

from nextframe.validation import check_fields


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    height: int = 64
    width: int = 64
    channels: int = 3
    patch: int = 8
    dim: int = 192
    depth: int = 6
    heads: int = 3
    mlp_ratio: int = 4
    n_actions: int = 4  # the game's minimal action set; index n_actions means "no action" (first frame)
    context: int = 4  # frames kept in the KV cache; the current frame attends to these and itself
    game: str = "Breakout"
    # the previous frame (as cached) is stacked onto each frame's input channels, DIAMOND-style: copying
    # what did not move becomes trivial, and attention over the cache is left to model motion
    prev_frame_input: bool = True
    # the action that led to the previous frame conditions each frame too: Breakout's paddle moves by the
    # action one step back (measured: paddle-dx residual std 1.9 px given it vs 2.9 px given only the current one)
    prev_action_input: bool = False
    # hidden channels of a pixel-level conv net (0 = none) that corrects the transformer's frame from
    # [frame, prev, prev - prev2]. Patch tokens must learn a 1-px ball's move separately for each of the 64
    # positions inside a patch; a conv can learn it once for all positions. Trained with the transformer
    # (phase 8) it blurred the ball; trained alone on the frozen transformer (phase 9, shipped) it moves it
    motion_refiner: int = 0
    # > 0: the refiner may change a pixel only within this many px of a pixel that changed strongly between prev2
    # and prev (dit.GATE_THRESHOLD; 0 = everywhere). Ungated, its small corrections on static content compound
    # open loop (val PSNR 20 dB after 300 frames, copy 29.5); a ball moves at most 2 px per frame
    refiner_gate: int = 0

    # sizes a real model of this family can have; the weights file's header is checked against the shapes
    # these imply before anything is allocated (training/checkpoint.py)
    RANGES: ClassVar[dict] = {"height": (1, 4096), "width": (1, 4096), "channels": (1, 4), "patch": (1, 256),
                              "dim": (1, 16384), "depth": (1, 256), "heads": (1, 256), "mlp_ratio": (1, 64),
                              "n_actions": (1, 1024), "context": (1, 1024), "motion_refiner": (0, 4096),
                              "refiner_gate": (0, 256)}

    def __post_init__(self):
        check_fields(self, "model config")
        if self.height % self.patch or self.width % self.patch:
            raise ValueError(f"model config: resolution {self.height}x{self.width} not divisible by patch {self.patch}")
        if self.motion_refiner and not self.prev_frame_input:
            raise ValueError("model config: motion_refiner needs prev_frame_input")
        if self.motion_refiner < 0 or self.refiner_gate < 0:
            raise ValueError(f"model config: motion_refiner and refiner_gate must be non-negative "
                             f"(got {self.motion_refiner}, {self.refiner_gate})")
        if self.refiner_gate and not self.motion_refiner:
            raise ValueError("model config: refiner_gate needs motion_refiner")
        if self.dim % self.heads:
            raise ValueError(f"model config: dim {self.dim} not divisible by heads {self.heads}")

    @property
    def tokens_per_frame(self) -> int:
        return (self.height // self.patch) * (self.width // self.patch)

    @property
    def input_channels(self) -> int:
        return self.channels * (2 if self.prev_frame_input else 1)

    @property
    def needs_prev2(self) -> bool:
        """Whether the model reads the frame before the previous one (step's prev2)."""
        return self.motion_refiner > 0

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def no_action(self) -> int:
        return self.n_actions

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"model config: unknown keys {unknown}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def model_config_from_dict(d: dict):
    """A model config from its JSON form: key "arch" picks the family ("dit", the default, or "unet")."""
    from nextframe.models.unet_config import ARCH as UNET, UNetConfig

    if not isinstance(d, dict):
        raise ValueError(f"model config: expected a JSON object (got {type(d).__name__})")
    arch = d.get("arch", "dit")
    if arch == UNET:
        return UNetConfig.from_dict(d)
    if arch != "dit":
        raise ValueError(f"model config: unknown arch {arch!r} (expected 'dit' or '{UNET}')")
    return ModelConfig.from_dict({k: v for k, v in d.items() if k != "arch"})
