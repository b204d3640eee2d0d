"""tools/ship_default.py writes the model file `demo`, `play` and `export` read their sampler settings from: an evenly
spaced step count or an explicit schedule, never over an existing file without --force."""
from __future__ import annotations

import importlib.util
import os

import pytest

from conftest import randomized_unet, tiny_unet_config

TOOL = os.path.join(os.path.dirname(__file__), "..", "tools", "ship_default.py")


def _ship():
    spec = importlib.util.spec_from_file_location("ship_default", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


@pytest.fixture
def model_file(tmp_path):
    from nextframe.training.checkpoint import save_model

    path = str(tmp_path / "m.safetensors")
    save_model(randomized_unet(tiny_unet_config()), path, {"train_step": "7"})
    return path


def test_ship_with_an_explicit_schedule(tmp_path, model_file):
    from nextframe.cli import sampler_defaults

    out = str(tmp_path / "shipped.safetensors")
    assert _ship()([model_file, "--out", out, "--times", "1,0.3,0", "--train-step", "7", "--provenance", "test"]) == 0
    d = sampler_defaults(out)
    assert d["steps"] == 2 and d["times"] == [1.0, 0.3, 0.0]
    # an existing file is kept unless --force
    assert _ship()([model_file, "--out", out, "--steps", "1", "--train-step", "7", "--provenance", "test"]) == 2
    assert sampler_defaults(out)["times"] == [1.0, 0.3, 0.0]
    assert _ship()([model_file, "--out", out, "--steps", "1", "--train-step", "7", "--provenance", "t", "--force"]) == 0
    assert sampler_defaults(out)["steps"] == 1 and sampler_defaults(out)["times"] is None


@pytest.mark.parametrize("args", [["--times", "1,0.5,0.5,0"], ["--times", "0.9,0"], ["--steps", "2", "--times", "1,0"], []])
def test_ship_refuses_bad_schedules(tmp_path, model_file, args, capsys):
    out = str(tmp_path / "shipped.safetensors")
    assert _ship()([model_file, "--out", out, "--train-step", "7", "--provenance", "test", *args]) == 2
    assert not os.path.exists(out) and capsys.readouterr().err.startswith("ship_default: ")
