"""ONNX Runtime's INT8 back end: static QDQ quantization of one graph (U8 activations per tensor, S8 weights
per output channel), run by the C++ core on CPU (quant/bundle.py makes the bundle around it).

Convolutions and matrix products carry the work; the numerically sensitive parts stay in float: the
noise-level and action embeddings and their MLP, every adaptive-norm modulation (the Gemms on the
conditioning vector), normalisation, and the output layer.
"""
from __future__ import annotations

import contextlib
import io
import os

# node-name fragments kept in float (torch.onnx names nodes after module paths)
# conv_in, the U-Net's full-resolution stem over the noisy frame and the context, carries about 40% of its INT8 graph
# error (results/quant_recipe_unet_sensitive_cpu.json: kept in float, graph error -33%, frames 1-10 0.87 dB better)
FLOAT_NODES = ("noise_mlp", "action_embed", "context_noise_embed", "norm", "conv_in", "conv_out", "time_mlp",
               "modulation", "final", "head", "patch_embed")
# A frame-stack U-Net's full-resolution ends stay float too: its last up level (which writes the output's features
# at cell resolution) and its first downsampling carry most of the remaining error. Measured on the one-step
# student of the step-34,500 teacher: graph error 5.1e-5 -> 6.9e-6, frames 1-10 -0.87 -> -0.11 dB against FP32,
# frame loop 1.71x -> 1.57x FP32 at one thread, 1.42x -> 1.37x at two (14% of the FLOPs back in float).
UNET_FLOAT_NODES = ("up.0.", "downsample.0/")
PRODUCTS = ("Conv", "MatMul", "Gemm")
# A transformer step quantizes its token Gemms only (qkv, attention output, MLP). Measured on the shipped default in
# one side-by-side run (README, "Quantization"): leaving the attention MatMuls (products of two activations, whose
# inputs include the whole float cache) and the motion refiner's full-resolution convolutions in float made the
# frame loop 1.1x faster than quantizing them too (1.29x -> 1.42x FP32) and the step graph's error 50x smaller.
TRANSFORMER_PRODUCTS = ("Gemm",)
# ... but where a frame has many tokens the attention products are large enough for int8 kernels to win. Measured side
# by side (C++ frame loop, one / two threads; results/quant_attention_cpu.json): the GEMM-bound shape (256 tokens a
# frame, dim 512) 1.61x / 1.60x FP32 with them float, 1.74x / 1.68x with them int8, graph error 7.8e-7 -> 8.1e-7;
# the shipped transformer (64 tokens) 1.42x / 1.31x float, 1.43x / 1.24x int8, error 1.9e-7 -> 3.9e-7.
ATTENTION_INT8_MIN_TOKENS = 128
ATTENTION_CHOICES = ("auto", "int8", "float")


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over recorded feeds."""

    def __init__(self, feeds: list[dict]):
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)


# graph inputs that only condition (noise levels, actions): a product fed by nothing else is conditioning
CONDITIONING_INPUTS = ("t", "action", "prev_action", "ctx_t", "ctx_actions")


def float_nodes(graph, keep: tuple[str, ...] = ()) -> list[str]:
    """Product nodes kept in float: those named in FLOAT_NODES (and UNET_FLOAT_NODES in a U-Net) or `keep` (the
    user's name fragments), and every
    product on the conditioning path (found from the graph, not its names: a transformer step computes all
    blocks' modulation in one Gemm). graph: an ONNX file or ModelProto."""
    import onnx

    m = onnx.load(graph) if isinstance(graph, str) else graph
    keep = FLOAT_NODES + tuple(keep) + (() if reads_kv_cache(m) else UNET_FLOAT_NODES)
    content = {i.name for i in m.graph.input if i.name not in CONDITIONING_INPUTS}
    for n in m.graph.node:  # ONNX nodes are topologically sorted
        if any(i in content for i in n.input):
            content.update(n.output)
    return [n.name for n in m.graph.node if n.op_type in PRODUCTS
            and (any(f in n.name for f in keep) or not any(i in content for i in n.input))]


def reads_kv_cache(graph) -> bool:
    """A transformer's step or kv graph (it reads the cache), not a frame-stack U-Net's."""
    return any(i.name == "cache_k" for i in graph.graph.input)


def tokens_per_frame(graph) -> int:
    """Tokens of one frame in a transformer's graph: its k_new output is [layers, batch, heads, tokens, head_dim]."""
    k_new = next(o for o in graph.graph.output if o.name == "k_new")
    return k_new.type.tensor_type.shape.dim[3].dim_value


def products_to_quantize(graph, attention: str = "auto") -> tuple[str, ...]:
    """A graph reading a KV cache: TRANSFORMER_PRODUCTS, plus the attention MatMuls with attention "int8" (or "auto"
    and at least ATTENTION_INT8_MIN_TOKENS tokens a frame). Any other graph: every product type (a U-Net's work is
    its convs)."""
    if attention not in ATTENTION_CHOICES:
        raise ValueError(f"quantize: unknown attention precision {attention!r} (expected {', '.join(ATTENTION_CHOICES)})")
    if not reads_kv_cache(graph):
        return PRODUCTS
    if attention == "int8" or (attention == "auto" and tokens_per_frame(graph) >= ATTENTION_INT8_MIN_TOKENS):
        return TRANSFORMER_PRODUCTS + ("MatMul",)
    return TRANSFORMER_PRODUCTS


CALIBRATIONS = ("auto", "minmax", "percentile")
PERCENTILE = 99.999  # measured on the U-Net teacher: graph error 1.30e-4 (min-max) -> 0.99e-4; 99.99 gave 1.06e-4


def calibration_for(graph, calibration: str) -> str:
    """auto: percentile for a frame-stack U-Net (measured: 0.45-0.65 dB better rollouts than min-max), min-max for
    a transformer (its INT8 step is within 2e-7 of FP32 already)."""
    if calibration != "auto":
        return calibration
    return "minmax" if reads_kv_cache(graph) else "percentile"


def quantize_graph(src: str, out: str, feeds: list[dict], work_dir: str, keep: tuple[str, ...] = (),
                   calibration: str = "auto", attention: str = "auto") -> int:
    """Static QDQ INT8 of one graph calibrated on feeds; returns how many product nodes stay in float.
    keep: more node-name fragments kept in float; calibration: activation ranges from the min and max seen
    (minmax) or from the PERCENTILE-th percentile of |activation| (percentile: a few outliers no longer
    stretch the int8 grid), auto: calibration_for; attention: a transformer's attention products in int8 or float
    (auto: products_to_quantize)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = os.path.join(work_dir, "pre.onnx")
    quant_pre_process(src, pre, skip_symbolic_shape=True)
    graph = onnx.load(pre)
    ops = products_to_quantize(graph, attention)
    excluded = float_nodes(graph, keep)
    calibration = calibration_for(graph, calibration)
    options = {"CalibPercentile": PERCENTILE} if calibration == "percentile" else {}
    # matrix products write float: their outputs feed residual adds, norms and the cache (k_new, v_new), where an
    # int8 round trip only adds error and Q/DQ nodes (measured: kv graph error 3.4e-4 -> 2.2e-4). Not convolutions:
    # ONNX Runtime's int8 convolution (QLinearConv) needs a quantized output, without one the conv runs in float
    # on dequantized weights (a U-Net's frame loop ran at 0.77x FP32)
    with contextlib.redirect_stdout(io.StringIO()):  # the percentile calibrator prints its progress
        quantize_static(pre, out, _Reader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=list(ops), nodes_to_exclude=excluded,
                        calibrate_method=CalibrationMethod.Percentile if calibration == "percentile" else CalibrationMethod.MinMax,
                        extra_options={"OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"], **options})
    os.remove(pre)
    return sum(n.op_type in PRODUCTS for n in graph.graph.node) - sum(
        n.op_type in ops and n.name not in excluded for n in graph.graph.node)
