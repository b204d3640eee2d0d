"""The frame-stack U-Net end to end on a tiny config: it trains (loss falls), exports to a bundle whose graph
inputs are declared by role (context_frames, context_actions, context_noise_level; no K/V cache), and the C++
frame loop runs it:

* vs PyTorch's FrameStackSampler on the same fed noise, over 12 generated frames after 2 context frames (so
  the first frames are made with fewer real frames than the model's 3, the first one standing in for the
  missing ones): NMSE <= 1e-6 per frame (the reason for 1e-6 rather than 1e-7 is the one in
  test_runtime_parity.py: ORT and PyTorch group float32 operations differently and frames feed back);
* vs the NumPy reference loop driving onnxruntime's Python API: equal bit for bit;
* with speculation (hits and misses, the history rewound on a miss): equal bit for bit to the plain loop.
A wrong noise order moves the rollout far outside the bound, so the bound means something.
"""
from __future__ import annotations

import functools
import json
import os

import numpy as np
import onnxruntime as ort
import pytest
import torch

from nextframe.models.unet import FrameStackUNet
from nextframe.models.unet_sampling import FrameStackSampler
from nextframe.runtime import Session
from nextframe.runtime import reference as ref
from conftest import randomized_unet, tiny_unet_config
from runtime_helpers import nmse, noise_draws

N_STEPS = 2
CONTEXT_NOISE = 0.05
ACTIONS = [0, 1, 2, 3, 3, 2, 1, 1, 0, 2, 2, 3]
CONTEXT_ACTIONS = [4, 1]  # no_action for the first frame


@functools.lru_cache(maxsize=None)
def unet_bundle(tmp_root: str) -> tuple[str, FrameStackUNet]:
    from nextframe.export.bundle import export_bundle

    model = randomized_unet(tiny_unet_config())
    out = os.path.join(tmp_root, "unet_bundle")
    export_bundle(model, out, n_steps=N_STEPS, context_noise=CONTEXT_NOISE)
    return out, model


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return unet_bundle(str(tmp_path_factory.mktemp("unet")))


def _context(cfg, n: int = 2, seed: int = 3) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, cfg.channels, cfg.height, cfg.width, generator=g) * 2 - 1).numpy()


def _noise(cfg, seed: int = 11) -> list[np.ndarray]:
    return noise_draws(2 + 2 * len(ACTIONS), (cfg.channels, cfg.height, cfg.width), seed)


def _cpp(bundle_dir: str, cfg, noise, **kw) -> np.ndarray:
    with Session(bundle_dir, backend="ort-cpu", threads=1, **kw) as s:
        s.feed_noise(np.concatenate([n.reshape(-1) for n in noise]))
        s.reset(_context(cfg), CONTEXT_ACTIONS)
        frames = np.stack([s.step_raw(a) for a in ACTIONS])
        assert s.loop.n_noise_queued == 0
        assert s.pos == 2 + len(ACTIONS)
    return frames


def _reference(bundle_dir: str, cfg, noise) -> np.ndarray:
    """The same rollout by the NumPy reference loop over onnxruntime's Python API (one thread, as the core)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    sess = ort.InferenceSession(os.path.join(bundle_dir, "step.onnx"), so, providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    with open(os.path.join(bundle_dir, "manifest.json")) as f:
        manifest = json.load(f)
    loop = ref.ReferenceLoop(manifest, lambda feed: dict(zip(outs, sess.run(None, feed))), noise)
    loop.reset(_context(cfg), CONTEXT_ACTIONS)
    return np.stack([loop.step(a) for a in ACTIONS])


class FedFrameStackSampler(FrameStackSampler):
    def __init__(self, model, noise, **kw):
        super().__init__(model, **kw)
        self.fed = [torch.from_numpy(np.asarray(n, np.float32)) for n in noise]

    def _noise(self):
        c = self.cfg
        return self.fed.pop(0).reshape(self.batch, c.channels, c.height, c.width)


def _torch(model, noise) -> np.ndarray:
    s = FedFrameStackSampler(model, noise, n_steps=N_STEPS, context_noise=CONTEXT_NOISE)
    s.reset(torch.from_numpy(_context(model.cfg)), CONTEXT_ACTIONS)
    return np.stack([s.step(a)[0].numpy() for a in ACTIONS])


def test_manifest_declares_roles_and_no_cache(bundle):
    path, model = bundle
    with open(os.path.join(path, "manifest.json")) as f:
        m = json.load(f)
    roles = {i["name"]: i["role"] for i in m["graphs"]["step"]["inputs"]}
    assert roles == {"x": "noisy_frame", "t": "noise_level", "action": "action", "ctx_frames": "context_frames",
                     "ctx_actions": "context_actions", "ctx_t": "context_noise_level"}
    assert "kv_cache" not in m and "kv" not in m["graphs"] and m["model"]["arch"] == "unet"
    assert m["export_check"]["nmse"]["denoised"] <= 1e-7


def test_rollout_matches_pytorch(bundle):
    path, model = bundle
    noise = _noise(model.cfg)
    got, want = _cpp(path, model.cfg, noise), _torch(model, noise)
    errors = [nmse(g, w) for g, w in zip(got, want)]
    assert max(errors) <= 1e-6, errors
    assert want.std() > 0.05 and np.abs(np.diff(want, axis=0)).mean() > 1e-3  # signal, changing per frame


def test_a_wrong_noise_order_is_caught(bundle):
    path, model = bundle
    noise = _noise(model.cfg)
    swapped = list(noise)
    swapped[2], swapped[3] = swapped[3], swapped[2]
    assert max(nmse(g, w) for g, w in zip(_cpp(path, model.cfg, swapped), _torch(model, noise))) > 1e-3


def test_rollout_matches_numpy_reference_bit_for_bit(bundle):
    path, model = bundle
    noise = _noise(model.cfg, seed=5)
    got = _cpp(path, model.cfg, noise)
    want = _reference(path, model.cfg, noise)
    assert np.array_equal(got, want), max(nmse(g, w) for g, w in zip(got, want))


def test_speculation_is_bit_identical(bundle):
    path, model = bundle
    ctx = (np.clip(_context(model.cfg).transpose(0, 2, 3, 1), -1, 1) * 127.5 + 127.5).astype(np.uint8)
    runs = []
    for speculate in (False, True):
        with Session(path, backend="ort-cpu", threads=1, seed=7, speculate=speculate) as s:
            s.reset(ctx, CONTEXT_ACTIONS)
            runs.append((np.stack([s.step_raw(a) for a in ACTIONS]), s.stats()))
    (plain, _), (spec, stats) = runs
    assert np.array_equal(plain, spec)
    assert stats["n_speculation_hits"] == 3 and stats["n_speculation_misses"] == 8  # repeats / changes in ACTIONS


def test_tiny_unet_trains(tmp_path, square_episodes, one_thread):
    """A few CPU steps on a moving square: the loss falls (first 5 vs last 5 steps)."""
    from nextframe.training.config import TrainConfig
    from nextframe.training.unet_trainer import UNetTrainer

    cfg = TrainConfig(data=tuple(square_episodes), out_dir=str(tmp_path / "run"), batch_size=8, lr=3e-3,
                      warmup_steps=2, total_steps=40, min_lr_ratio=1.0, log_every=5, ckpt_every=40, bf16=False,
                      own_context_prob=0.25, own_context_passes=2, pure_noise_prob=0.2, cache_dir="")
    trainer = UNetTrainer(tiny_unet_config(height=210, width=160, fold=4, widths=(8, 8), context=2), cfg, progress=False)
    history = trainer.train()
    losses = [loss for _, loss in history]
    assert len(losses) == 8 and losses[-1] < 0.7 * losses[0], losses
    assert os.path.isfile(trainer.model_path)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's inductor imports torch.jit internals
def test_tiny_unet_trains_compiled_like_eager(tmp_path, square_episodes, one_thread):
    """torch_compile (inductor) changes speed, not the training: the same seed gives the same losses within
    float tolerance of the eager run over a few steps (a minute of compiling, hence slow)."""
    from nextframe.training.config import TrainConfig
    from nextframe.training.unet_trainer import UNetTrainer

    runs = {}
    for compiled in (False, True):
        cfg = TrainConfig(data=tuple(square_episodes), out_dir=str(tmp_path / f"run{compiled}"), batch_size=4,
                          lr=1e-3, warmup_steps=1, total_steps=4, min_lr_ratio=1.0, log_every=1, ckpt_every=40,
                          bf16=False, cache_dir="", torch_compile=compiled)
        trainer = UNetTrainer(tiny_unet_config(height=210, width=160, fold=4, widths=(8, 8), context=2), cfg,
                              progress=False)
        runs[compiled] = [loss for _, loss in trainer.train()]
    np.testing.assert_allclose(runs[True], runs[False], rtol=1e-3)
