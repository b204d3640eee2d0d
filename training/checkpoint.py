"""Checkpoints as safetensors (never pickle). A model file holds the weights and, in its metadata, the model
config; a training checkpoint adds the EMA weights, the optimizer moments and the step.
"""
from __future__ import annotations

import json
import os

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from nextframe.atomic import write_atomic
from nextframe.models.config import model_config_from_dict
from nextframe.models.dit import NextFrameDiT
from nextframe.models.palette import check_palette, palette_json
from nextframe.models.registry import build_model

FORMAT = "nextframe.model.v1"


def _atomic_save(tensors: dict, path: str, metadata: dict) -> None:
    def write(tmp: str) -> None:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)

    write_atomic(path, write)


def save_model(model: NextFrameDiT, path: str, extra_metadata: dict | None = None) -> None:
    """The weights, the config and, where the model has one, the game palette its frames are snapped to."""
    meta = {"format": FORMAT, "config": model.cfg.to_json(), **(extra_metadata or {})}
    if getattr(model, "palette", None) is not None:
        meta["palette"] = palette_json(model.palette)
    _atomic_save(model.state_dict(), path, meta)


def check_model_path(path: str) -> None:
    if os.path.isdir(path):
        raise ValueError(f"model: {path} is a directory, not a model file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model: file not found ({path})")


def load_model(path: str) -> NextFrameDiT:
    check_model_path(path)
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ValueError(f"model: {path} is not a nextframe model (format {meta.get('format')!r}, expected {FORMAT!r})")
            try:
                cfg = model_config_from_dict(json.loads(meta.get("config", "")))
            except json.JSONDecodeError as e:
                raise ValueError(f"model: {path} has no readable config in its metadata ({e})") from None
            check_shapes(path, cfg, {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, RuntimeError, SafetensorError) as e:  # a truncated or foreign file
        raise ValueError(f"model: {path} is not a readable safetensors file ({e})") from None
    model = build_model(cfg)
    model.load_state_dict(state)
    model.palette = None
    if "palette" in meta:
        try:
            model.palette = check_palette(json.loads(meta["palette"]))
        except (json.JSONDecodeError, ValueError) as e:
            raise ValueError(f"model: {path} has an unreadable palette in its metadata ({e})") from None
    return model.eval()


def check_shapes(path: str, cfg, shapes: dict[str, tuple[int, ...]]) -> None:
    """The file's tensor shapes (from its header) against those its config implies, before anything is allocated:
    the model is first built on the meta device (shapes only, no memory), so a small file whose config asks for
    a huge model is refused here instead of exhausting memory."""
    with torch.device("meta"):
        shell = build_model(cfg)
    expected = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    wrong = [f"{k} {list(shapes[k])} (config: {list(v)})" for k, v in expected.items() if k in shapes and shapes[k] != v]
    if missing or unexpected or wrong:
        raise ValueError(f"model: {path} does not match its config (missing {missing[:3]}, unexpected {unexpected[:3]}, "
                         f"shapes {wrong[:2]})")


def model_metadata(path: str) -> dict:
    check_model_path(path)
    try:
        with safe_open(path, framework="pt") as f:
            return dict(f.metadata() or {})
    except (OSError, RuntimeError, SafetensorError) as e:
        raise ValueError(f"model: {path} is not a readable safetensors file ({e})") from None


def save_training_state(path: str, model, ema, optimizer, step: int, extra: dict) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    opt_state = optimizer.state_dict()
    for pid, st in opt_state["state"].items():
        for name, val in st.items():
            tensors[f"opt.{pid}.{name}"] = val if torch.is_tensor(val) else torch.tensor(val)
    meta = {"format": "nextframe.train.v1", "config": model.cfg.to_json(), "step": str(step),
            "opt_groups": json.dumps(opt_state["param_groups"]), **{k: str(v) for k, v in extra.items()}}
    _atomic_save(tensors, path, meta)


def load_training_state(path: str, model, ema, optimizer) -> tuple[int, dict]:
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["opt_groups"])})
    return int(meta["step"]), meta
