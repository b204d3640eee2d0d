"""One validator for every setting (nextframe/validation.py): config files, model metadata and CLI flags refuse
wrong types, NaN, infinities, out-of-range values and unknown keys in one line naming the key, before anything is
built; a model file whose config asks for a huge model is refused from its header, without allocating it."""
from __future__ import annotations

import json
import math
import time

import pytest
import torch
from safetensors.torch import save_file

from nextframe.cli import main
from nextframe.distill.config import DistillConfig
from nextframe.models.config import ModelConfig, model_config_from_dict
from nextframe.models.unet_config import UNetConfig
from nextframe.training.checkpoint import FORMAT, load_model
from nextframe.training.config import TrainConfig, load_config


@pytest.mark.parametrize("cls, what, field, value, message", [
    (TrainConfig, "train config", "lr", math.nan, "lr must be finite"),
    (TrainConfig, "train config", "lr", math.inf, "lr must be finite"),
    (TrainConfig, "train config", "context_noise_max", -0.1, "context_noise_max must be in 0.0..1.0"),
    (TrainConfig, "train config", "batch_size", True, "batch_size must be an integer"),
    (TrainConfig, "train config", "batch_size", 2.5, "batch_size must be an integer"),
    (TrainConfig, "train config", "total_steps", 0, "total_steps must be in 1..inf"),
    (TrainConfig, "train config", "bf16", "yes", "bf16 must be true or false"),
    (TrainConfig, "train config", "data", "recordings", "data must be a list"),
    (TrainConfig, "train config", "event_rows", ((0, 5, 9),), "event_rows[0] must have 2 entries"),
    (ModelConfig, "model config", "dim", 0, "dim must be in 1..16384"),
    (ModelConfig, "model config", "height", "64", "height must be an integer"),
    (ModelConfig, "model config", "prev_frame_input", 1, "prev_frame_input must be true or false"),
    (UNetConfig, "model config", "sigma_data", math.nan, "sigma_data must be finite"),
    (UNetConfig, "model config", "widths", (32, -8), "widths must be in 8..8192"),
    (DistillConfig, "distill config", "lambda_gan", math.nan, "lambda_gan must be finite"),
    (DistillConfig, "distill config", "seed", -1, "seed must be in 0.."),
])
def test_config_fields_are_typed_and_bounded(cls, what, field, value, message):
    with pytest.raises(ValueError) as e:
        cls(**{field: value})
    text = str(e.value)
    assert text.startswith(f"{what}: {field}") and message in text and "\n" not in text, text


def test_json_values_are_normalised():
    """JSON has no tuples and writes 1 for 1.0: lists become tuples, ints become floats, so configs compare equal."""
    t = TrainConfig(lr=1, data=["a", "b"], event_rows=[[0, 20]])
    assert t.lr == 1.0 and isinstance(t.lr, float) and t.data == ("a", "b") and t.event_rows == ((0, 20),)
    assert UNetConfig(widths=[32, 64]).widths == (32, 64)
    assert model_config_from_dict({"arch": "unet", "widths": [32, 64]}) == UNetConfig(widths=(32, 64))


def test_config_file_unknown_key_and_nan(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"model": {"dim": 64, "heads": 2, "depht": 3}, "train": {}}))
    with pytest.raises(ValueError, match=r"^model config: unknown keys \['depht'\]$"):
        load_config(str(p))
    p.write_text('{"model": {"dim": 64, "heads": 2}, "train": {"lr": NaN}}')  # Python's json reads NaN
    with pytest.raises(ValueError, match="^train config: lr must be finite"):
        load_config(str(p))


def test_model_file_asking_for_a_huge_model_is_refused_from_its_header(tmp_path):
    """A few hundred bytes whose config asks for ~100 billion parameters: refused from the header's shapes, fast,
    without allocating the model (it is built on the meta device first)."""
    p = tmp_path / "huge.safetensors"
    cfg = {"dim": 16384, "depth": 256, "heads": 128, "height": 4096, "width": 4096, "patch": 8}
    save_file({"x": torch.zeros(2)}, str(p), metadata={"format": FORMAT, "config": json.dumps(cfg)})
    assert p.stat().st_size < 1024
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"does not match its config \(missing \['"):
        load_model(str(p))
    assert time.perf_counter() - t0 < 30.0


def test_model_file_with_wrong_shapes_names_them(tmp_path):
    from conftest import randomized_model, tiny_config
    from nextframe.training.checkpoint import save_model

    model = randomized_model(tiny_config())
    p = tmp_path / "m.safetensors"
    save_model(model, str(p))
    from safetensors import safe_open
    with safe_open(str(p), framework="pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    cfg["dim"] = cfg["dim"] * 2
    meta["config"] = json.dumps(cfg)
    save_file(state, str(p), metadata=meta)
    with pytest.raises(ValueError, match=r"shapes \["):
        load_model(str(p))


@pytest.mark.parametrize("argv, fragment", [
    (["rollout", "x.npz", "--out", "o", "--steps", "0"], "argument --steps: must be in 1..inf (got 0)"),
    (["rollout", "x.npz", "--out", "o", "--context-noise", "nan"], "argument --context-noise: must be finite"),
    (["rollout", "x.npz", "--out", "o", "--context-noise", "-0.5"], "argument --context-noise: must be in 0.0..1.0"),
    (["export", "--out", "o", "--steps", "two"], "argument --steps: expected an integer (got 'two')"),
    (["bench", "--frames", "-3"], "argument --frames: must be in 1..inf (got -3)"),
    (["record", "--out", "o", "--episodes", "0"], "argument --episodes: must be in 1..inf (got 0)"),
    (["quantize", "b", "--out", "o", "--groups", "0"], "argument --groups: must be in 1..64 (got 0)"),
])
def test_cli_flags_are_validated(argv, fragment, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert fragment in capsys.readouterr().err


def test_export_refuses_bad_sampler_settings(tmp_path):
    from conftest import randomized_model, tiny_config
    from nextframe.export.bundle import export_bundle

    model = randomized_model(tiny_config())
    for kwargs, fragment in ((dict(context_noise=math.nan), "context_noise must be a number in 0..1"),
                             (dict(n_steps=0), "n_steps must be an integer in 1..1000"),
                             (dict(shift=-1.0), "shift must be a number")):
        with pytest.raises(ValueError, match=fragment):
            export_bundle(model, str(tmp_path / "b"), check=False, **kwargs)
        assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("key, value, fragment", [
    ("default_context_noise", "NaN", "model metadata: context_noise must be finite"),
    ("default_steps", "0", "model metadata: steps must be in 1..1000"),
    ("default_steps", "2.5", "model metadata: steps must be an integer"),
    ("default_times", "[0.0, 1.0]", "model metadata: times must descend"),
    ("default_times", "[1.0, 0.5", "has unreadable sampler metadata"),
])
def test_model_metadata_is_validated(tmp_path, key, value, fragment):
    from conftest import randomized_model, tiny_config
    from nextframe.cli import sampler_defaults
    from nextframe.training.checkpoint import save_model

    p = tmp_path / "m.safetensors"
    save_model(randomized_model(tiny_config()), str(p), extra_metadata={key: value})
    with pytest.raises(ValueError, match=fragment):
        sampler_defaults(str(p))
