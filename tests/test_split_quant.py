"""Q-Diffusion's split quantization (quant/split_concat.py): convolutions over channel concatenations are
split into one convolution per part. On a tiny U-Net the rewrite finds every up block's shortcut (the input
convolution already reads the noisy change and the context frames in two convolutions, models/unet.py CellStem,
so it has no concatenation left to split), and computes the same function (max abs difference <= 1e-5 on
random inputs: float reassociation only); `quantize` splits by default for qdiff, not with --no-split, and
records which convolutions it split."""
from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import native_unet_bundle, optimized_ops
from nextframe.cli import main
from nextframe.quant.split_concat import concat_channels, split_concat_convs



@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    root = tmp_path_factory.mktemp("split")
    bundle, data, _ = native_unet_bundle(root, n_steps=2, widths=(8, 16))
    return bundle, data, root


def _feed(sess, seed=0):
    rng = np.random.default_rng(seed)
    feed = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feed[i.name] = np.ones(shape, np.int64) if "int64" in i.type else rng.standard_normal(shape).astype(np.float32)
    feed["t"] = np.array([0.6], np.float32)
    feed["ctx_t"] = np.array([0.0], np.float32)
    return feed


def test_split_is_exact_and_finds_the_shortcuts(fp32, tmp_path):
    bundle, _, _ = fp32
    src = os.path.join(bundle, "step.onnx")
    a = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    model = onnx.load(src)
    feed = _feed(a)
    split = split_concat_convs(model, concat_channels(model, feed))
    assert set(split) == {"/model/up.0.0/skip/Conv", "/model/up.1.0/skip/Conv"}
    onnx.checker.check_model(model)
    assert not any(n.name in split for n in model.graph.node)
    path = str(tmp_path / "split.onnx")
    onnx.save(model, path)
    b = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for seed in range(3):
        f = _feed(a, seed)
        assert np.abs(a.run(None, f)[0] - b.run(None, f)[0]).max() <= 1e-5


def test_quantize_splits_for_qdiff_unless_told_not_to(fp32, capsys):
    bundle, data, root = fp32
    args = ["--calib", *data, "--windows", "2", "--frames", "2"]
    assert main(["quantize", bundle, "--out", str(root / "q_split"), *args]) == 0
    assert main(["quantize", bundle, "--out", str(root / "q_plain"), "--no-split", *args]) == 0
    assert main(["quantize", bundle, "--out", str(root / "q_ptq4dm"), "--method", "ptq4dm", *args]) == 0
    got = {}
    for name in ("q_split", "q_plain", "q_ptq4dm"):
        with open(root / name / "manifest.json") as f:
            got[name] = json.load(f)["quantization"]["split_convs"]
    # the last up level stays float, so only the other up block's shortcut is split
    assert len(got["q_split"]) == 1 and got["q_plain"] == [] and got["q_ptq4dm"] == []
    ops = [n.name for n in onnx.load(str(root / "q_split" / "step.onnx")).graph.node]
    assert any(n.startswith("/model/up.1.0/skip/Conv_split1") for n in ops)
    assert "/model/conv_in/Conv" in ops
    # the int8 kernels are what ONNX Runtime runs: every quantized convolution fuses into QLinearConv (a conv
    # whose output is not quantized would run in float on dequantized weights, slower than FP32)
    kernels = optimized_ops(str(root / "q_plain" / "step.onnx"))
    n_float_convs = kernels.count("Conv") + kernels.count("FusedConv") + kernels.count("NhwcFusedConv")
    # conv_in (two convs), conv_out, downsample.0 and up.0's three stay float
    assert kernels.count("QLinearConv") >= 4 and n_float_convs <= 7



def test_keep_float_and_percentile_calibration(fp32, capsys):
    """--keep-float keeps the named products in float besides the built-in ones (the stem, the output layer), the
    calibration is recorded (auto: percentile for a U-Net); a percentile for ModelOpt is refused in one line."""
    bundle, data, root = fp32
    args = ["--calib", *data, "--windows", "2", "--frames", "2", "--no-split"]
    out = root / "q_keep"
    assert main(["quantize", bundle, "--out", str(out), "--keep-float", "up.1", "--calibration", "minmax", *args]) == 0
    with open(out / "manifest.json") as f:
        q = json.load(f)["quantization"]
    assert q["keep_float"] == ["up.1"] and q["activation_calibration"] == "minmax"
    graph = onnx.load(str(out / "step.onnx")).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    float_by_default = ("conv_in", "conv_out", "up.0.", "downsample.0/")  # the stem, the full-resolution ends
    for name, conv in convs.items():  # float by default, up.1 by request, the rest int8
        assert any(i in dequantized for i in conv.input) == (not any(f in name for f in float_by_default + ("up.1",))), name
    with open(root / "q_plain" / "manifest.json") as f:
        assert json.load(f)["quantization"]["activation_calibration"] == "percentile"  # auto, for a U-Net
    capsys.readouterr()
    assert main(["quantize", bundle, "--out", str(root / "q_bad"), "--backend", "modelopt", "--calibration", "percentile", *args]) == 2
    assert "--calibration applies to the onnxruntime" in capsys.readouterr().err
    assert not os.path.exists(root / "q_bad")
