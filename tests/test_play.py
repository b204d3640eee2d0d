"""`nextframe play` headless: the window loop runs on SDL's dummy driver with scripted actions through the C++
runtime, shows the frames at native resolution and records them; keys map to the game's action names."""
from __future__ import annotations

import os

import pytest

from nextframe.runtime.play import action_for

BREAKOUT = ["NOOP", "FIRE", "RIGHT", "LEFT"]


def test_keys_map_to_action_names():
    assert action_for(set(), BREAKOUT) == 0
    assert action_for({"FIRE"}, BREAKOUT) == 1
    assert action_for({"RIGHT"}, BREAKOUT) == 2
    assert action_for({"LEFT", "UP"}, BREAKOUT) == 3  # UP does not exist in Breakout: the closest subset wins
    full = ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "UPFIRE"]
    assert full[action_for({"UP", "RIGHT"}, full)] == "UPRIGHT"
    assert full[action_for({"UP", "FIRE"}, full)] == "UPFIRE"


def test_headless_play_records(tmp_path, monkeypatch):
    pytest.importorskip("pygame", reason="pygame comes with the [play] extra")
    from conftest import randomized_model, tiny_config
    from nextframe.export.bundle import export_bundle
    from nextframe.runtime.play import play

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    bundle = str(tmp_path / "bundle")
    export_bundle(randomized_model(tiny_config(context=4)), bundle, n_steps=2)
    out = str(tmp_path / "play.mp4")
    result = play(bundle, scale=1, record=out, max_frames=12, script=lambda i: i % 4, fps_cap=1000)
    assert result["frames"] == 12 and result["runtime"]["n_frames"] == 12
    assert os.path.getsize(out) > 0
    assert result["recording"] == out
