"""The device-resident loops on a GPU, against the host loop on ONNX Runtime's CPU provider (same bundle, same seed):
OrtDeviceLoop on the CUDA provider (onnxruntime-gpu), TrtDeviceLoop (TensorRT engines of the frame graph) and the
AOTInductor loops (FrameLoop on aoti-cuda, DeviceLoop with its CUDA graph; packages compiled on the GPU), each on
a frame-stack U-Net with palette and context noise and on a K/V-cache transformer (its ring on the GPU, written by
slot), with and without CUDA graphs; and a NaN frame refused by the ORT and TensorRT loops. What verifies the README's unverified GPU loops, on a machine with an NVIDIA GPU:

    pip install onnxruntime-gpu        # instead of onnxruntime, never beside it
    python -m pytest -q -m gpu tests/test_gpu_device_loops.py
    # and, with TensorRT (README, "TensorRT (unverified)"): a core built with -DNF_WITH_TENSORRT=ON
    # the AOTInductor rows need only torch with CUDA and the plugin (benchmarks/device/run.sh runs this file)

Skipped, with the reason, where there is no GPU, no CUDA provider or no TensorRT (every machine of this project so far).

Tolerance: the GPU's kernels sum in other orders and may use TF32 for the float32 products, so a frame is not equal to
the CPU's to 1e-5 as on the CPU tests; a palette snap near the midpoint of two colours may flip a pixel. Per frame:
NMSE <= 1e-4 of the frame's values (a wrong binding or a stale state gives ~1) and at most 1% of values more than 0.02
apart; the loops run 8 frames, the ring wrapping around in the transformer's.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import randomized_model, randomized_unet, tiny_config, tiny_unet_config
from nextframe import _core
from nextframe.runtime.session import find_ort_lib
from runtime_helpers import nmse

PALETTE = np.array([[0, 0, 0], [200, 72, 72], [66, 72, 200], [142, 142, 142], [255, 255, 255]], np.uint8)
ACTIONS = [1, 2, 3, 0, 1, 1, 2, 3]


def gpu_missing() -> str:
    """Why no GPU test can run here ('' when one can)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "no NVIDIA GPU (nvidia-smi not found)"
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"nvidia-smi failed ({e})"
    return "" if "GPU " in out else "nvidia-smi lists no GPU"


def ort_cuda_missing() -> str:
    lib = find_ort_lib()
    if not lib:
        return "onnxruntime is not installed"
    if not glob.glob(os.path.join(os.path.dirname(lib), "libonnxruntime_providers_cuda.so*")):
        return "the installed ONNX Runtime has no CUDA provider (pip install onnxruntime-gpu instead of onnxruntime)"
    return gpu_missing()


def trt_missing() -> str:
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt not installed (pip install 'nextframe[trt]')"
    if not _core.has_tensorrt():
        return "nextframe._core built without TensorRT (rebuild with -DNF_WITH_TENSORRT=ON -DTENSORRT_ROOT=...)"
    return gpu_missing()


def skip_if(missing: str) -> None:
    """Skip with the reason a *_missing() check gave (each check runs once: gpu_missing starts nvidia-smi)."""
    if missing:
        pytest.skip(missing)


def aoti_cuda_missing() -> str:
    if not _core.aoti_available():
        return f"AOTInductor plugin not built: {_core.aoti_unavailable_reason()}"
    import torch

    return "" if torch.cuda.is_available() else "torch sees no CUDA device"


def _models():
    unet = randomized_unet(tiny_unet_config())
    unet.palette = PALETTE
    return {"unet": unet, "dit": randomized_model(tiny_config(prev_action_input=True))}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    from nextframe.export.bundle import export_bundle

    skip_if(gpu_missing())  # no export work on machines that skip every test here
    root = tmp_path_factory.mktemp("gpu_device_loops")
    out = {}
    for name, model in _models().items():
        out[name] = str(root / name)
        export_bundle(model, out[name], n_steps=2, context_noise=0.1, frame_graph=True)
    return out


@pytest.fixture(scope="module")
def aoti_bundles(tmp_path_factory):
    """The same models with packages compiled for CUDA (a minute or two on the GPU machine)."""
    from nextframe.export.bundle import export_bundle

    skip_if(aoti_cuda_missing())
    root = tmp_path_factory.mktemp("gpu_aoti_loops")
    out = {}
    for name, model in _models().items():
        out[name] = str(root / name)
        export_bundle(model, out[name], n_steps=2, context_noise=0.1, aoti=("cuda",))
    return out


def _context(bundle):
    f = bundle.frame
    n = 5
    rng = np.random.default_rng(1)
    return (rng.uniform(-1, 1, (n, f["channels"], f["height"], f["width"])).astype(np.float32),
            (np.arange(n) % bundle.n_actions).astype(np.int64))


def _close(got, want, what):
    err = nmse(got, want)
    apart = float(np.mean(np.abs(np.asarray(got, np.float64) - want) > 0.02))
    assert err <= 1e-4 and apart <= 0.01, f"{what}: NMSE {err:.3g}, {apart:.1%} of values more than 0.02 apart"


def _against_host_loop(bundle_dir, make_loop):
    b = _core.Bundle.open(bundle_dir)
    frames, actions = _context(b)
    ref = _core.FrameLoop(b, backend="ort-cpu", threads=1, seed=7, ort_lib=find_ort_lib())
    loop = make_loop(b)
    for round_ in range(2):  # the second after a reset: the state and the ring rewritten, the graphs kept
        ref.reset(frames, actions)
        loop.reset(frames, actions)
        for i, a in enumerate(ACTIONS):
            _close(loop.step(a), ref.step(a), f"round {round_} frame {i}")
    return loop


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["unet", "dit"])
@pytest.mark.parametrize("cuda_graph", [True, False])
def test_ort_cuda_device_loop_matches_the_host_loop(bundles, model, cuda_graph):
    skip_if(ort_cuda_missing())
    loop = _against_host_loop(bundles[model], lambda b: _core.OrtDeviceLoop(
        b, device="cuda", threads=1, seed=7, cuda_graph=cuda_graph, ort_lib=find_ort_lib()))
    assert loop.device.startswith("cuda") and loop.cuda_graph == cuda_graph


@pytest.mark.gpu
@pytest.mark.trt
@pytest.mark.parametrize("model", ["unet", "dit"])
@pytest.mark.parametrize("cuda_graph", [True, False])
def test_trt_device_loop_matches_the_host_loop(bundles, model, cuda_graph):
    from nextframe.export import tensorrt as nf_trt

    skip_if(trt_missing())
    # fp32 engines (TF32 off): the frame, step and kv engines; built once per bundle (the engine cache)
    graphs = [e["graph"] for e in nf_trt.build_trt_engines(bundles[model], precision="fp32", workspace_gb=1.0)]
    assert graphs == (["step", "frame"] if model == "unet" else ["step", "kv", "frame"])
    loop = _against_host_loop(bundles[model], lambda b: _core.TrtDeviceLoop(b, seed=7, cuda_graph=cuda_graph,
                                                                          precision="fp32"))
    assert loop.cuda_graph == cuda_graph


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["unet", "dit"])
def test_aoti_cuda_frame_loop_matches_the_host_loop(aoti_bundles, model):
    """The core's host loop on the CUDA packages: inputs and outputs through host memory each call."""
    _against_host_loop(aoti_bundles[model], lambda b: _core.FrameLoop(b, backend="aoti-cuda", threads=1, seed=7))


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["unet", "dit"])
@pytest.mark.parametrize("cuda_graph", [True, False])
def test_aoti_cuda_device_loop_matches_the_host_loop(aoti_bundles, model, cuda_graph):
    loop = _against_host_loop(aoti_bundles[model], lambda b: _core.DeviceLoop(b, device="cuda", threads=1, seed=7,
                                                                            cuda_graph=cuda_graph))
    assert loop.device.startswith("cuda") and loop.cuda_graph == cuda_graph
    if cuda_graph:
        assert loop.graph_replays > 0


@pytest.fixture(scope="module")
def nan_bundle(tmp_path_factory):
    """A frame graph whose weights hold a NaN: its count of non-finite values must survive the GPU runtimes' graph
    optimisers (it is computed as (x - x) != 0, which an algebraic simplification could fold to false)."""
    import torch

    from nextframe.export.bundle import export_bundle

    skip_if(gpu_missing())
    model = randomized_unet(tiny_unet_config())
    with torch.no_grad():
        next(iter(model.parameters())).fill_(float("nan"))
    path = str(tmp_path_factory.mktemp("gpu_nan") / "nan")
    export_bundle(model, path, n_steps=1, frame_graph=True, check=False)
    return path


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["ort", "trt"])
def test_a_nan_frame_is_refused_on_the_gpu(nan_bundle, backend):
    if backend == "ort":
        skip_if(ort_cuda_missing())
        loop = _core.OrtDeviceLoop(_core.Bundle.open(nan_bundle), device="cuda", threads=1, ort_lib=find_ort_lib())
    else:
        from nextframe.export import tensorrt as nf_trt

        skip_if(trt_missing())
        nf_trt.build_trt_engines(nan_bundle, precision="fp32", workspace_gb=1.0)
        loop = _core.TrtDeviceLoop(_core.Bundle.open(nan_bundle), precision="fp32")
    frames, actions = _context(_core.Bundle.open(nan_bundle))
    loop.reset(frames, actions)
    with pytest.raises(RuntimeError, match=r"non-finite values .* frame 0"):
        loop.step(1)
    assert loop.steps == 0


def test_the_skip_reasons_name_what_is_missing():
    """On a machine without a GPU every test above says why it did not run (not a silent pass)."""
    reasons = [gpu_missing(), ort_cuda_missing(), trt_missing(), aoti_cuda_missing()]
    assert all(isinstance(r, str) for r in reasons)
    if shutil.which("nvidia-smi") is None:
        assert reasons[0] == "no NVIDIA GPU (nvidia-smi not found)" and all(reasons[1:])
