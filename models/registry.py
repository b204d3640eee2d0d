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


def check_trainable_size(cfg, copies: int = 5) -> int:
    """Parameter count of the model cfg describes, counted on the meta device (no memory); refuses (one line) a
    config whose training state, about `copies` float32 copies of the weights (weights, gradients, two Adam moments,
    EMA), would not fit in the memory available, instead of allocating until the machine runs out."""
    import torch

    from nextframe.data.episode import available_memory

    with torch.device("meta"):
        n = sum(p.numel() for p in build_model(cfg).parameters())
    need, free = n * 4 * copies, available_memory()
    if need > free:
        raise ValueError(f"model config: {n / 1e6:.0f}M parameters need about {need / 2**30:.1f} GiB to train, more than "
                         f"the {free / 2**30:.1f} GiB of memory available")
    return n


def is_frame_stack(model) -> bool:
    return isinstance(model.cfg, UNetConfig)
