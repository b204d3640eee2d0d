"""MAR model files as safetensors (never pickle): the weights, and the config in the metadata. A training
checkpoint is a model file of the EMA weights plus one of the raw weights and a small state (step, optimizer)."""
from __future__ import annotations

import json
import os

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from nextframe.atomic import write_atomic
from nextframe.models.mar import MarModel
from nextframe.models.mar_config import MarConfig

FORMAT = "nextframe.mar.v1"


def save_mar(model: MarModel, path: str, extra_metadata: dict | None = None) -> None:
    meta = {"format": FORMAT, "config": model.cfg.to_json(), **{k: str(v) for k, v in (extra_metadata or {}).items()}}
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}

    def write(tmp: str) -> None:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o644)

    write_atomic(path, write)


def read_mar_metadata(path: str) -> dict:
    with safe_open(path, framework="pt") as f:
        return dict(f.metadata() or {})


def load_mar(path: str, cls=MarModel) -> MarModel:
    """A MAR model file -> model in eval mode. One-line ValueError for a missing, foreign or damaged file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mar model: file not found ({path})")
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ValueError(f"mar model: {path} is not a nextframe MAR model (format {meta.get('format')!r}, "
                                 f"expected {FORMAT!r})")
            try:
                cfg = MarConfig.from_json(meta.get("config", ""))
            except json.JSONDecodeError as e:
                raise ValueError(f"mar model: {path} has no readable config ({e})") from None
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, SafetensorError) as e:
        raise ValueError(f"mar model: {path} is not a readable safetensors file ({e})") from None
    model = cls(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"mar model: {path} does not match its config ({' '.join(str(e).split())[:300]})") from None
    return model.eval()
