"""DeviceLoop (csrc/device_loop.h, the plugin's nf_aoti_loop_*): the next-frame loop kept on the AOTInductor
package's device, for the frame-stack U-Net and for the K/V-cache transformer (its ring on the device, written by
slot with the kv package's output). On the CPU here it must give FrameLoop's frames over the same packages and seed
(tolerance 1e-5 per value: the same ATen kernels run in both, only the Euler update, the palette snap and the ring's
bookkeeping are written twice), with fewer pushed frames than the context depth (the first frame stands in), with
context noise (its own noise draws), past the ring's wrap-around, and with frames kept on the device until asked for. Bundles it cannot serve are one-line errors. CUDA graphs run
only on a GPU (benchmarks/device/run.sh)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import randomized_model, randomized_unet, tiny_config, tiny_unet_config
from nextframe import _core

why = ""
if not _core.aoti_available():
    why = _core.aoti_unavailable_reason()
pytestmark = pytest.mark.skipif(bool(why), reason=f"AOTInductor plugin not built here: {why}")

PALETTE = np.array([[0, 0, 0], [200, 72, 72], [66, 72, 200], [142, 142, 142], [255, 255, 255]], np.uint8)


def _bundle(path, palette: bool, context_noise: float):
    from nextframe.export.bundle import export_bundle

    model = randomized_unet(tiny_unet_config())
    if palette:
        model.palette = PALETTE
    export_bundle(model, path, n_steps=2, aoti=("cpu",), context_noise=context_noise)
    return _core.Bundle.open(path)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("device_loop")
    return {"palette": _bundle(str(root / "p"), True, 0.0), "context_noise": _bundle(str(root / "n"), False, 0.1)}


def _context(b, n):
    """n random frames of the tiny config (3 x 20 x 12) led by actions 4 (none), 0, ..."""
    rng = np.random.default_rng(1)
    return rng.uniform(-1, 1, (n, 3, 20, 12)).astype(np.float32), np.array([4, 0, 2][:n], np.int64)


@pytest.mark.parametrize("kind", ["palette", "context_noise"])
def test_frames_equal_the_frame_loops(bundles, kind):
    b = bundles[kind]
    frames, actions = _context(b, 2)  # fewer than the context depth (3)
    ref = _core.FrameLoop(b, backend="aoti", threads=1, seed=7)
    dev = _core.DeviceLoop(b, device="cpu", threads=1, seed=7)
    assert dev.device == "cpu" and dev.context_depth == 3 and not dev.cuda_graph
    ref.reset(frames, actions)
    dev.reset(frames, actions)
    for i, a in enumerate([1, 2, 3, 0, 2, 2, 1]):
        want = ref.step(a)
        if i == 0:
            ref_first = want
        if i == 3:  # kept on the device, fetched afterwards
            assert dev.step(a, fetch=False) is None
            got = dev.frame()
        else:
            got = dev.step(a)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=f"frame {i}")
    if kind == "palette":
        colours = set(map(tuple, np.round((got.reshape(3, -1).T + 1) * 127.5).astype(int)))
        assert colours <= set(map(tuple, PALETTE.astype(int))), "every pixel snapped to the palette"
    assert dev.graph_replays == 0
    other = _core.DeviceLoop(b, device="cpu", threads=1, seed=8)
    other.reset(frames, actions)
    assert np.abs(other.step(1) - ref_first).max() > 0.1, "another seed, another frame: the comparison can fail"


def test_what_it_cannot_serve_is_a_one_line_error(bundles, tmp_path):
    from nextframe.export.bundle import export_bundle

    b = bundles["palette"]
    with pytest.raises(ValueError, match="device 'tpu' \\(expected cuda or cpu\\)"):
        _core.DeviceLoop(b, device="tpu")
    with pytest.raises(ValueError, match="no AOTInductor package of the step graph for cuda"):
        _core.DeviceLoop(b, device="cuda")
    export_bundle(randomized_model(tiny_config()), str(tmp_path / "dit"), n_steps=1)
    with pytest.raises(ValueError, match="no AOTInductor package of the step graph for cpu"):
        _core.DeviceLoop(_core.Bundle.open(str(tmp_path / "dit")), device="cpu")
    dev = _core.DeviceLoop(b, device="cpu", threads=1)
    with pytest.raises(ValueError, match="step before reset"):
        dev.step(0)
    frames, actions = _context(b, 2)
    with pytest.raises(ValueError, match="outside \\[-1, 1\\]"):
        dev.reset(frames * 3, actions)
    with pytest.raises(ValueError, match="action 9 outside 0..4"):
        dev.reset(frames, np.array([4, 9], np.int64))
    dev.reset(frames, actions)
    with pytest.raises(ValueError, match="action 4 outside 0..3"):
        dev.step(4)
    with pytest.raises(ValueError, match="no frame generated since reset"):
        dev.frame()


def test_the_plugins_cuda_graph_variant_compiles(tmp_path):
    """The CUDA-graph code (NF_AOTI_CUDA) is built only against a CUDA torch, which no CPU machine has: type-check it
    here against the CPU wheel's headers (they ship ATen/cuda and c10/cuda, less one generated macro header, stood in
    for below) and the CUDA toolkit's, so it cannot rot unseen between GPU sessions."""
    import os
    import shutil
    import subprocess

    import torch

    cuda_inc = next((d for d in (os.environ.get("CUDA_HOME", "") + "/include", "/usr/local/cuda/include")
                     if os.path.isfile(os.path.join(d, "cuda_runtime_api.h"))), None)
    gxx = shutil.which("g++")
    if cuda_inc is None or gxx is None:
        pytest.skip("needs g++ and the CUDA toolkit's headers (cuda_runtime_api.h)")
    torch_inc = os.path.join(os.path.dirname(torch.__file__), "include")
    stub = tmp_path / "c10" / "cuda" / "impl"
    stub.mkdir(parents=True)
    (stub / "cuda_cmake_macros.h").write_text("#define C10_CUDA_BUILD_SHARED_LIBS\n")
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc", "aoti_plugin.cpp")
    r = subprocess.run([gxx, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-DNF_AOTI_CUDA=1",
                        f"-I{tmp_path}", "-isystem", torch_inc, "-isystem",
                        os.path.join(torch_inc, "torch", "csrc", "api", "include"), "-isystem", cuda_inc, src],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]


def test_device_session_gives_the_sessions_frames(bundles):
    from nextframe.runtime import DeviceSession, Session

    path = bundles["palette"].dir
    ctx = np.random.default_rng(2).integers(0, 255, (3, 20, 12, 3), dtype=np.uint8)
    with Session(path, backend="aoti", threads=1, seed=4) as s, DeviceSession(path, device="cpu", threads=1, seed=4) as d:
        assert d.backend == "device-loop (cpu)" and d.context_depth == 3
        s.reset(ctx, [4, 0, 1])
        d.reset(ctx, [4, 0, 1])
        want = [s.step(a) for a in [1, 2, 3, 0]]
        got = [d.step(1), d.step(2)]
        d.advance(3)
        got.append(d.frame())
        got.append(d.step(0))
        for w, g in zip(want, got):
            assert np.abs(w.astype(int) - g.astype(int)).max() <= 1
        with pytest.raises(ValueError, match="unknown action 7"):
            d.step(7)
        with pytest.raises(ValueError, match="fed noise is not supported"):
            d.feed_noise(np.zeros(10, np.float32))
        assert d.stats()["graph_replays"] == 0


def test_transformer_frames_equal_the_frame_loops(tmp_path):
    """The K/V-cache transformer with every context role it can have (the frame one and two back for its motion
    refiner, the action one back) and context noise: ten frames from one real one, so the ring (window 3) wraps."""
    from nextframe.export.bundle import export_bundle

    cfg = tiny_config(motion_refiner=4, prev_action_input=True)
    export_bundle(randomized_model(cfg), str(tmp_path / "dit"), n_steps=2, aoti=("cpu",), context_noise=0.05)
    b = _core.Bundle.open(str(tmp_path / "dit"))
    frames = np.random.default_rng(3).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    ref = _core.FrameLoop(b, backend="aoti", threads=1, seed=5)
    dev = _core.DeviceLoop(b, device="cpu", threads=1, seed=5)
    assert dev.context_depth == 2
    for reset in range(2):  # a second reset starts from an empty ring again
        ref.reset(frames, np.array([4], np.int64))
        dev.reset(frames, np.array([4], np.int64))
        for i, a in enumerate([1, 2, 3, 0, 2, 2, 1, 0, 3, 1]):
            want = ref.step(a)
            got = dev.step(a) if i != 5 else (dev.step(a, fetch=False), dev.frame())[1]
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=f"reset {reset}, frame {i}")
    other = _core.DeviceLoop(b, device="cpu", threads=1, seed=6)
    other.reset(frames, np.array([4], np.int64))
    ref.reset(frames, np.array([4], np.int64))
    assert np.abs(other.step(1) - ref.step(1)).max() > 0.05, "another seed, another frame: the comparison can fail"

    from nextframe.runtime import DeviceSession, Session

    ctx = np.random.default_rng(2).integers(0, 255, (2, 16, 16, 3), dtype=np.uint8)
    path = str(tmp_path / "dit")
    with Session(path, backend="aoti", threads=1, seed=4) as s, DeviceSession(path, device="cpu", threads=1, seed=4) as d:
        s.reset(ctx, [4, 0])
        d.reset(ctx, [4, 0])
        for a in [1, 2, 3, 0]:
            assert np.abs(s.step(a).astype(int) - d.step(a).astype(int)).max() <= 1
