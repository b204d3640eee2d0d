"""W4A8 for ONNX Runtime on CPU: 4-bit weights, 8-bit activations in the matrix products (MatMulNBits).

Each MatMul with a constant weight becomes a MatMulNBits node: weights in symmetric 4-bit blocks of 32 along the
reduction axis (one float scale per block, round-to-nearest), and accuracy_level 4, which makes ONNX Runtime
quantize the activations to int8 per block at run time and use its int8 dot-product kernels (AVX512-VNNI here).
No calibration: the weight scales come from the weights, the activation scales from each call. The same parts as
the INT8 back end stay in float (quant/ort_int8.py float_nodes: embeddings, modulation, norms, the output layer).
MatMulNBits replaces MatMul only, so Gemms with a constant weight (what a 2-D product exports to) become MatMul + Add
first.
Convolutions are not covered (MatMulNBits is a matrix product), so a frame-stack U-Net gains nothing from it.
"""
from __future__ import annotations

BLOCK = 32
ACCURACY_INT8 = 4  # MatMulNBits accuracy_level: int8 activations (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8)


def gemms_as_matmuls(model):
    """Gemm(A, W, bias) with constant W (alpha = beta = 1, A not transposed) -> MatMul(A, W or W^T) + Add(bias)."""
    import numpy as np
    from onnx import helper, numpy_helper

    weights = {w.name: w for w in model.graph.initializer}
    nodes = []
    for n in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if (n.op_type != "Gemm" or n.input[1] not in weights or attrs.get("transA", 0)
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            nodes.append(n)
            continue
        w = numpy_helper.to_array(weights[n.input[1]])
        name = n.input[1] + "_as_matmul"
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w.T if attrs.get("transB", 0) else w), name))
        if len(n.input) > 2 and n.input[2]:
            product = n.output[0] + "_product"
            nodes.append(helper.make_node("MatMul", [n.input[0], name], [product], name=n.name + "/MatMul"))
            nodes.append(helper.make_node("Add", [product, n.input[2]], [n.output[0]], name=n.name + "/Add"))
        else:
            nodes.append(helper.make_node("MatMul", [n.input[0], name], [n.output[0]], name=n.name + "/MatMul"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in model.graph.node for i in n.input}
    kept = [w for w in model.graph.initializer if w.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model


def quantize_graph(src: str, out: str, keep: tuple[str, ...] = ()) -> int:
    """src -> out with W4A8 MatMulNBits; returns how many product nodes stay in float. Refuses a graph without a
    MatMul it could quantize."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    from nextframe.quant.ort_int8 import float_nodes

    model = gemms_as_matmuls(onnx.load(src))
    keep = float_nodes(model, keep)
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
