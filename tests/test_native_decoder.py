"""The C++ native decoder (nextframe._core.NativeDecoder) against the PyTorch one it mirrors
(nextframe.models.native_decoder.DetailTransferDecoder), alone and through Session.step_native, plus its
errors. Tolerance: float rounding may flip a .5 case, so at most 1 grey level apart and >= 99.9% of the
values identical (measured on real Breakout frames: one value in 10^7 differs, by 1)."""
from __future__ import annotations

import numpy as np
import pytest

from nextframe import _core
from nextframe.data.dataset import to_model_resolution
from nextframe.models.native_decoder import DetailTransferDecoder
from nextframe.runtime import Session
from runtime_helpers import copy_bundle, read_manifest, tiny_bundle, write_manifest


def breakout_like(n: int, seed: int) -> np.ndarray:
    """Native frames with sharp static detail (bricks, noise texture) and a moving block and dot."""
    rng = np.random.default_rng(seed)
    base = np.zeros((210, 160, 3), np.uint8)
    base[57:93:6, 8:152] = rng.integers(40, 255, (6, 144, 3), dtype=np.uint8)[:, :, :]
    base[:, :8] = base[:, 152:] = 142
    base[5:15, 20:60] = rng.integers(0, 255, (10, 40, 3), dtype=np.uint8)  # "score digits"
    frames = np.repeat(base[None], n, axis=0)
    for i in range(n):
        x = 20 + 9 * i
        frames[i, 189:193, x : x + 16] = (200, 72, 72)
        frames[i, 120 + 3 * i : 124 + 3 * i, 80 - 5 * i : 82 - 5 * i] = (200, 72, 72)
    return frames


def assert_decoders_agree(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.999, (diff.max(), (diff == 0).mean())


def test_cpp_decoder_matches_pytorch_decoder():
    native = breakout_like(6, seed=0)
    low = to_model_resolution(native, 64, 64)
    ref = DetailTransferDecoder(native[0], low[0])
    cpp = _core.NativeDecoder(3, 64, 64, 210, 160, 20.0)
    assert not cpp.has_reference
    cpp.set_reference(native[0], low[0])
    rng = np.random.default_rng(1)
    noisy = np.clip(low.astype(np.int16) + rng.integers(-3, 4, low.shape), 0, 255).astype(np.uint8)  # a model's output
    for frames in (low, noisy):
        expected = ref(frames)
        for i in range(len(frames)):
            assert_decoders_agree(cpp.decode(frames[i]), expected[i])
    assert np.array_equal(cpp.decode(low[0]), native[0])  # unchanged content: the reference, exactly


def test_session_step_native_matches_step_then_pytorch_decode():
    bundle, model = tiny_bundle()
    cfg = model.cfg
    native = breakout_like(cfg.context, seed=2)
    low = to_model_resolution(native, cfg.height, cfg.width).transpose(0, 2, 3, 1)  # [n, H, W, 3]
    actions = [cfg.no_action] + [2] * (cfg.context - 1)
    frames_a, frames_b = [], []
    for native_ref, collect in ((native[-1], frames_a), (None, frames_b)):
        with Session(bundle, seed=3) as s:
            s.reset(low, actions, native_reference=native_ref)
            for a in (1, 2, 3, 0):
                collect.append(s.step_native(a) if native_ref is not None else s.step(a))
    ref = DetailTransferDecoder(native[-1], low[-1].transpose(2, 0, 1))
    expected = ref(np.stack(frames_b).transpose(0, 3, 1, 2))
    for got, want in zip(frames_a, expected):
        assert got.shape == (210, 160, 3)
        assert_decoders_agree(got, want)


def test_step_native_errors(tmp_path):
    bundle, model = tiny_bundle()
    cfg = model.cfg
    low = np.zeros((cfg.context, cfg.height, cfg.width, 3), np.uint8)
    with Session(bundle) as s:
        s.reset(low, [cfg.no_action] * cfg.context)
        with pytest.raises(ValueError, match=r"^session: step_native needs a native reference frame"):
            s.step_native(0)
        with pytest.raises(ValueError, match=r"^session: native_reference must be uint8 \[210, 160, 3\] \(got uint8 \[64, 64, 3\]\)$"):
            s.reset(low, [cfg.no_action] * cfg.context, native_reference=np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"^native_decoder: reference native frame shape \[10,10,3\] \(expected \[210,160,3\]\)$"):
        _core.NativeDecoder(3, 64, 64, 210, 160, 20.0).set_reference(np.zeros((10, 10, 3), np.uint8), np.zeros((3, 64, 64), np.uint8))

    no_decoder = copy_bundle(tmp_path / "no_decoder")
    m = read_manifest(no_decoder)
    del m["native_decoder"]
    write_manifest(no_decoder, m)
    with Session(str(no_decoder)) as s:
        with pytest.raises(ValueError, match=r"^session: bundle has no native_decoder section"):
            s.set_native_reference(np.zeros((210, 160, 3), np.uint8), low[0])

    bad = copy_bundle(tmp_path / "bad_kind")
    m = read_manifest(bad)
    m["native_decoder"]["kind"] = "nearest"
    write_manifest(bad, m)
    with pytest.raises(ValueError, match=r"^bundle: native_decoder kind 'nearest' not supported \(expected detail_transfer\)$"):
        _core.Bundle.open(str(bad))
