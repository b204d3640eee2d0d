"""NVIDIA ModelOpt's back end: Q/DQ ONNX (INT8 or FP8 E4M3, symmetric activations per tensor, weights per
output channel), the explicitly quantized graphs TensorRT builds INT8/FP8 engines from (strongly typed
networks take precision from the graph). ModelOpt calibrates with ONNX Runtime on the CPU here; the result
also runs in ONNX Runtime on CPU (FP8 emulated), which is how it is checked without a GPU.

Needs `nvidia-modelopt` with onnx-graphsurgeon, onnxslim, polygraphy, ml_dtypes, onnxconverter-common, lief,
cppimport and onnxscript beside it (the `quant` extra), not ModelOpt's own `[onnx]` extra, which pulls
onnxruntime-gpu and CuPy.
"""
from __future__ import annotations

import os
import shutil

import numpy as np

from nextframe.quant.ort_int8 import float_nodes


def _run_modelopt(copy: str, out: str, batch_path: str, precision: str, excluded: list[str]) -> None:
    """In a child process: ModelOpt patches onnxruntime's quantization module when imported (measured: after
    one ModelOpt call in a process, ONNX Runtime's own quantize_static fails on the next graph), so it never
    runs in the caller's process."""
    import modelopt.onnx.quantization as mq

    with np.load(batch_path) as d:
        batch = {k: d[k] for k in d.files}
    mq.quantize(copy, quantize_mode=precision, calibration_data=batch, calibration_method="max",
                calibration_eps=["cpu"], high_precision_dtype="fp32", output_path=out,
                op_types_to_quantize=["Conv", "MatMul", "Gemm"], nodes_to_exclude=excluded or None,
                log_level="ERROR")


def quantize_graph(src: str, out: str, feeds: list[dict], precision: str, work_dir: str, keep: tuple[str, ...] = ()) -> int:
    """Q/DQ copy of src at out, calibrated (max) on feeds; the same nodes stay float as in the ORT back end.
    ModelOpt rewrites the graph it is given in place (measured: 0.47 saves its shape-inferred model over the
    input file), so it only ever sees a copy in work_dir: the user's bundle is never touched."""
    import importlib.util
    import multiprocessing

    if importlib.util.find_spec("modelopt") is None:
        raise RuntimeError("quantize: the modelopt back end needs nvidia-modelopt (pip install 'nextframe[quant]')")
    excluded = float_nodes(src, keep)
    copy = os.path.join(work_dir, "modelopt_input.onnx")
    shutil.copyfile(src, copy)
    batch_path = os.path.join(work_dir, "modelopt_calibration.npz")
    # feeds stacked on their first axis (ModelOpt splits them again by the graph's own first dimension)
    np.savez(batch_path, **{k: np.concatenate([np.atleast_1d(np.asarray(f[k])) for f in feeds]) for k in feeds[0]})
    try:
        proc = multiprocessing.get_context("spawn").Process(target=_run_modelopt,
                                                            args=(copy, out, batch_path, precision, excluded))
        proc.start()
        proc.join()
        if proc.exitcode != 0 or not os.path.isfile(out):
            raise RuntimeError(f"quantize: ModelOpt failed on {os.path.basename(src)} (exit code {proc.exitcode})")
    finally:
        for f in os.listdir(work_dir):  # the copy, the calibration set and whatever ModelOpt left beside them
            if f.startswith("modelopt_"):
                os.remove(os.path.join(work_dir, f))
    return len(excluded)
