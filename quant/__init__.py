"""nextframe.quant: post-training quantization of exported bundles.

calibrate.py records the step graph's inputs from the bundle's own sampler (naive, Q-Diffusion's
time-step-aware, PTQ4DM's NDTC); bundle.py writes the quantized bundle, optionally one graph per group of
denoising steps; ort_int8.py (ONNX Runtime QDQ U8S8, for the C++ core on CPU) and modelopt_qdq.py (NVIDIA
ModelOpt Q/DQ INT8/FP8, for TensorRT; the `quant` extra) quantize one graph.
"""
