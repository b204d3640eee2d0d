"""Deep-horizon training context (training/rollout_pool.py): the pool's windows line up with the real frames
and actions of the same positions, rollouts restart within their length range, and the consistency mask keeps
exactly the static, close pixels."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nextframe.data.dataset import WindowDataset
from nextframe.models.sampling import CachedSampler
from nextframe.training.config import TrainConfig
from nextframe.training.rollout_pool import RolloutPool
from nextframe.training.trainer import Trainer, consistency_mask
from conftest import randomized_model, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _pool(square_episodes, tmp_path, min_len=6, max_len=9, seed=0):
    cfg = tiny_config()
    data = WindowDataset(square_episodes, cfg.height, cfg.width, 5, cfg.no_action, str(tmp_path / "cache"))
    model = randomized_model(cfg)
    return model, RolloutPool(model, data, batch=2, seq_len=5, min_len=min_len, max_len=max_len,
                              rng=np.random.default_rng(seed), generator=torch.Generator().manual_seed(seed))


def test_window_matches_a_plain_open_loop_rollout(square_episodes, tmp_path):
    model, pool = _pool(square_episodes, tmp_path)
    pool.advance(4)  # context 3 + 4 generated: positions 0..6
    shown, real, actions = pool.window()
    assert shown.shape == real.shape == (2, 5, 3, 16, 16) and actions.shape == (2, 5)
    # the same rollout by hand: same start, same noise stream
    sampler = CachedSampler(model, n_steps=1, generator=torch.Generator().manual_seed(0), batch=2)
    sampler.reset(pool.real[:, :3], [pool.actions[:, i] for i in range(3)])
    frames = [pool.real[:, i] for i in range(3)] + [sampler.step(pool.actions[:, i]) for i in range(3, 7)]
    torch.testing.assert_close(shown, torch.stack(frames[2:7], dim=1), rtol=0, atol=1e-6)
    torch.testing.assert_close(real, pool.real[:, 2:7])
    torch.testing.assert_close(actions, pool.actions[:, 2:7])
    assert not torch.equal(shown[:, -1], real[:, -1])  # generated, not copied from the recording


def test_rollouts_restart_within_their_length_range(square_episodes, tmp_path):
    _, pool = _pool(square_episodes, tmp_path, min_len=6, max_len=8, seed=3)
    horizons = []
    for _ in range(40):
        pool.advance(1)
        horizons.append(pool.horizon)
    assert 1 in horizons[1:]  # restarted at least once
    assert max(horizons) <= 8 and all(h >= 1 for h in horizons)
    ends = [h for h, nxt in zip(horizons, horizons[1:]) if nxt == 1]
    assert ends and all(6 <= h <= 8 for h in ends)


def test_pool_refuses_lengths_no_episode_has(square_episodes, tmp_path):
    with pytest.raises(ValueError, match="no episode has"):
        _pool(square_episodes, tmp_path, min_len=500, max_len=600)
    with pytest.raises(ValueError, match="seq_len <= min_len"):
        _pool(square_episodes, tmp_path, min_len=4, max_len=9)


def test_consistency_mask_keeps_static_close_pixels_only():
    real = torch.zeros(1, 3, 3, 8, 8)
    real[:, 2, :, 0, 0] = 1.0  # the real scene changes at (0, 0) in frame 2
    shown = real.clone()
    shown[:, 0, :, 5, 5] = 0.3  # small drift: within tolerance 0.5, kept
    shown[:, 1, :, 7, 7] = 0.9  # the shown scene diverged there: dropped for target 2
    m = consistency_mask(shown, real, tolerance=0.5)[:, :, 0]
    assert m.shape == (1, 3, 8, 8)
    assert m[0, 0].sum() == 0  # frame 0 is never a target
    assert m[0, 1].sum() == 64
    assert m[0, 2, 7, 7] == 0 and m[0, 2, 0, 0] == 0 and m[0, 2, 1, 1] == 0  # diverged; changed; dilated
    assert m[0, 2].sum() == 64 - 4 - 1


def test_training_with_pool_context_runs_and_resumes(square_episodes, tmp_path):
    cfg = TrainConfig(data=tuple(square_episodes), out_dir=str(tmp_path / "run"), seq_len=4, batch_size=4, lr=2e-3,
                      warmup_steps=2, total_steps=12, log_every=4, eval_every=1000, ckpt_every=6, bf16=False,
                      cache_dir=str(tmp_path / "cache"), pool_context_prob=0.5, pool_min_len=5, pool_max_len=10,
                      pool_frames_per_step=2)
    trainer = Trainer(tiny_config(), cfg, progress=False)
    hist = trainer.train(max_steps=6)
    assert trainer.step == 6 and all(np.isfinite(loss) for _, loss in hist)
    Trainer(tiny_config(), cfg, progress=False).train()
    with pytest.raises(ValueError, match="pool_min_len"):
        dataclasses.replace(cfg, pool_min_len=2)
