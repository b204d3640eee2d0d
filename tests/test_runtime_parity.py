"""Parity of the C++ runtime (ORT CPU backend) with its references, on the tiny exported bundle.

* C++ frame loop vs PyTorch ``CachedSampler`` over 14 generated frames after 2 context frames (16 pushes
  through a 4-slot ring: it wraps four times), both consuming the same fed noise. Bound: NMSE <= 1e-6 per
  frame. Why not 1e-7 (the fp32 default): ORT and PyTorch run the same graph with a different grouping of
  float32 operations (fused GEMM/attention kernels, and a 4-slot ring with one masked slot against
  PyTorch's 3-slot cache), ~1e-13 per call as the export gate measures; twelve and more autoregressive
  frames feed those differences back through the cache, and the bound keeps margin for that growth while
  any semantic slip (noise order, a wrong age or slot, a missing prev) gives NMSE of 1e-3 or more, which
  the last test demonstrates.
* C++ frame loop vs the NumPy reference loop (runtime/reference.py) driving onnxruntime's Python API on the
  same graph, one thread each: the same kernels and the same float32 operation order, so the frames are
  equal bit for bit, for Euler with the manifest's schedule and for Heun with DiSA annealing.
* The C++ engine alone vs onnxruntime's Python API on one random input: equal bit for bit.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from nextframe import _core
from nextframe.runtime import Session, find_ort_lib
from nextframe.runtime import reference as ref
from runtime_helpers import (CONTEXT_NOISE, N_STEPS, FedCachedSampler, nmse, noise_draws, read_manifest,
                             tiny_bundle)

NMSE_BOUND_TORCH = 1e-6  # see the module docstring
N_CONTEXT = 2
ACTIONS = [0, 1, 2, 3, 3, 2, 1, 0, 0, 2, 1, 3, 2, 2]  # 14 frames
CONTEXT_ACTIONS = [4, 0]  # no_action (= n_actions) for the first frame


def _context(seed: int = 3) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(N_CONTEXT, 3, 16, 16, generator=g) * 2 - 1).numpy()


def _cpp_rollout(noise: list[np.ndarray], prev_action: bool = False, refiner: int = 0, gate: int = 0,
                 **kwargs) -> np.ndarray:
    bundle, _ = tiny_bundle(prev_action, refiner=refiner, gate=gate)
    with Session(bundle, backend="ort-cpu", threads=1, **kwargs) as s:
        s.feed_noise(np.concatenate([n.reshape(-1) for n in noise]))
        s.reset(_context(), CONTEXT_ACTIONS)
        frames = np.stack([s.step_raw(a) for a in ACTIONS])
        assert s.loop.n_noise_queued == 0  # every fed value consumed, none left over
        assert s.slot_pos == [12, 13, 14, 15]  # 16 pushes into 4 slots
    return frames


def _torch_rollout(noise: list[np.ndarray], prev_action: bool = False, refiner: int = 0, gate: int = 0) -> np.ndarray:
    _, model = tiny_bundle(prev_action, refiner=refiner, gate=gate)
    s = FedCachedSampler(model, noise, n_steps=N_STEPS, context_noise=CONTEXT_NOISE)
    s.reset(torch.from_numpy(_context()), CONTEXT_ACTIONS)
    return np.stack([s.step(a)[0].numpy() for a in ACTIONS])


def _noise(seed: int = 11) -> list[np.ndarray]:
    return noise_draws(N_CONTEXT + 2 * len(ACTIONS), (3, 16, 16), seed)


@pytest.mark.parametrize("prev_action, refiner, gate", [(False, 0, 0), (True, 0, 0), (True, 4, 0), (True, 4, 1)])
def test_rollout_matches_pytorch_cached_sampler(prev_action, refiner, gate):
    noise = _noise()
    got, want = _cpp_rollout(noise, prev_action, refiner, gate), _torch_rollout(noise, prev_action, refiner, gate)
    errors = [nmse(g, w) for g, w in zip(got, want)]
    print(f"\nC++ vs PyTorch NMSE per frame: max {max(errors):.3g}, " + " ".join(f"{e:.2g}" for e in errors))
    assert max(errors) <= NMSE_BOUND_TORCH
    assert want.std() > 0.05  # the frames carry signal, so the comparison means something
    assert np.abs(np.diff(want, axis=0)).mean() > 1e-3  # and they change from frame to frame


def test_a_wrong_noise_order_is_caught():
    """The bound is meaningful: swapping two draws (the initial and the context noise of frame 0) moves
    the rollout far outside it."""
    noise = _noise()
    swapped = list(noise)
    swapped[N_CONTEXT], swapped[N_CONTEXT + 1] = swapped[N_CONTEXT + 1], swapped[N_CONTEXT]
    got, want = _cpp_rollout(swapped), _torch_rollout(noise)
    assert max(nmse(g, w) for g, w in zip(got, want)) > 1e-3


def _ort_step_fn(threads: int = 1, prev_action: bool = False, graph: str = "step", refiner: int = 0):
    bundle, _ = tiny_bundle(prev_action, refiner=refiner)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(f"{bundle}/{graph}.onnx", so, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in sess.get_outputs()]

    def step(feed: dict) -> dict:
        return dict(zip(outputs, sess.run(None, feed)))

    return step


@pytest.mark.parametrize("sampler, n_steps, disa, prev_action, refiner", [
    ("euler", None, None, False, 0),  # the manifest's times
    ("euler", 5, None, False, 0),     # flow_schedule(5, shift) computed by the core
    ("heun", None, {"n_max": 4, "n_min": 1, "n_anneal_frames": 6, "kind": "cosine"}, False, 0),
    ("euler", None, None, True, 0),   # a graph with the prev_action input
    ("euler", None, None, True, 4),   # and the prev2 input (motion refiner)
])
def test_rollout_matches_numpy_reference_bit_for_bit(sampler, n_steps, disa, prev_action, refiner):
    bundle, _ = tiny_bundle(prev_action, refiner=refiner)
    noise = _noise(seed=5)
    got = _cpp_rollout(noise, prev_action, refiner, sampler=sampler, n_steps=n_steps, disa=disa)
    loop = ref.ReferenceLoop(read_manifest(bundle), _ort_step_fn(prev_action=prev_action, refiner=refiner), noise,
                             sampler=sampler, n_steps=n_steps, disa=disa,
                             kv_fn=_ort_step_fn(prev_action=prev_action, graph="kv", refiner=refiner))
    loop.reset(_context(), CONTEXT_ACTIONS)
    want = np.stack([loop.step(a) for a in ACTIONS])
    assert loop.ring.slot_pos == [12, 13, 14, 15]
    assert np.array_equal(got, want), f"max nmse {max(nmse(g, w) for g, w in zip(got, want)):.3g}"


def test_engine_matches_onnxruntime_python():
    bundle, _ = tiny_bundle()
    engine = _core.Engine(_core.Bundle.open(bundle), backend="ort-cpu", threads=1, ort_lib=find_ort_lib())
    assert engine.backend == "ort-cpu"
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in engine.inputs:
        if spec["dtype"] == "float32":
            feeds[spec["name"]] = rng.standard_normal(spec["shape"]).astype(np.float32)
        else:
            feeds[spec["name"]] = rng.integers(0, 4, spec["shape"]).astype(np.int64)
    got = engine.run(feeds)
    want = _ort_step_fn()(feeds)
    for spec in engine.outputs:
        assert np.array_equal(got[spec["name"]], want[spec["name"]]), spec["name"]


def test_session_uint8_io_and_stats():
    bundle, _ = tiny_bundle()
    ctx_u8 = np.clip(np.round((_context().transpose(0, 2, 3, 1) + 1) * 127.5), 0, 255).astype(np.uint8)
    with Session(bundle, backend="ort-cpu", threads=1, seed=1, n_warmup_frames=2) as s:
        s.reset(ctx_u8, ["NOOP", "FIRE"])
        frames = [s.step("RIGHT") for _ in range(6)]
        stats = s.stats()
    assert frames[0].dtype == np.uint8 and frames[0].shape == (16, 16, 3)
    assert stats["n_frames"] == 6 and stats["n_measured_frames"] == 4
    assert stats["n_reallocations"] == 0  # buffers bound once, never rebound
    assert stats["n_engine_runs"] == 2 + 6 * (N_STEPS + 1)  # pushes + denoising evaluations
    assert 0 < stats["latency_p50_ms"] <= stats["latency_p99_ms"] <= stats["latency_max_ms"]
    assert 0 < stats["engine_fraction"] <= 1.0
    assert stats["backend"] == "ort-cpu"


def test_auto_backend_falls_back_to_cpu_and_says_why():
    bundle, _ = tiny_bundle()
    with Session(bundle, threads=1) as s:
        if "CUDAExecutionProvider" in _core.ort_library_info()["providers"]:
            pytest.skip("this onnxruntime has the CUDA provider")
        assert s.backend == "ort-cpu"
        assert s.backend_note.startswith("auto: onnxruntime ") and s.backend_note.endswith("has no CUDAExecutionProvider")


def test_kv_graph_writes_the_same_cache_as_the_step_graph(tmp_path):
    """The kv graph is the step graph cut after the last block's K/V: the core uses it by default, the
    frames agree with the step-graph-only loop (NMSE <= 1e-12: the same arithmetic, ORT may fuse the cut
    graph differently), and a bundle without it (older exports) runs on the step graph alone."""
    noise = _noise(seed=7)
    with_kv = _cpp_rollout(noise)
    step_only = _cpp_rollout(noise, use_kv_graph=False)
    assert max(nmse(a, b) for a, b in zip(with_kv, step_only)) <= 1e-12
    bundle, _ = tiny_bundle()
    with Session(bundle, backend="ort-cpu", threads=1) as s:
        assert s.bundle.has_kv_graph and s.loop.uses_kv_graph and s.stats()["uses_kv_graph"]
    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    m = read_manifest(old)
    del m["graphs"]["kv"], m["files"]["kv.onnx"]
    (old / "kv.onnx").unlink()
    (old / "manifest.json").write_text(json.dumps(m))
    with Session(str(old), backend="ort-cpu", threads=1) as s:
        assert not s.bundle.has_kv_graph and not s.loop.uses_kv_graph
        s.feed_noise(np.concatenate([n.reshape(-1) for n in noise]))
        s.reset(_context(), CONTEXT_ACTIONS)
        old_frames = np.stack([s.step_raw(a) for a in ACTIONS])
    assert np.array_equal(old_frames, step_only)


def test_refiner_graphs_take_prev2_and_the_kv_graph_keeps_it_unread():
    """A motion-refiner model reads the frame before prev. Only its output head does, so the exporter drops
    prev2 from the kv graph; export puts it back so both graphs keep one input list (docs/formats.md)."""
    import onnx

    bundle, _ = tiny_bundle(True, refiner=4)
    names = [i["name"] for i in read_manifest(bundle)["graphs"]["step"]["inputs"]]
    assert names[-2:] == ["prev_action", "prev2"]
    for graph in ("step", "kv"):
        proto = onnx.load(f"{bundle}/{graph}.onnx")
        onnx.checker.check_model(proto)
        assert [i.name for i in proto.graph.input] == names
    noise = _noise(seed=7)
    with_kv = _cpp_rollout(noise, True, 4)
    step_only = _cpp_rollout(noise, True, 4, use_kv_graph=False)
    assert max(nmse(a, b) for a, b in zip(with_kv, step_only)) <= 1e-12
