"""Training: a tiny model learns an action-driven toy game (loss falls), checkpoints are safetensors and
resume where they stopped, and config files are validated."""
from __future__ import annotations

import glob
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from nextframe.training.checkpoint import load_model, save_model
from nextframe.training.config import TrainConfig, load_config
from nextframe.training.trainer import Trainer, lr_at, motion_share_weights, training_loss
from nextframe.data.dataset import WindowDataset
from conftest import randomized_model, tiny_config


def _cfg(tmp_path, data, **kw):
    base = dict(data=tuple(data), out_dir=str(tmp_path / "run"), seq_len=4, batch_size=8, lr=2e-3, warmup_steps=5,
                total_steps=80, log_every=5, eval_every=1000, ckpt_every=40, bf16=False, cache_dir=str(tmp_path / "cache"))
    base.update(kw)
    return TrainConfig(**base)


def test_loss_falls_and_resume(tmp_path, square_episodes):
    cfg = _cfg(tmp_path, square_episodes)
    trainer = Trainer(tiny_config(), cfg, progress=False)
    data = WindowDataset(cfg.data, 16, 16, cfg.seq_len, 4, cfg.cache_dir)
    frames, actions = data.sample(32, np.random.default_rng(123))

    def held_out_loss():  # same batch, same noise: only the weights change
        with torch.no_grad():
            return training_loss(trainer.model, frames, actions, cfg, torch.Generator().manual_seed(0)).item()

    before = held_out_loss()
    hist = trainer.train(max_steps=60)
    after = held_out_loss()
    assert after < 0.7 * before, (before, after)  # ~0.6 seen; the flow target keeps an irreducible noise floor
    assert trainer.step == 60
    # resume: a new trainer picks up step, weights and the log history
    again = Trainer(tiny_config(), cfg, progress=False)
    assert again.step == 60 and len(again.history) == len(hist)
    again.train()
    assert again.step == 80
    with open(tmp_path / "run" / "log.jsonl") as f:
        steps = [json.loads(line)["step"] for line in f]
    assert steps == sorted(steps) and steps[-1] == 80
    assert (tmp_path / "run" / "loss.svg").read_text().startswith("<svg")
    model = load_model(str(tmp_path / "run" / "model_ema.safetensors"))
    assert model.cfg == tiny_config()


def test_model_file_is_safetensors_with_config(tmp_path):
    m = randomized_model(tiny_config())
    path = str(tmp_path / "m.safetensors")
    save_model(m, path, {"default_steps": "4"})
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "nextframe.model.v1" and json.loads(meta["config"])["dim"] == 32
    loaded = load_model(path)
    for (k, a), (_, b) in zip(m.state_dict().items(), loaded.state_dict().items()):
        assert (a == b).all(), k


def test_model_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model: file not found"):
        load_model(str(tmp_path / "none.safetensors"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="model: .* is not a readable safetensors file"):
        load_model(str(bad))


def test_lr_schedule():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)
    assert lr_at(110, cfg) == pytest.approx(0.1)


def test_motion_share_gives_a_tiny_mover_its_share_of_the_loss():
    x = -torch.ones(1, 3, 3, 32, 32)
    x[:, 1, :, 10, 10] = 1.0  # one pixel appears in frame 1 (a ball), gone again in frame 2
    w = motion_share_weights(x, 0.5)[0, :, 0]
    assert torch.all(w[0] == 1.0)  # frame 0 is never a target
    for f in (1, 2):
        assert w[f].mean() == pytest.approx(1.0)  # the frame's total weight is unchanged
        moved = w[f] > 0.5
        assert moved.sum() == 9  # the changed pixel, dilated by 1 px
        # half the frame's weight is split among its 9 changed pixels, on top of their plain share of the rest
        assert w[f][moved].sum() / w[f].sum() == pytest.approx(0.5 + 0.5 * 9 / 1024)
    still = motion_share_weights(-torch.ones(1, 2, 3, 8, 8), 0.5)
    assert torch.all(still == 1.0)


def test_trainable_prefixes_freeze_the_rest(tmp_path, square_episodes):
    """trainable=["refiner."]: own and pool context still run the whole model, but only the refiner moves."""
    model_cfg = tiny_config(prev_frame_input=True, motion_refiner=8)
    cfg = _cfg(tmp_path, square_episodes, trainable=("refiner.",), total_steps=6, own_context_prob=0.5,
               pool_context_prob=0.5, pool_min_len=4, pool_max_len=6)
    trainer = Trainer(model_cfg, cfg, progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after = trainer.model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed and all(k.startswith("refiner.") for k in changed), changed
    assert {k for k in before if k.startswith("refiner.") and k.endswith("weight")} <= set(changed)
    with pytest.raises(ValueError, match=r"trainable \['refinr.'\] matches no parameter"):
        Trainer(model_cfg, _cfg(tmp_path / "b", square_episodes, trainable=("refinr.",)), progress=False)


def test_config_file_errors(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"model": {"dim": 64, "heads": 2}, "train": {"batch_sise": 3}}))
    with pytest.raises(ValueError, match=r"unknown train keys \['batch_sise'\]"):
        load_config(str(p))
    p.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_config(str(p))
    with pytest.raises(ValueError, match=r"train config: seq_len must be in 2\.\.4096 \(got 1\)"):
        TrainConfig(seq_len=1)
    with pytest.raises(ValueError, match=r"motion_share must be in 0.0\.\.0.999999"):
        TrainConfig(motion_share=1.0)


def test_shipped_config_parses():
    model, train = load_config("configs/breakout_default.json")
    assert model.tokens_per_frame == 64 and train.seq_len > model.context


@pytest.mark.parametrize("path", sorted(glob.glob("configs/breakout_*.json")))
def test_every_training_config_parses(path):
    model, train = load_config(path)
    assert model.game == "Breakout" and train.total_steps > 0
