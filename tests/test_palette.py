"""Frames snapped to the game's palette (models/palette.py): the torch and NumPy snaps agree bit for bit and
return only palette colours; the palette travels model file -> bundle manifest -> C++ core, where a tiny U-Net's
rollout equals the NumPy reference loop bit for bit and PyTorch's sampler pixel for pixel (the snap turns ORT's
1e-7 float differences into equal colours, except where a pixel lies on a boundary between two: at most 0.1%
of pixels); a manifest with a bad palette is refused in one line."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from conftest import randomized_unet, tiny_unet_config
from nextframe.models.palette import check_palette, snap_numpy, snap_torch
from nextframe.runtime import Session
from nextframe.training.checkpoint import load_model, save_model
from test_frame_stack_runtime import (ACTIONS, CONTEXT_ACTIONS, CONTEXT_NOISE, N_STEPS, FedFrameStackSampler, _context, _cpp,
                                     _noise, _reference)

PALETTE = np.array([[0, 0, 0], [200, 72, 72], [66, 72, 200], [142, 142, 142], [162, 162, 42], [255, 255, 255]], np.uint8)


def _colours(frames: np.ndarray) -> set:
    """The distinct RGB triples of float frames [..., 3, H, W] in [-1, 1], as 0-255 integers."""
    f = np.moveaxis(frames.reshape(-1, 3, *frames.shape[-2:]), 1, -1).reshape(-1, 3)
    return {tuple(c) for c in np.unique(np.round((f + 1.0) * 127.5).astype(int), axis=0)}


def test_snaps_agree_and_return_palette_colours():
    x = torch.rand(2, 3, 9, 7, generator=torch.Generator().manual_seed(0)) * 2 - 1
    t = snap_torch(x, PALETTE)
    n = np.stack([snap_numpy(f, PALETTE) for f in x.numpy()])
    assert np.array_equal(t.numpy(), n)
    assert _colours(n) <= {tuple(int(v) for v in c) for c in PALETTE}
    exact = torch.from_numpy(PALETTE.astype(np.float32) / 127.5 - 1.0).T[None, :, :, None]  # each colour maps to itself
    assert torch.equal(snap_torch(exact, PALETTE), exact)
    with pytest.raises(ValueError, match="0..255"):
        check_palette([[0, 0, 256]])
    with pytest.raises(ValueError, match="RGB triples"):
        check_palette([[0, 0]])


@pytest.fixture(scope="module")
def palette_bundle(tmp_path_factory):
    from nextframe.export.bundle import export_bundle

    root = tmp_path_factory.mktemp("palette")
    model = randomized_unet(tiny_unet_config())
    model.palette = PALETTE
    path = str(root / "model.safetensors")
    save_model(model, path)
    model = load_model(path)  # the palette comes back from the file's metadata
    assert np.array_equal(model.palette, PALETTE)
    out = str(root / "bundle")
    export_bundle(model, out, n_steps=N_STEPS, context_noise=CONTEXT_NOISE)
    return out, model


def test_runtime_snaps_like_reference_and_pytorch(palette_bundle):
    path, model = palette_bundle
    with open(os.path.join(path, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["frame"]["palette"] == PALETTE.tolist()
    noise = _noise(model.cfg)
    got = _cpp(path, model.cfg, noise)
    assert _colours(got) <= {tuple(int(v) for v in c) for c in PALETTE} and len(_colours(got)) >= 3
    assert np.array_equal(got, _reference(path, model.cfg, noise))
    s = FedFrameStackSampler(model, noise, n_steps=N_STEPS, context_noise=CONTEXT_NOISE)
    s.reset(torch.from_numpy(_context(model.cfg)), CONTEXT_ACTIONS)
    want = np.stack([s.step(a)[0].numpy() for a in ACTIONS])
    assert (got == want).all(axis=1).mean() >= 0.999
    # without the palette the same model's frames are not palette colours
    plain = FedFrameStackSampler(model, noise, n_steps=N_STEPS, context_noise=CONTEXT_NOISE, palette=None)
    plain.reset(torch.from_numpy(_context(model.cfg)), CONTEXT_ACTIONS)
    assert len(_colours(plain.step(ACTIONS[0])[0].numpy())) > 50


@pytest.mark.parametrize("palette, message", [([[0, 0, 300]], "0..255"), ([[0, 0]], "triples"), ([], "1..256"),
                                              ("black", "an array")])
def test_a_bad_palette_is_refused(palette_bundle, tmp_path, palette, message):
    src, _ = palette_bundle
    bad = str(tmp_path / "bad")
    shutil.copytree(src, bad)
    with open(os.path.join(bad, "manifest.json")) as f:
        m = json.load(f)
    m["frame"]["palette"] = palette
    with open(os.path.join(bad, "manifest.json"), "w") as f:
        json.dump(m, f)
    with pytest.raises(ValueError, match=message) as e:
        Session(bad, backend="ort-cpu", threads=1)
    assert "\n" not in str(e.value)


def test_duplicate_colours_snap_to_the_first(tmp_path):
    """Two equal colours: the C++ core (whose shortcut is off then) and the reference both pick the first."""
    from nextframe.export.bundle import export_bundle

    model = randomized_unet(tiny_unet_config(), seed=3)
    model.palette = np.array([[0, 0, 0], [200, 72, 72], [0, 0, 0], [142, 142, 142]], np.uint8)
    out = str(tmp_path / "bundle")
    export_bundle(model, out, n_steps=N_STEPS, context_noise=CONTEXT_NOISE)
    noise = _noise(model.cfg, seed=7)
    got = _cpp(out, model.cfg, noise)
    assert np.array_equal(got, _reference(out, model.cfg, noise))
    assert _colours(got) <= {(0, 0, 0), (200, 72, 72), (142, 142, 142)}
