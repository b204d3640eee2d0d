"""The export gate: ONNX Runtime must reproduce PyTorch on a fixed input before a bundle is written.

Bound: NMSE (mse(a, b) / mse(b, 0), as ggml's test-backend-ops) <= 1e-7 per output for fp32 CPU; measured
~1e-13 on the default model. A graph that fails it is a wrong graph, not a tolerance question.
"""
from __future__ import annotations

import numpy as np
import torch

from nextframe.export.onnx import KV_OUTPUTS, example_step_inputs, step_by_name, step_input_names, step_output_names

NMSE_BOUND = 1e-7


def nmse(a: np.ndarray, b: np.ndarray) -> float:
    den = float(np.mean(np.square(b, dtype=np.float64)))
    return float(np.mean(np.square(a.astype(np.float64) - b))) / max(den, 1e-30)


def check_step_parity(model, onnx_path: str, seed: int = 0, kv_path: str | None = None) -> dict[str, float]:
    """NMSE of every output of the step graph (and of the kv graph, as "kv.k_new" / "kv.v_new") against
    model.step on the same fixed input."""
    import onnxruntime as ort

    ins = example_step_inputs(model, seed)
    feed = {n: t.numpy() for n, t in zip(step_input_names(model), ins)}
    outs = step_output_names(model)
    with torch.no_grad():
        ref = dict(zip(outs, (r.numpy() for r in step_by_name(model.eval(), ins))))
    errors = {}
    for prefix, path, outputs in (("", onnx_path, outs), ("kv.", kv_path, KV_OUTPUTS)):
        if path is None:
            continue
        got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(list(outputs), feed)
        errors.update({prefix + name: nmse(g, ref[name]) for name, g in zip(outputs, got)})
    bad = {k: v for k, v in errors.items() if not v <= NMSE_BOUND}
    if bad:
        raise RuntimeError(f"export: ONNX Runtime disagrees with PyTorch (nmse {bad}, bound {NMSE_BOUND}); bundle not written")
    return errors
