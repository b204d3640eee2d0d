"""The ModelOpt back end of `nextframe quantize` (Q/DQ ONNX for TensorRT's explicit-precision engines), checked
where it can be without a GPU: its INT8 and FP8 graphs run in the C++ core on ONNX Runtime CPU, their frames
stay within 30 dB PSNR of the FP32 bundle's on the same noise (random tiny weights: a bound that catches a
broken graph, not a quality claim), the manifest names the back end and format, and a precision the back end
does not have is refused in one line. Skipped where nvidia-modelopt is not installed (the `quant` extra)."""
from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

# found, not imported: importing ModelOpt patches onnxruntime's quantization for the whole process
pytestmark = pytest.mark.skipif(importlib.util.find_spec("modelopt") is None,
                                reason="nvidia-modelopt (the quant extra) is not installed")

from conftest import native_unet_bundle, square_episode
from nextframe.cli import main
from nextframe.runtime import Session



def open_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _psnr(a, b):
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    root = tmp_path_factory.mktemp("modelopt")
    # widths 16+: with 8 channels ModelOpt's FP8 mode quantized no product at all (measured: NMSE exactly 0)
    bundle, data, _ = native_unet_bundle(root, n_steps=2, widths=(16, 32))
    return bundle, data, root


def _frames(path):
    ctx = np.stack([square_episode(3, 0).frames[i] for i in range(2)])
    with Session(path, backend="ort-cpu", threads=1, seed=1) as s:
        s.reset(ctx, [4, 2])
        return np.stack([s.step(a) for a in [0, 1, 2]])


@pytest.mark.parametrize("precision, fmt", [("int8", "qdq_s8s8_per_channel_modelopt"), ("fp8", "qdq_fp8e4m3_modelopt")])
def test_modelopt_graphs_run_in_the_core(fp32, precision, fmt, capsys):
    from nextframe import _core

    bundle, data, root = fp32
    before = {f: open_bytes(os.path.join(bundle, f)) for f in os.listdir(bundle)}
    out = str(root / f"mo_{precision}")
    assert main(["quantize", bundle, "--out", out, "--backend", "modelopt", "--precision", precision,
                 "--calib", *data, "--windows", "4", "--frames", "2"]) == 0
    with open(os.path.join(out, "manifest.json")) as f:
        q = json.load(f)["quantization"]
    assert q["backend"] == "modelopt" and q["precision"] == precision and q["format"] == fmt
    assert 0 < q["error_vs_fp32"]["nmse"] < 0.05
    import onnx

    ops = {n.op_type for n in onnx.load(os.path.join(out, "step.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # the source bundle is untouched (ModelOpt rewrites the file it is given; it only sees a copy)
    assert {f: open_bytes(os.path.join(bundle, f)) for f in os.listdir(bundle)} == before
    _core.Bundle.open(bundle)
    assert _psnr(_frames(out), _frames(bundle)) >= 30.0


def test_unknown_backend_and_precision_are_refused(fp32, capsys):
    bundle, data, root = fp32
    assert main(["quantize", bundle, "--out", str(root / "a"), "--backend", "tensorflow", "--calib", *data]) == 2
    assert main(["quantize", bundle, "--out", str(root / "b"), "--precision", "fp8", "--calib", *data]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "unknown back end 'tensorflow'" in err[0] and "not supported by the onnxruntime back end" in err[1]


def test_onnxruntime_quantization_still_works_after_modelopt_in_this_process(fp32, tmp_path):
    """ModelOpt patches onnxruntime's quantization on import (in a benchmark process, the next ORT quantize_static
    then failed); it runs in a child process, so this one is untouched."""
    import sys

    from nextframe.quant.bundle import quantize_bundle
    from nextframe.data.episode import load_episode

    bundle, data, _ = fp32
    episodes = [load_episode(p) for p in data]
    quantize_bundle(bundle, str(tmp_path / "mo"), episodes, backend="modelopt", n_windows=2, frames_per_window=2)
    assert "modelopt" not in sys.modules
    m = quantize_bundle(bundle, str(tmp_path / "ort"), episodes, method="naive", n_windows=2, frames_per_window=2)
    assert m["quantization"]["backend"] == "onnxruntime"


def test_modelopt_takes_a_transformer_bundle_whose_cache_inputs_are_not_batch_first(tmp_path):
    """The transformer's step graph reads cache_k/cache_v laid out [layers, batch, ...]: the calibration set is
    stacked on each input's own first axis, as ModelOpt splits it again."""
    from conftest import randomized_model, tiny_config
    from nextframe.export.bundle import export_bundle
    from nextframe.quant.bundle import quantize_bundle

    bundle = str(tmp_path / "dit")
    export_bundle(randomized_model(tiny_config()), bundle, n_steps=1)
    episodes = [square_episode(20, i) for i in range(2)]
    m = quantize_bundle(bundle, str(tmp_path / "mo"), episodes, backend="modelopt", n_windows=2, frames_per_window=2)
    assert m["quantization"]["error_vs_fp32"]["n_feeds"] > 0
    with Session(str(tmp_path / "mo"), backend="ort-cpu", threads=1) as s:
        s.reset(np.zeros((3, 16, 16, 3), np.uint8), [4, 0, 1])
        assert s.step(2).shape == (16, 16, 3)
