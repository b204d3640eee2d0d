"""Resumable distillation state as one safetensors file (never pickle): any number of named networks and
optimizers, the step, and string metadata. training/checkpoint.py holds exactly one model + EMA + optimizer;
distillation has up to four networks and three optimizers, hence this general form of the same layout."""
from __future__ import annotations

import json

import torch
from safetensors import safe_open

from nextframe.training.checkpoint import _atomic_save

FORMAT = "nextframe.distill.v1"


def save_state(path: str, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer],
               step: int, meta: dict[str, str]) -> None:
    tensors, groups = {}, {}
    for name, m in modules.items():
        tensors.update({f"{name}.{k}": v for k, v in m.state_dict().items()})
    for name, opt in optimizers.items():
        st = opt.state_dict()
        groups[name] = st["param_groups"]
        for pid, per_param in st["state"].items():
            for key, val in per_param.items():
                tensors[f"opt_{name}.{pid}.{key}"] = val if torch.is_tensor(val) else torch.tensor(val)
    _atomic_save(tensors, path, {"format": FORMAT, "step": str(step), "opt_groups": json.dumps(groups), **meta})


def load_state(path: str, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer]) -> tuple[int, dict]:
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"distill: {path} is not a distillation state (format {meta.get('format')!r})")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for name, m in modules.items():
        prefix = f"{name}."
        m.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    groups = json.loads(meta["opt_groups"])
    for name, opt in optimizers.items():
        prefix, state = f"opt_{name}.", {}
        for k, v in tensors.items():
            if k.startswith(prefix):
                pid, key = k[len(prefix):].split(".", 1)
                state.setdefault(int(pid), {})[key] = v
        opt.load_state_dict({"state": state, "param_groups": groups[name]})
    return int(meta["step"]), meta
