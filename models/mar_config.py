"""Configuration of the masked-autoregressive image model (models/mar.py) as data: every shape the exporter
and the runtime need is derived from here."""
from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

from nextframe.validation import check_fields


@dataclasses.dataclass(frozen=True)
class MarConfig:
    height: int = 64
    width: int = 64
    channels: int = 3
    patch: int = 8  # tokens are raw pixel patches: 64x64 -> 64 tokens of 8*8*3 = 192 values
    dim: int = 256  # backbone width
    depth: int = 6
    heads: int = 4
    mlp_ratio: int = 4
    head_width: int = 384  # per-token diffusion MLP; wider than a token (192), as MAR's head is wider than its latent
    head_depth: int = 3
    classes: tuple[str, ...] = ("Breakout", "Pong", "SpaceInvaders", "Freeway", "MsPacman")
    # tokens are (pixels in [-1, 1] - token_mean) / token_std, measured on the training frames, so the head's
    # noise (std 1) and a token have the same scale
    token_mean: float = 0.0
    token_std: float = 1.0

    RANGES: ClassVar[dict] = {"height": (1, 1024), "width": (1, 1024), "channels": (1, 4), "patch": (1, 64),
                              "dim": (8, 8192), "depth": (1, 128), "heads": (1, 128), "mlp_ratio": (1, 16),
                              "head_width": (8, 8192), "head_depth": (1, 64)}

    def __post_init__(self):
        check_fields(self, "mar config")
        if self.height % self.patch or self.width % self.patch:
            raise ValueError(f"mar config: resolution {self.height}x{self.width} not divisible by patch {self.patch}")
        if self.dim % self.heads:
            raise ValueError(f"mar config: dim {self.dim} not divisible by heads {self.heads}")
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"mar config: classes must be distinct game names (got {list(self.classes)})")
        if not self.token_std > 0:
            raise ValueError(f"mar config: token_std must be positive (got {self.token_std})")

    @property
    def n_tokens(self) -> int:
        return (self.height // self.patch) * (self.width // self.patch)

    @property
    def token_dim(self) -> int:
        return self.channels * self.patch * self.patch

    def class_index(self, game: str) -> int:
        for i, c in enumerate(self.classes):
            if c.lower() == game.lower():
                return i
        raise ValueError(f"mar: unknown class '{game}' (the model knows {', '.join(self.classes)})")

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["classes"] = list(self.classes)
        return json.dumps(d, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "MarConfig":
        d = json.loads(text)
        known = {f.name for f in dataclasses.fields(MarConfig)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"mar config: unknown keys {sorted(unknown)}")
        return MarConfig(**d)
