"""MAR model files as safetensors (never pickle): the weights, and the config in the metadata. Training state (raw
and EMA weights, optimizer moments, step) goes through training/checkpoint.py's save_training_state like every
other trainer's."""
from __future__ import annotations

import json
import os

from safetensors import SafetensorError, safe_open

from nextframe.models.mar import MarModel
from nextframe.models.mar_config import MarConfig
from nextframe.training.checkpoint import _atomic_save

FORMAT = "nextframe.mar.v1"


def save_mar(model: MarModel, path: str, extra_metadata: dict | None = None) -> None:
    meta = {"format": FORMAT, "config": model.cfg.to_json(), **{k: str(v) for k, v in (extra_metadata or {}).items()}}
    _atomic_save(model.state_dict(), path, meta)


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
