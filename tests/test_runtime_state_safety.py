"""The runtime never hands out a silently wrong frame and never half-applies a refused call: a graph that outputs
NaN or infinity is reported (the clamp to [-1, 1] would have turned it into a black or white frame), and a reset or
push that is refused (a frame outside [-1, 1] or NaN, a bad action, a bad native reference) leaves the session
exactly as it was: the next frames equal those of a session that never saw the bad call."""
from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from nextframe import _core
from nextframe.runtime import Session
from runtime_helpers import copy_bundle, read_manifest, tiny_bundle, write_manifest


def _poison_output(bundle, value: float) -> None:
    """Multiply the step graph's first output by `value` (NaN, inf) and list the new graph."""
    path = bundle / "step.onnx"
    model = onnx.load(str(path))
    g = model.graph
    out = g.output[0].name
    raw = out + "_raw"
    for node in g.node:
        node.output[:] = [raw if o == out else o for o in node.output]
    g.initializer.append(helper.make_tensor("poison", TensorProto.FLOAT, [], [value]))
    g.node.append(helper.make_node("Mul", [raw, "poison"], [out]))
    onnx.save(model, str(path))
    m = read_manifest(bundle)
    data = path.read_bytes()
    m["files"]["step.onnx"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    write_manifest(bundle, m)


def _context(s: Session, n: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, s.height, s.width, s.channels), dtype=np.uint8)
    return frames, [s.no_action] + [0] * (n - 1)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_graph_output_is_reported(tmp_path, value):
    b = copy_bundle(tmp_path / "b")
    _poison_output(b, value)
    m = read_manifest(b)
    m["graphs"].pop("kv", None)  # the poisoned step graph must also write the cache: no kv graph
    m["files"].pop("kv.onnx", None)
    (b / "kv.onnx").unlink(missing_ok=True)
    write_manifest(b, m)
    with Session(str(b), backend="ort-cpu", threads=1, use_kv_graph=False) as s:
        frames, actions = _context(s)
        s.reset(frames, actions)
        pos = s.pos
        with pytest.raises(RuntimeError, match=r"^frame_loop: the model produced \d+ non-finite values \(NaN/inf\) of \d+ "
                                               r"in frame 0; the frame was not kept"):
            s.step(1)
        assert s.pos == pos  # nothing was pushed


def _frames_after(s: Session, n: int = 3) -> list[np.ndarray]:
    return [s.step(a) for a in (0, 1, 2)[:n]]


def test_refused_reset_leaves_the_session_unchanged():
    bundle, _ = tiny_bundle()
    with Session(bundle, backend="ort-cpu", threads=1, seed=3) as ref, \
            Session(bundle, backend="ort-cpu", threads=1, seed=3) as s:
        frames, actions = _context(ref)
        ref.reset(frames, actions)
        s.reset(frames, actions)
        expected = _frames_after(ref)
        bad = frames.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
        bad[1, 0, 0, 0] = np.nan
        for call in (lambda: s.reset(bad, actions),                               # NaN in a float frame
                     lambda: s.reset(frames, actions[:-1] + [99]),                # unknown action
                     lambda: s.loop.reset(np.full((3, s.channels, s.height, s.width), 2.0, np.float32),
                                          np.zeros(3, np.int64)),                 # raw core: out of range
                     lambda: s.loop.push_frame(np.full(s.channels * s.height * s.width, np.nan, np.float32), 0)):
            pos = s.pos
            with pytest.raises(ValueError):
                call()
            assert s.pos == pos
        got = _frames_after(s)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_core_reset_refuses_nan_before_changing_anything():
    bundle, _ = tiny_bundle()
    loop = _core.FrameLoop(_core.Bundle.open(bundle), backend="ort-cpu", threads=1)
    f = np.zeros((2, 1, 1, loop.frame_numel), np.float32)
    f[1, 0, 0, 5] = np.nan
    with pytest.raises(ValueError, match=r"^frame_loop: frame 1 has a value outside \[-1, 1\] \(nan\)$"):
        loop.reset(f, np.zeros(2, np.int64))
    assert loop.pos == 0


def test_refused_native_reference_changes_nothing():
    bundle, _ = tiny_bundle()
    with Session(bundle, backend="ort-cpu", threads=1) as s:
        if s._decoder is None:
            pytest.skip("the tiny bundle has no native decoder")
        frames, actions = _context(s)
        with pytest.raises(ValueError, match="native_reference must be uint8"):
            s.reset(frames, actions, native_reference=np.zeros((5, 5, 3), np.uint8))
        assert s.pos == 0 and not s._decoder.has_reference
