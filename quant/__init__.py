"""nextframe.quant: post-training quantization of exported models.

It will hold timestep-aware calibration sets and PTQ: Q/DQ insertion, INT8 for ONNX Runtime, and
NVIDIA ModelOpt for TensorRT (the ``quant`` extra). Quantized engines are checked against the ORT CPU
reference on the same bundle and inputs.
"""
