"""OrtDeviceLoop (csrc/ort_device_loop.h) and the frame graph it runs (export/frame_graph.py): a frame-stack bundle's
whole next-frame step in one ONNX graph, its state in two buffers swapped per frame. On ONNX Runtime's CPU provider
here it must give FrameLoop's frames for the same bundle and seed (tolerance 1e-5 per value: the U-Net's kernels are
the same, the Euler update, clamp and palette snap run as graph ops instead of the core's loops), with fewer pushed
frames than the context depth, with context noise, with frames kept until asked for; a graph that yields NaN is
refused without moving the loop on; a damaged frame-graph declaration is a one-line error when the bundle opens. The
CUDA provider (onnxruntime-gpu) is not installable beside onnxruntime: that path is checked for its error here and is
unverified on a GPU (README)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from conftest import randomized_unet, tiny_unet_config
from nextframe import _core
from runtime_helpers import edited_copy

PALETTE = np.array([[0, 0, 0], [200, 72, 72], [66, 72, 200], [142, 142, 142], [255, 255, 255]], np.uint8)


def _export(path, palette: bool, context_noise: float, steps: int = 2, **kw):
    from nextframe.export.bundle import export_bundle

    model = randomized_unet(tiny_unet_config())
    if palette:
        model.palette = PALETTE
    return model, export_bundle(model, path, n_steps=steps, context_noise=context_noise, frame_graph=True, **kw)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("ort_device_loop")
    _export(str(root / "p"), True, 0.0)
    _export(str(root / "n"), False, 0.1, steps=3)
    return {"palette": str(root / "p"), "context_noise": str(root / "n")}


def _context(n):
    rng = np.random.default_rng(1)
    return rng.uniform(-1, 1, (n, 3, 20, 12)).astype(np.float32), np.array([4, 0, 2][:n], np.int64)


def test_export_writes_a_checked_frame_graph(bundles):
    with open(os.path.join(bundles["palette"], "manifest.json")) as f:
        m = json.load(f)
    g = m["graphs"]["frame"]
    assert g["times"] == m["sampler"]["times"] and "frame.onnx" in m["files"]
    assert [s["role"] for s in g["inputs"]] == ["context_frames", "context_actions", "action", "frame_noise"]
    assert [s["role"] for s in g["outputs"]] == ["frame", "next_context_frames", "next_context_actions", "non_finite"]
    check = m["export_check"]["frame_graph"]
    assert check["frame_max_abs"] <= 1e-5 and check["context_max_abs"] <= 1e-5 and check["actions_equal"]
    assert _core.Bundle.open(bundles["palette"]).has_frame_graph
    with open(os.path.join(bundles["context_noise"], "manifest.json")) as f:
        assert json.load(f)["graphs"]["frame"]["inputs"][-1]["role"] == "push_noise"


@pytest.mark.parametrize("kind", ["palette", "context_noise"])
def test_frames_equal_the_frame_loops(bundles, kind):
    from nextframe.runtime.session import find_ort_lib

    b = _core.Bundle.open(bundles[kind])
    frames, actions = _context(2)  # fewer than the context depth (3): the first frame stands in
    ref = _core.FrameLoop(b, backend="ort-cpu", threads=1, seed=7, ort_lib=find_ort_lib())
    dev = _core.OrtDeviceLoop(b, device="cpu", threads=1, seed=7, ort_lib=find_ort_lib())
    assert dev.device == "cpu" and dev.context_depth == 3 and not dev.cuda_graph
    ref.reset(frames, actions)
    dev.reset(frames, actions)
    for i, a in enumerate([1, 2, 3, 0, 2, 2, 1, 3]):
        want = ref.step(a)
        if i == 0:
            first = want
        if i == 3:  # kept, fetched afterwards
            assert dev.step(a, fetch=False) is None
            got = dev.frame()
        else:
            got = dev.step(a)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=f"frame {i}")
    assert dev.steps == 8
    if kind == "palette":
        colours = set(map(tuple, np.round((got.reshape(3, -1).T + 1) * 127.5).astype(int)))
        assert colours <= set(map(tuple, PALETTE.astype(int))), "every pixel snapped to the palette"
    other = _core.OrtDeviceLoop(b, device="cpu", threads=1, seed=8, ort_lib=find_ort_lib())
    other.reset(frames, actions)
    assert np.abs(other.step(1) - first).max() > 0.1, "another seed, another frame: the comparison can fail"
    dev.reset(frames, actions)  # a reset starts over from the given frames (the stream goes on)
    ref.reset(frames, actions)
    np.testing.assert_allclose(dev.step(2), ref.step(2), atol=1e-5, rtol=0)


def test_device_session_gives_the_sessions_frames(bundles):
    from nextframe.runtime import Session
    from nextframe.runtime.device_session import DeviceSession

    frames = (np.random.default_rng(3).integers(0, 256, (3, 20, 12, 3))).astype(np.uint8)
    with Session(bundles["palette"], backend="ort-cpu", seed=5, threads=1) as s:
        s.reset(frames, [4, 1, 2])
        want = [s.step(a) for a in (0, 3, 1)]
    d = DeviceSession(bundles["palette"], device="cpu", backend="ort", seed=5, threads=1)
    d.reset(frames, [4, 1, 2])
    got = [d.step(0)]
    d.advance(3)
    got += [d.frame(), d.step(1)]
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g, w)
    assert d.backend == "ort-device-loop (cpu)" and d.stats()["steps"] == 3
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'"):
        DeviceSession(bundles["palette"], device="cpu", backend="tensorflow")
    with pytest.raises(ValueError, match="backend trt runs on cuda only"):
        DeviceSession(bundles["palette"], device="cpu", backend="trt")


def test_a_graph_that_yields_nan_is_refused_and_the_loop_stays(tmp_path):
    from nextframe.runtime.session import find_ort_lib

    model = randomized_unet(tiny_unet_config())
    from nextframe.export.bundle import export_bundle

    export_bundle(model, str(tmp_path / "ok"), n_steps=1, frame_graph=True)
    with torch.no_grad():
        next(iter(model.parameters())).fill_(float("nan"))
    export_bundle(model, str(tmp_path / "nan"), n_steps=1, frame_graph=True, check=False)
    loop = _core.OrtDeviceLoop(_core.Bundle.open(str(tmp_path / "nan")), device="cpu", threads=1, ort_lib=find_ort_lib())
    frames, actions = _context(3)
    loop.reset(frames, actions)
    with pytest.raises(RuntimeError, match=r"ort_device_loop: the model produced \d+ non-finite values .* frame 0; the frame was not kept"):
        loop.step(1)
    with pytest.raises(ValueError, match="no frame generated since reset"):
        loop.frame()
    assert loop.steps == 0


def test_bad_requests_are_one_line_errors(bundles, tmp_path):
    from nextframe.export.bundle import export_bundle
    from nextframe.runtime.session import find_ort_lib

    b = _core.Bundle.open(bundles["palette"])
    lib = find_ort_lib()
    with pytest.raises(ValueError, match="device 'tpu' \\(expected cuda or cpu\\)"):
        _core.OrtDeviceLoop(b, device="tpu", ort_lib=lib)
    loop = _core.OrtDeviceLoop(b, device="cpu", threads=1, ort_lib=lib)
    with pytest.raises(ValueError, match="step before reset"):
        loop.step(0)
    frames, actions = _context(3)
    with pytest.raises(ValueError, match="action 9 outside 0..4"):
        loop.reset(frames, np.array([4, 9, 0], np.int64))
    loop.reset(frames, actions)
    with pytest.raises(ValueError, match="action 4 outside 0..3"):
        loop.step(4)
    with pytest.raises(ValueError, match="frames shape"):
        loop.reset(frames[:, :2], actions)
    bad = frames.copy()
    bad[0, 0, 0, 0] = 3.0
    with pytest.raises(ValueError, match="outside \\[-1, 1\\]"):
        loop.reset(bad, actions)
    # the CUDA provider is onnxruntime-gpu's; here the message says so
    with pytest.raises(RuntimeError, match="CUDAExecutionProvider not in onnxruntime .*onnxruntime-gpu"):
        _core.OrtDeviceLoop(b, device="cuda", ort_lib=lib)
    export_bundle(randomized_unet(tiny_unet_config()), str(tmp_path / "plain"), n_steps=1)
    with pytest.raises(ValueError, match="no frame graph \\(re-export it with `nextframe export --frame-graph`\\)"):
        _core.OrtDeviceLoop(_core.Bundle.open(str(tmp_path / "plain")), device="cpu", ort_lib=lib)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["graphs"]["frame"].update(times=[1.0, 0.25, 0.0]), "bakes in a schedule other than sampler.times"),
    (lambda m: m["graphs"]["frame"]["inputs"].pop(), "frame graph has 3 inputs \\(expected 4\\)"),
    (lambda m: m["graphs"]["frame"]["inputs"][1].update(role="action", shape=[1]), "needs one input of role context_actions \\(has 0\\)"),
    (lambda m: m["graphs"]["frame"]["outputs"][3].update(role="frame"), "output 'non_finite' is int64\\[1\\] \\(expected float32\\[1,3,20,12\\]\\)"),
    (lambda m: m["graphs"]["frame"]["inputs"][0].update(shape=[1, 2, 3, 20, 12]),
     "input 'ctx_frames' is float32\\[1,2,3,20,12\\] \\(expected float32\\[1,3,3,20,12\\]\\)"),
    (lambda m: m["graphs"]["step"]["inputs"][0].update(role="frame_noise"), "which only the frame graph reads"),
    (lambda m: m["graphs"]["frame"].update(file="../frame.onnx"), "escapes the bundle"),
    (lambda m: m["graphs"]["frame"]["inputs"][3].update(role="noise"), "unknown input role 'noise'"),
])
def test_a_damaged_frame_graph_declaration_is_refused(bundles, tmp_path, edit, message):
    d = edited_copy(bundles["palette"], str(tmp_path / "d"), edit)
    with pytest.raises(ValueError, match=message):
        _core.Bundle.open(d)


def test_bench_times_the_device_loop_beside_the_host_loop(tmp_path, capsys):
    from conftest import native_unet_bundle, square_episode
    from nextframe.cli import main
    from nextframe.data.episode import save_episode

    path, _, _ = native_unet_bundle(tmp_path, n_steps=2, n_episodes=1, frame_graph=True)
    ep = str(tmp_path / "ep.npz")
    save_episode(ep, square_episode(45, 0))
    assert main(["bench", path, "--backend", "ort-cpu,ort-device", "--frames", "10", "--threads", "1", "--episode", ep,
                 "--json"]) in (0, None)
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(out["backends"]) == ["ort-cpu", "ort-device"]
    assert out["backends"]["ort-device"]["backend"] == "ort-device-loop (cpu)"
    assert all(r["fps"] > 0 and r["latency_p99_ms"] >= r["latency_p50_ms"] for r in out["backends"].values())
    # the libraries as loaded, and no GPU named where every backend ran on the CPU
    assert out["versions"]["onnxruntime"].count(".") == 2 and "CPUExecutionProvider" in out["versions"]["onnxruntime_providers"]
    assert "gpu" not in out and out["versions"]["nextframe_core"]
    assert main(["bench", path, "--backend", "ort-cuda-device", "--frames", "10", "--episode", ep]) == 2
    assert "backend ort-cuda-device cannot run here: the loaded ONNX Runtime has no CUDA provider" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    plain, _, _ = native_unet_bundle(tmp_path / "plain", n_steps=1, n_episodes=1)
    assert main(["bench", plain, "--backend", "ort-device", "--frames", "10", "--episode", ep]) == 2
    assert "the bundle has no frame graph (nextframe export --frame-graph)" in capsys.readouterr().err
