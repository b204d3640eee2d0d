"""OrtDeviceLoop on a K/V-cache transformer bundle (csrc/ort_device_loop.h, export/frame_graph.py KvFrameStep): the
frame graph samples the frame against the ring and returns its K/V, which the loop writes into the ring's slot on the
device; reset writes the given frames' K/V with the kv graph. On ONNX Runtime's CPU provider here its frames must be
FrameLoop's for the same bundle and seed (tolerance 1e-5 per value: the same model in other graphs; the ring wraps
around several times, in reset and in the loop), with each of the transformer's context signatures (prev only;
prev_action and context noise; prev2 of a motion refiner), with fewer frames than the window, and
when the bundle has no kv graph (reset then writes the cache with the step graph). A damaged declaration is a
one-line error when the bundle opens. The CUDA path (onnxruntime-gpu, the strided device copy into the slot) is
unverified on a GPU (README)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import randomized_model, tiny_config
from nextframe import _core
from runtime_helpers import edited_copy

PALETTE = np.array([[0, 0, 0], [200, 72, 72], [66, 72, 200], [142, 142, 142], [255, 255, 255]], np.uint8)
VARIANTS = {
    "plain": (dict(), 0.0, False),
    "prev_action+context_noise": (dict(prev_action_input=True), 0.1, False),
    # the model has a palette, the transformer's manifest carries none (its frames are not snapped): nor is the graph's
    "prev2": (dict(motion_refiner=8), 0.0, True),
}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    from nextframe.export.bundle import export_bundle

    root = tmp_path_factory.mktemp("ort_device_loop_kv")
    out = {}
    for name, (kw, cn, palette) in VARIANTS.items():
        model = randomized_model(tiny_config(**kw))
        if palette:
            model.palette = PALETTE
        out[name] = str(root / name.replace("+", "_"))
        export_bundle(model, out[name], n_steps=2, context_noise=cn, frame_graph=True)
    return out


def _context(n):
    rng = np.random.default_rng(1)
    return rng.uniform(-1, 1, (n, 3, 16, 16)).astype(np.float32), (np.arange(n) % 5).astype(np.int64)


def test_export_declares_the_ring_and_the_context_by_back(bundles):
    with open(os.path.join(bundles["prev2"], "manifest.json")) as f:
        m = json.load(f)
    g = m["graphs"]["frame"]
    assert [(s["role"], s.get("back")) for s in g["inputs"]] == [
        ("context_frame", 1), ("context_frame", 2), ("cache_k", None), ("cache_v", None), ("cache_ages", None),
        ("action", None), ("frame_noise", None)]
    assert [(s["role"], s.get("back")) for s in g["outputs"]] == [
        ("frame", None), ("next_context_frame", 1), ("next_context_frame", 2), ("k_new", None), ("v_new", None),
        ("non_finite", None)]
    check = m["export_check"]["frame_graph"]
    assert check["frame_max_abs"] <= 1e-5 and check["context_max_abs"] <= 1e-5 and check["kv_max_abs"] <= 1e-5
    with open(os.path.join(bundles["prev_action+context_noise"], "manifest.json")) as f:
        roles = [s["role"] for s in json.load(f)["graphs"]["frame"]["inputs"]]
    assert "context_action" in roles and roles[-1] == "push_noise"


def _compare(bundle_dir, n_context, actions, seed=7):
    from nextframe.runtime.session import find_ort_lib

    b = _core.Bundle.open(bundle_dir)
    frames, ctx_actions = _context(n_context)
    ref = _core.FrameLoop(b, backend="ort-cpu", threads=1, seed=seed, ort_lib=find_ort_lib())
    dev = _core.OrtDeviceLoop(b, device="cpu", threads=1, seed=seed, ort_lib=find_ort_lib())
    ref.reset(frames, ctx_actions)
    dev.reset(frames, ctx_actions)
    for i, a in enumerate(actions):
        np.testing.assert_allclose(dev.step(a), ref.step(a), atol=1e-5, rtol=0, err_msg=f"frame {i}")
    return ref, dev, frames, ctx_actions


@pytest.mark.parametrize("kind", list(VARIANTS))
def test_frames_equal_the_frame_loops(bundles, kind):
    # 6 context frames wrap the 4-slot ring during reset, 10 steps wrap it twice more
    ref, dev, frames, ctx_actions = _compare(bundles[kind], 6, [1, 2, 3, 0, 2, 2, 1, 3, 0, 1])
    assert dev.context_depth == (2 if kind == "prev2" else 1) and dev.steps == 10
    # a reset starts over: the ring's old slots must not be read
    dev.reset(frames[:1], ctx_actions[:1])
    ref.reset(frames[:1], ctx_actions[:1])
    for a in (2, 0, 3):
        np.testing.assert_allclose(dev.step(a), ref.step(a), atol=1e-5, rtol=0)


def test_the_ring_is_read(bundles):
    """The comparison can fail: the same last frame after other history gives another frame."""
    from nextframe.runtime.session import find_ort_lib

    b = _core.Bundle.open(bundles["plain"])
    frames, actions = _context(3)
    loops = [_core.OrtDeviceLoop(b, device="cpu", threads=1, seed=3, ort_lib=find_ort_lib()) for _ in range(2)]
    loops[0].reset(frames, actions)
    loops[1].reset(frames[2:], actions[2:])
    assert np.abs(loops[0].step(1) - loops[1].step(1)).max() > 1e-3  # 100x the parity tolerance


def test_without_a_kv_graph_reset_writes_the_cache_with_the_step_graph(bundles, tmp_path):
    d = edited_copy(bundles["prev_action+context_noise"], tmp_path / "nokv", lambda m: m["graphs"].pop("kv"))
    assert not _core.Bundle.open(d).has_kv_graph
    _compare(d, 5, [0, 1, 2, 3, 1])


def test_device_session_gives_the_sessions_frames(bundles):
    from nextframe.runtime import Session
    from nextframe.runtime.device_session import DeviceSession

    frames = (np.random.default_rng(3).integers(0, 256, (3, 16, 16, 3))).astype(np.uint8)
    with Session(bundles["prev2"], backend="ort-cpu", seed=5, threads=1) as s:
        s.reset(frames, [4, 1, 2])
        want = [s.step(a) for a in (0, 3, 1, 1, 2)]
    d = DeviceSession(bundles["prev2"], device="cpu", backend="ort", seed=5, threads=1)
    d.reset(frames, [4, 1, 2])
    got = [d.step(0), d.step(3)]
    d.advance(1)
    got += [d.frame(), d.step(1), d.step(2)]
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g, w)


def _frame_io(m, kind, role, back=None):
    return next(s for s in m["graphs"]["frame"][kind] if s["role"] == role and s.get("back") == back)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["graphs"]["frame"]["outputs"].pop(4), "frame graph has 5 outputs \\(expected 6\\)"),
    (lambda m: _frame_io(m, "outputs", "next_context_frame", 2).update(back=3),
     "needs one output of role next_context_frame back 2 \\(has 0\\)"),
    (lambda m: _frame_io(m, "inputs", "cache_ages").update(role="context_frame", back=3),
     "needs one input of role cache_ages \\(has 0\\)"),
    (lambda m: _frame_io(m, "outputs", "k_new").update(shape=[2, 1, 2, 15, 16]),
     "output 'k_new' is float32\\[2,1,2,15,16\\] \\(expected float32\\[2,1,2,16,16\\]\\)"),
    (lambda m: _frame_io(m, "outputs", "next_context_frame", 1).pop("back"), "manifest key .*back"),
])
def test_a_damaged_declaration_is_refused(bundles, tmp_path, edit, message):
    d = edited_copy(bundles["prev2"], str(tmp_path / "d"), edit)
    with pytest.raises(ValueError, match=message):
        _core.Bundle.open(d)
