"""Shared helpers of the runtime tests: one tiny bundle per test session (exported once, a few seconds),
the PyTorch model it came from, a CachedSampler that consumes fed noise, and NMSE."""
from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from conftest import randomized_model, tiny_config
from nextframe.models.sampling import CachedSampler

N_STEPS = 3
CONTEXT_NOISE = 0.05


@functools.lru_cache(maxsize=None)
def tiny_bundle(prev_action: bool = False, context_noise: float = CONTEXT_NOISE, refiner: int = 0,
                gate: int = 0) -> tuple[str, torch.nn.Module]:
    """(bundle dir, model): tiny_config() (16x16, window 3 -> 4 slots), 3 Euler steps, context noise 0.05;
    prev_action: the model (and so the step graph) also takes the action that led to the previous frame;
    refiner: hidden channels of a motion refiner (the graphs then also take prev2, the frame before prev);
    gate: its refiner_gate radius."""
    from nextframe.export.bundle import export_bundle

    model = randomized_model(tiny_config(prev_action_input=prev_action, motion_refiner=refiner, refiner_gate=gate))
    root = tempfile.mkdtemp(prefix="nf_runtime_tests_")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    out = Path(root) / "bundle"
    export_bundle(model, str(out), n_steps=N_STEPS, context_noise=context_noise)
    return str(out), model


def copy_bundle(dst: Path) -> Path:
    src, _ = tiny_bundle()
    shutil.copytree(src, dst)
    return dst


def read_manifest(bundle: Path) -> dict:
    return json.loads((Path(bundle) / "manifest.json").read_text())


def write_manifest(bundle: Path, manifest: dict) -> None:
    (Path(bundle) / "manifest.json").write_text(json.dumps(manifest, indent=1))


def edited_copy(src, dst, edit) -> str:
    """A copy of bundle src at dst whose manifest edit(manifest) changed in place: a damaged bundle to refuse."""
    shutil.copytree(src, dst)
    m = read_manifest(dst)
    edit(m)
    write_manifest(dst, m)
    return str(dst)


def nmse(a: np.ndarray, b: np.ndarray) -> float:
    """mse(a, b) / mse(b, 0), as ggml's test-backend-ops (b is the reference)."""
    b64 = np.asarray(b, np.float64)
    return float(np.mean((np.asarray(a, np.float64) - b64) ** 2) / max(np.mean(b64**2), 1e-30))


def noise_draws(n: int, shape, seed: int) -> list[np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g).numpy() for _ in range(n)]


class FedCachedSampler(CachedSampler):
    """The PyTorch reference loop, drawing its noise from a list (in order) instead of its generator."""

    def __init__(self, model, noise: list[np.ndarray], **kwargs):
        super().__init__(model, **kwargs)
        self.fed = [torch.from_numpy(np.asarray(n, np.float32)) for n in noise]

    def _noise(self):
        cfg = self.model.cfg
        return self.fed.pop(0).reshape(self.batch, cfg.channels, cfg.height, cfg.width)
