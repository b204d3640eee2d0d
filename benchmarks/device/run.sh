#!/usr/bin/env bash
# The GPU checks and benchmark matrix in one command, for a bare GPU machine with torch (CUDA), CMake, pybind11,
# scikit-build-core, onnx and onnxruntime (CPU) but nothing installable from a registry (the project's device
# machine; the repository travels as the working tree). Run from the repository root:
#
#     bash benchmarks/device/run.sh            # results into $OUT (default benchmarks/results), about 6-8 minutes
#
# 1. builds the C++ core and its AOTInductor plugin against the machine's torch (no download: --no-deps,
#    --no-build-isolation);
# 2. checks that backend aoti-cuda loads and that a package's outputs match eager PyTorch on the GPU (gpu_bench
#    records the max abs difference);
# 3. times the shipped default (1 step) and an NFD-310M-shaped transformer (random weights, 4 steps) on eager PyTorch,
#    a CUDA graph of the frame, the AOTInductor package from Python and the C++ core's aoti-cuda loop, side by side;
#    for the default (a frame-stack U-Net) also the C++ DeviceLoop (state on the GPU), eager and as a CUDA graph, with
#    and without fetching each frame, its frames checked against the aoti-cuda FrameLoop's first; the same for a small
#    K/V-cache transformer (its ring on the GPU).
# Needs safetensors importable (carry its wheel if the machine lacks it). Unverified: no session has had a GPU yet.
set -euo pipefail
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
TORCH_PREFIX=$($PY -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
$PY -m pip install --no-build-isolation --no-deps -e . -Ccmake.define.NF_TORCH_PREFIX="$TORCH_PREFIX" \
    -Cbuild-dir=build/device > "$OUT/device_build.log" 2>&1 || { tail -30 "$OUT/device_build.log"; exit 1; }
$PY - <<'PYEOF'
import torch
from nextframe import _core
from nextframe.benchmarks.device_info import gpu_info
assert torch.cuda.is_available(), "no CUDA device"
assert _core.aoti_available(), _core.aoti_unavailable_reason()
print("device:", gpu_info())
PYEOF
GPU=$($PY -c 'import torch; print(torch.cuda.get_device_name(0).replace(" ", "_").lower())')
timeout 240 $PY benchmarks/gpu_bench.py --model default --device cuda --frames 500 --out "$OUT/gpu_${GPU}_default.json"
timeout 300 $PY benchmarks/gpu_bench.py --model nfd310m --device cuda --steps 4 --frames 200 --no-core \
    --out "$OUT/gpu_${GPU}_nfd310m.json"
# the transformer's DeviceLoop (K/V ring on the GPU, written by slot inside the CUDA graph) on a small DiT: last, and
# allowed to fail, so the matrix above is kept whatever happens here
timeout 100 $PY benchmarks/gpu_bench.py --model tiny --device cuda --frames 300 --out "$OUT/gpu_${GPU}_tiny_dit.json" \
    || echo "tiny transformer device loop: failed or timed out (see above)"
$PY benchmarks/compare.py --markdown "$OUT/cross_device_table.md"
echo "done: $OUT"
