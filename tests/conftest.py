"""Shared fixtures: small synthetic and recorded episodes, made on the fly (nothing is downloaded)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nextframe.data.episode import Episode, save_episode
from nextframe.models.config import ModelConfig
from nextframe.models.dit import NextFrameDiT


def square_episode(n_steps: int, seed: int) -> Episode:
    """A white square on black that moves left/right by action (2 = right, 3 = left): learnable in seconds."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((n_steps + 1, 210, 160, 3), np.uint8)
    actions = rng.integers(0, 4, n_steps).astype(np.int64)
    x = 60
    for t in range(n_steps + 1):
        if t:
            x = int(np.clip(x + {2: 12, 3: -12}.get(int(actions[t - 1]), 0), 0, 120))
        frames[t, 80:130, x : x + 40] = 255
    return Episode(frames, actions, "Breakout", 2)


@pytest.fixture
def square_episodes(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"square_{i}.npz"
        save_episode(p, square_episode(40, i))
        paths.append(str(p))
    return paths


def tiny_config(**kw) -> ModelConfig:
    base = dict(height=16, width=16, patch=4, dim=32, depth=2, heads=2, context=3, n_actions=4)
    base.update(kw)
    return ModelConfig(**base)


def randomized_model(cfg: ModelConfig, seed: int = 0) -> NextFrameDiT:
    """A model whose zero-initialised layers are perturbed, so every path carries signal in parity tests."""
    torch.manual_seed(seed)
    m = NextFrameDiT(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


def tiny_unet_config(**kw):
    """A frame-stack U-Net small enough for a test: 20x12 frames folded 2x2, two levels, context 3."""
    from nextframe.models.unet_config import UNetConfig

    base = dict(height=20, width=12, fold=2, widths=(8, 16), cond_dim=16, context=3, n_actions=4)
    base.update(kw)
    return UNetConfig(**base)


def randomized_unet(cfg, seed: int = 0):
    """A U-Net whose zero-initialised layers are perturbed, so every path carries signal in parity tests."""
    from nextframe.models.unet import FrameStackUNet

    torch.manual_seed(seed)
    m = FrameStackUNet(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy machine OpenMP's spinning made tiny-model
    tests 20x slower (2 s vs 40 s measured); restored afterwards for the other tests."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def native_unet_bundle(root, n_steps: int, widths=(8, 8), n_episodes: int = 2, **export_kw) -> tuple[str, list[str]]:
    """A randomized native-resolution (210x160) frame-stack U-Net exported to root/fp32, and n_episodes
    square episodes of 30 steps written to root (calibration and rollout inputs): (bundle dir, episode paths,
    model)."""
    from nextframe.export.bundle import export_bundle

    data = []
    for i in range(n_episodes):
        p = root / f"ep{i}.npz"
        save_episode(p, square_episode(30, i))
        data.append(str(p))
    cfg = tiny_unet_config(height=210, width=160, fold=4, widths=tuple(widths), context=2)
    bundle = str(root / "fp32")
    model = randomized_unet(cfg)
    export_bundle(model, bundle, n_steps=n_steps, **export_kw)
    return bundle, data, model


def optimized_ops(path: str) -> list[str]:
    """The op types of the graph as ONNX Runtime runs it (after its fusions, at the level the C++ core asks for)."""
    import os
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        return [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
