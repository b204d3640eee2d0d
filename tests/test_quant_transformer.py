"""Quantizing a transformer bundle: its kv graph (the cache write of each finished frame, a call per frame
like the one-step frame's own) is quantized too, calibrated on its own calls; the quantized bundle runs in the
C++ core with the kv graph, within 30 dB PSNR of the FP32 bundle's frames on the same seed (random tiny
weights: a bound that catches a broken graph, not a quality claim)."""
from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest

from conftest import optimized_ops, randomized_model, square_episode, tiny_config
from nextframe.runtime import Session


def _frames(path):
    ctx = np.stack([np.full((16, 16, 3), 40 * i, np.uint8) for i in range(3)])
    with Session(path, backend="ort-cpu", threads=1, seed=3) as s:
        assert s.loop.uses_kv_graph
        s.reset(ctx, [4, 0, 1])
        return np.stack([s.step(a) for a in [2, 2, 3, 0, 1]])


def test_transformer_bundle_quantizes_its_kv_graph_too(tmp_path):
    from nextframe.export.bundle import export_bundle
    from nextframe.quant.bundle import quantize_bundle

    fp32 = str(tmp_path / "fp32")
    export_bundle(randomized_model(tiny_config()), fp32, n_steps=2)
    with open(os.path.join(fp32, "manifest.json")) as f:
        assert "kv" in json.load(f)["graphs"]
    q = str(tmp_path / "int8")
    with pytest.raises(ValueError, match="--split applies to quantized convolutions"):
        quantize_bundle(fp32, q, [square_episode(20, 0)], split=True)
    with pytest.raises(ValueError, match="precision 'w2a2' not supported by the onnxruntime back end"):
        quantize_bundle(fp32, q, [square_episode(20, 0)], precision="w2a2")
    m = quantize_bundle(fp32, q, [square_episode(20, i) for i in range(2)], n_windows=3, frames_per_window=2,
                        precision="w8a8")  # int8's other name
    assert m["quantization"]["graphs"] == ["step", "kv"] and m["quantization"]["split_convs"] == []
    assert m["quantization"]["precision"] == "int8"
    products = [n for n in onnx.load(os.path.join(q, "step.onnx")).graph.node if n.op_type in ("Gemm", "MatMul")]
    quantized = {n.input[1] for n in products} & {n.output[0] for n in onnx.load(os.path.join(q, "step.onnx")).graph.node
                                                  if n.op_type == "DequantizeLinear"}
    assert quantized, "the token Gemms take dequantized int8 weights"
    kv_file = m["graphs"]["kv"]["file"]
    for graph in ("step.onnx", kv_file):  # and run as int8 kernels in ONNX Runtime (qkv, proj, fc1, fc2 per block)
        kernels = optimized_ops(os.path.join(q, graph))
        assert kernels.count("QGemm") >= 4 and "QLinearConv" not in kernels
    assert 0 < m["quantization"]["kv_error_vs_fp32"]["nmse"] < 0.05
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load(os.path.join(q, kv_file)).graph.node}
    a, b = _frames(fp32), _frames(q)
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    assert 10 * np.log10(255.0**2 / max(mse, 1e-12)) >= 30.0


def test_w4a8_bundle_runs_in_the_core(tmp_path):
    """W4A8 (MatMulNBits: 4-bit weight blocks, int8 activations per call): no calibration, groups or split; the
    step and kv graphs' matrix products become MatMulNBits, the bundle runs in the C++ core within 30 dB of FP32
    (tiny random weights), and a graph with no matrix product to quantize (a U-Net's convolutions) is refused."""
    import pytest

    from nextframe.export.bundle import export_bundle
    from nextframe.quant.bundle import quantize_bundle

    fp32 = str(tmp_path / "fp32")
    export_bundle(randomized_model(tiny_config()), fp32, n_steps=2)
    eps = [square_episode(20, i) for i in range(2)]
    with pytest.raises(ValueError, match="--groups and --split do not apply"):
        quantize_bundle(fp32, str(tmp_path / "g"), eps, precision="w4a8", groups=2)
    q = str(tmp_path / "w4a8")
    m = quantize_bundle(fp32, q, eps, precision="w4a8", n_windows=3, frames_per_window=2)
    assert m["quantization"]["precision"] == "w4a8" and m["quantization"]["method"] == "none"
    assert m["quantization"]["graphs"] == ["step", "kv"]
    for name in (m["graphs"]["step"]["file"], m["graphs"]["kv"]["file"]):
        assert "MatMulNBits" in {n.op_type for n in onnx.load(os.path.join(q, name)).graph.node}
    a, b = _frames(fp32), _frames(q)
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    assert 10 * np.log10(255.0**2 / max(mse, 1e-12)) >= 30.0


def test_w4a8_refuses_a_frame_stack_unet(tmp_path):
    import pytest

    from conftest import native_unet_bundle
    from nextframe.data.episode import load_episode
    from nextframe.quant.bundle import quantize_bundle

    bundle, episodes, _ = native_unet_bundle(tmp_path, n_steps=2)
    with pytest.raises(ValueError, match="w4a8 found no matrix product"):
        quantize_bundle(bundle, str(tmp_path / "q"), [load_episode(p) for p in episodes], precision="w4a8",
                        n_windows=2, frames_per_window=1)
    assert not (tmp_path / "q").exists()


def test_conditioning_products_stay_float_whatever_their_names(tmp_path):
    """The step graph computes every block's modulation in one Gemm named after no module: it is found from the
    graph (fed only by the noise level and actions) and kept in float; the token products are not."""
    from nextframe.export.onnx import export_step
    from nextframe.quant.ort_int8 import float_nodes

    cfg = tiny_config(prev_action_input=True)
    path = str(tmp_path / "step.onnx")
    export_step(randomized_model(cfg), path)
    graph = onnx.load(path).graph
    shapes = {w.name: tuple(w.dims) for w in graph.initializer}
    kept = set(float_nodes(path))
    unnamed = [n for n in graph.node if n.name in kept
               and not any(f in n.name for f in ("time_mlp", "proj", "final", "head", "patch_embed"))]
    assert len(unnamed) == 1 and unnamed[0].op_type == "Gemm"
    assert 6 * cfg.depth * cfg.dim in shapes[unnamed[0].input[1]]  # all blocks' shift/scale/gate x 2
    assert not any(f in n for n in kept for f in ("qkv", "fc1", "fc2"))


def test_attention_products_in_int8_where_asked_or_where_a_frame_has_many_tokens(tmp_path, monkeypatch):
    """--attention int8 quantizes the attention MatMuls (query x cached keys, weights x cached values) as well: they
    run as int8 kernels and the frames stay within the same bound; auto picks them from ATTENTION_INT8_MIN_TOKENS
    tokens a frame (the tiny model's 16 do not reach 128, a lowered threshold does); a U-Net refuses the option."""
    import nextframe.quant.ort_int8 as ort_int8
    from nextframe.export.bundle import export_bundle
    from nextframe.quant.bundle import quantize_bundle

    fp32 = str(tmp_path / "fp32")
    export_bundle(randomized_model(tiny_config()), fp32, n_steps=1)
    eps = [square_episode(20, i) for i in range(2)]
    attention_kernels = ("MatMulIntegerToFloat", "QLinearMatMul", "MatMulInteger")
    m = quantize_bundle(fp32, str(tmp_path / "auto"), eps, n_windows=3, frames_per_window=2)
    assert m["quantization"]["attention"] == "float"
    assert not any(k in optimized_ops(str(tmp_path / "auto" / "step.onnx")) for k in attention_kernels)
    m = quantize_bundle(fp32, str(tmp_path / "int8"), eps, n_windows=3, frames_per_window=2, attention="int8")
    assert m["quantization"]["attention"] == "int8"
    depth = tiny_config().depth  # two attention products a block; the kv graph's last block needs no attention
    for graph, n_attention in (("step.onnx", depth), (m["graphs"]["kv"]["file"], depth - 1)):
        kernels = optimized_ops(str(tmp_path / "int8" / graph))
        assert sum(kernels.count(k) for k in attention_kernels) >= 2 * n_attention, kernels
    a, b = _frames(fp32), _frames(str(tmp_path / "int8"))
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    assert 10 * np.log10(255.0**2 / max(mse, 1e-12)) >= 30.0
    monkeypatch.setattr(ort_int8, "ATTENTION_INT8_MIN_TOKENS", 16)
    m = quantize_bundle(fp32, str(tmp_path / "auto16"), eps, n_windows=3, frames_per_window=2)
    assert m["quantization"]["attention"] == "int8"
    with pytest.raises(ValueError, match="unknown attention precision 'int4'"):
        quantize_bundle(fp32, str(tmp_path / "x"), eps, attention="int4")
    with pytest.raises(ValueError, match="--attention applies to a transformer"):
        quantize_bundle(fp32, str(tmp_path / "y"), eps, precision="w4a8", attention="int8")


def test_quant_methods_reads_gemm_shapes():
    from nextframe.benchmarks.quant_methods import parse_shape

    assert parse_shape("1024,8,6") == (1024, 8, 6)
    with pytest.raises(SystemExit, match="DIM,PATCH,DEPTH"):
        parse_shape("1024,8")
    with pytest.raises(SystemExit, match="multiple of 64"):
        parse_shape("1000,8,6")
