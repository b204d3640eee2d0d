"""The shipped default model: small enough for the repo (<= 16 MB), loads with its config and sampler
defaults, and rolls out on a freshly recorded Breakout episode into native-resolution frames."""
from __future__ import annotations

import os

import numpy as np
import pytest

from nextframe.cli import DEFAULT_MODEL, SHIPPED_MODELS, sampler_defaults
from nextframe.data.record import record_episode
from nextframe.evaluation.rollout import rollout_episode
from nextframe.models.registry import is_frame_stack
from nextframe.training.checkpoint import load_model, model_metadata


def test_default_model_ships_small_with_its_card():
    for path in SHIPPED_MODELS.values():
        assert os.path.getsize(path) <= 16 * 1024 * 1024
    assert os.path.isfile(os.path.join(os.path.dirname(DEFAULT_MODEL), "MODEL_CARD.md"))
    meta = model_metadata(DEFAULT_MODEL)
    assert int(meta["train_step"]) > 0
    d = sampler_defaults(DEFAULT_MODEL)
    assert d["steps"] >= 1 and 0.0 <= d["context_noise"] < 1.0


@pytest.mark.parametrize("name", ["breakout", "breakout-dit"])
def test_shipped_models_roll_out(name):
    """The default (the frame-stack U-Net's one-step student, native 210x160) and the transformer kept beside it
    (64x64, decoded to native) both roll out from their names into native frames."""
    path = SHIPPED_MODELS[name]
    model = load_model(path)
    assert model.cfg.game == "Breakout"
    assert is_frame_stack(model) == (name == "breakout")
    ep, _ = record_episode("Breakout", 8, seed=99, index=0, policy="tracker")
    pred, metrics = rollout_episode(model, ep, context=4, n_steps=sampler_defaults(path)["steps"])
    assert pred.shape == (5, 210, 160, 3) and pred.dtype == np.uint8
    # the first predicted frame of a trained model is close to the real one (a random model scores ~10 dB)
    assert metrics["model"]["1-5"]["psnr"] > (30.0 if name == "breakout" else 22.0)
