"""nextframe.export: turn a trained PyTorch model into a runtime bundle.

It will hold the torch → ONNX export (named io, pinned opset, dynamic axes spelled out), the bundle
writer (manifest.json with format_version, files and sha256, io specs, schedules, defaults) and the
export gate that compares PyTorch with ONNX and refuses to write a bundle that fails parity.
"""
