"""Configuration of the frame-stack U-Net world model (models/unet.py), as data.

The model works at the game's native resolution: a frame is padded to a multiple of the U-Net's total
stride and folded losslessly into channels (space-to-depth), so every native pixel reaches the network and a
2x4-pixel ball can be drawn as sharply as the emulator draws it. Measured on real Breakout frames
(docs/world_model_design.md): a perfect 64x64 prediction, decoded back to 210x160, shows a ball that the
strict probe (redness >= 60 within 4 px) finds in 2-5% of frames, a perfect 105x80 one in 72-82%.
"""
from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

from nextframe.validation import check_fields

ARCH = "unet"


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    arch: str = ARCH
    height: int = 210  # frame size the model reads and writes (native for Atari)
    width: int = 160
    channels: int = 3
    fold: int = 4  # space-to-depth factor: each fold x fold pixel cell becomes fold^2 * channels features
    widths: tuple[int, ...] = (32, 64, 128, 128)  # feature channels per U-Net level (each level halves the grid)
    blocks: int = 1  # residual blocks per level on the way down (and up)
    # kernel of the input convolution over cells: 1 mixes each cell's own pixels only; 3 also sees the 8
    # neighbouring cells, so a ball's sub-cell displacement between context frames (its velocity: 2-4 px in x,
    # half a cell) is a first-layer feature instead of something 32 channels must carry to the next conv
    stem_kernel: int = 1
    cond_dim: int = 128
    n_actions: int = 4  # the game's minimal action set; index n_actions means "no action"
    context: int = 4  # past frames stacked on the input channels (and the actions that led to them)
    sigma_data: float = 0.5  # EDM preconditioning: the data's std in [-1, 1] units
    game: str = "Breakout"

    RANGES: ClassVar[dict] = {"height": (1, 4096), "width": (1, 4096), "channels": (1, 4), "fold": (1, 64),
                              "widths": (8, 8192), "blocks": (1, 64), "cond_dim": (1, 8192), "n_actions": (1, 1024),
                              "context": (1, 64), "sigma_data": (1e-3, 10.0)}

    def __post_init__(self):
        check_fields(self, "model config")
        if self.arch != ARCH:
            raise ValueError(f"model config: arch must be '{ARCH}' (got {self.arch!r})")
        if not self.widths or any(w % 8 for w in self.widths):
            raise ValueError(f"model config: widths must be positive multiples of 8 (got {list(self.widths)})")
        if self.stem_kernel not in (1, 3):
            raise ValueError(f"model config: stem_kernel must be 1 or 3 (got {self.stem_kernel!r})")

    @property
    def stride(self) -> int:
        """Total downsampling of a frame: the fold times one halving per level below the first."""
        return self.fold * 2 ** (len(self.widths) - 1)

    @property
    def padded_height(self) -> int:
        return -(-self.height // self.stride) * self.stride

    @property
    def padded_width(self) -> int:
        return -(-self.width // self.stride) * self.stride

    @property
    def pad(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) rows/columns of black added before folding."""
        dh, dw = self.padded_height - self.height, self.padded_width - self.width
        return dh // 2, dh - dh // 2, dw // 2, dw - dw // 2

    @property
    def no_action(self) -> int:
        return self.n_actions

    @property
    def cell_features(self) -> int:
        return self.channels * self.fold * self.fold

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"model config: unknown keys {unknown}")
        return cls(**d)  # check_fields turns the widths list into a tuple

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
