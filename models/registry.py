"""One place that maps a model config to its network class."""
from __future__ import annotations

from nextframe.models.config import ModelConfig
from nextframe.models.unet_config import UNetConfig


def build_model(cfg):
    if isinstance(cfg, UNetConfig):
        from nextframe.models.unet import FrameStackUNet

        return FrameStackUNet(cfg)
    if isinstance(cfg, ModelConfig):
        from nextframe.models.dit import NextFrameDiT

        return NextFrameDiT(cfg)
    raise ValueError(f"model: unknown config type {type(cfg).__name__}")


def is_frame_stack(model) -> bool:
    return isinstance(model.cfg, UNetConfig)
