"""ONNX Runtime's INT8 back end: static QDQ quantization of one graph (U8 activations per tensor, S8 weights
per output channel), run by the C++ core on CPU (quant/bundle.py makes the bundle around it).

Convolutions and matrix products carry the work; the numerically sensitive parts stay in float: the
noise-level and action embeddings and their MLP, every adaptive-norm modulation (the Gemms on the
conditioning vector), normalisation, and the output layer.
"""
from __future__ import annotations

import os

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


def quantize_graph(src: str, out: str, feeds: list[dict], work_dir: str) -> int:
    """Static QDQ INT8 of one graph calibrated on feeds; returns how many product nodes stay in float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = os.path.join(work_dir, "pre.onnx")
    quant_pre_process(src, pre, skip_symbolic_shape=True)
    excluded = float_nodes(pre)
    quantize_static(pre, out, _Reader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv", "MatMul", "Gemm"], nodes_to_exclude=excluded,
                    calibrate_method=CalibrationMethod.MinMax)
    os.remove(pre)
    return len(excluded)
