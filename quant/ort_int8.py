"""INT8 bundles for ONNX Runtime: static QDQ quantization (U8 activations per tensor, S8 weights per output
channel) of the step graph, calibrated on the runtime's own inputs (quant/calibrate.py).

Convolutions and matrix products carry the work; the numerically sensitive parts stay in float: the
noise-level and action embeddings and their MLP, every adaptive-norm modulation (the Gemms on the
conditioning vector), normalisation, and the output layer. The quantized bundle is an ordinary bundle (same
manifest format, the step file replaced and re-hashed) with a "quantization" section recording the method,
the calibration set and the error measured against the FP32 graph on held-out feeds; every runtime path loads
it unchanged. A bundle with a kv graph keeps it in FP32 (the cache write is the cheaper call).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np

from nextframe.quant.calibrate import METHODS, collect_feeds

PRECISIONS = ("int8",)
# node-name fragments kept in float (torch.onnx names nodes after module paths)
FLOAT_NODES = ("noise_mlp", "action_embed", "context_noise_embed", "/proj/", "norm", "conv_out", "time_mlp",
               "modulation", "final", "head", "patch_embed")


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over recorded feeds."""

    def __init__(self, feeds: list[dict]):
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)


def float_nodes(onnx_path: str) -> list[str]:
    import onnx

    m = onnx.load(onnx_path)
    return [n.name for n in m.graph.node if n.op_type in ("Conv", "MatMul", "Gemm") and any(f in n.name for f in FLOAT_NODES)]


def graph_error(fp32_path: str, q_path: str, feeds: list[dict], output: str) -> dict:
    """NMSE and max abs difference of the quantized graph's prediction against FP32, over feeds."""
    import onnxruntime as ort

    a = ort.InferenceSession(fp32_path, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(q_path, providers=["CPUExecutionProvider"])
    num = den = 0.0
    worst = 0.0
    for f in feeds:
        ra, rb = a.run([output], f)[0], b.run([output], f)[0]
        num += float(np.sum((ra.astype(np.float64) - rb) ** 2))
        den += float(np.sum(ra.astype(np.float64) ** 2))
        worst = max(worst, float(np.abs(ra - rb).max()))
    return {"nmse": num / max(den, 1e-30), "max_abs": worst, "n_feeds": len(feeds)}


def quantize_bundle(bundle_dir: str, out_dir: str, episodes, method: str = "qdiff", precision: str = "int8",
                    n_windows: int = 16, frames_per_window: int = 6, seed: int = 0, calib_names=()) -> dict:
    """Write an INT8 copy of the bundle to out_dir (new; never replaces an existing path). Returns its manifest."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from nextframe.export.bundle import sha256_file

    if method not in METHODS:
        raise ValueError(f"quantize: unknown method {method!r} (expected {', '.join(METHODS)})")
    if precision not in PRECISIONS:
        raise ValueError(f"quantize: precision {precision!r} not supported by the ONNX Runtime back end (expected int8)")
    if os.path.exists(out_dir):
        raise ValueError(f"quantize: {out_dir} exists; choose a new output path")
    with open(os.path.join(bundle_dir, "manifest.json")) as f:
        manifest = json.load(f)
    if "quantization" in manifest:
        raise ValueError(f"quantize: {bundle_dir} is already quantized ({manifest['quantization']['precision']})")
    step_file = manifest["graphs"]["step"]["file"]
    prediction = next(o["name"] for o in manifest["graphs"]["step"]["outputs"] if o["name"] in ("denoised", "velocity"))
    calib = collect_feeds(bundle_dir, episodes, method, n_windows, frames_per_window, seed)
    held_out = collect_feeds(bundle_dir, episodes, "qdiff", max(2, n_windows // 4), frames_per_window, seed + 1)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".qbundle-", dir=parent)
    try:
        for name in manifest["files"]:
            if name != step_file:
                os.makedirs(os.path.dirname(os.path.join(tmp, name)) or tmp, exist_ok=True)
                shutil.copy2(os.path.join(bundle_dir, name), os.path.join(tmp, name))
        src = os.path.join(bundle_dir, step_file)
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        excluded = float_nodes(pre)
        out_step = os.path.join(tmp, step_file)
        quantize_static(pre, out_step, _Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"], nodes_to_exclude=excluded,
                        calibrate_method=CalibrationMethod.MinMax)
        os.remove(pre)
        error = graph_error(src, out_step, held_out, prediction)
        manifest["files"][step_file] = {"sha256": sha256_file(out_step), "bytes": os.path.getsize(out_step)}
        manifest["quantization"] = {
            "precision": precision, "backend": "onnxruntime", "format": "qdq_u8s8_per_channel", "method": method,
            "graphs": ["step"], "float_nodes": len(excluded),
            "calibration": {"n_feeds": len(calib), "n_windows": n_windows, "frames_per_window": frames_per_window,
                            "seed": seed, "episodes": list(calib_names)},
            "error_vs_fp32": error, "source_bundle_sha256": sha256_file(os.path.join(bundle_dir, "manifest.json"))}
        manifest.pop("export_check", None)
        with open(os.path.join(tmp, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
        os.chmod(tmp, 0o755)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
