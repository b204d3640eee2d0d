"""W4A8 for ONNX Runtime on CPU: 4-bit weights, 8-bit activations in the matrix products (MatMulNBits).

Each MatMul with a constant weight becomes a MatMulNBits node: weights in symmetric 4-bit blocks of 32 along the
reduction axis (one float scale per block, round-to-nearest), and accuracy_level 4, which makes ONNX Runtime
quantize the activations to int8 per block at run time and use its int8 dot-product kernels (AVX512-VNNI here).
No calibration: the weight scales come from the weights, the activation scales from each call. The same parts as
the INT8 back end stay in float (quant/ort_int8.py FLOAT_NODES: embeddings, modulation, norms, the output layer).
Convolutions are not covered (MatMulNBits is a matrix product), so a frame-stack U-Net gains nothing from it.
"""
from __future__ import annotations

BLOCK = 32
ACCURACY_INT8 = 4  # MatMulNBits accuracy_level: int8 activations (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8)


def quantize_graph(src: str, out: str) -> int:
    """src -> out with W4A8 MatMulNBits; returns how many product nodes stay in float. Refuses a graph without a
    MatMul it could quantize."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    from nextframe.quant.ort_int8 import FLOAT_NODES

    model = onnx.load(src)
    keep = [n.name for n in model.graph.node if n.op_type == "MatMul" and any(f in n.name for f in FLOAT_NODES)]
    config = DefaultWeightOnlyQuantConfig(block_size=BLOCK, is_symmetric=True, accuracy_level=ACCURACY_INT8,
                                          op_types_to_quantize=("MatMul",))
    q = MatMulNBitsQuantizer(model, block_size=BLOCK, is_symmetric=True, accuracy_level=ACCURACY_INT8,
                             nodes_to_exclude=keep, algo_config=config)
    q.process()
    result = q.model.model
    n_quantized = sum(n.op_type == "MatMulNBits" for n in result.graph.node)
    if n_quantized == 0:
        raise ValueError("quantize: w4a8 found no matrix product with constant weights to quantize in "
                         f"{src} (it covers MatMul, not convolutions: use int8 for a frame-stack U-Net)")
    onnx.save(result, out)
    return sum(n.op_type in ("MatMul", "Gemm", "Conv") for n in result.graph.node)
