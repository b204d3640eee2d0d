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
# 3. times the shipped default (its two steps) and an NFD-310M-shaped transformer (random weights, 4 steps) on eager PyTorch,
#    a CUDA graph of the frame, the AOTInductor package from Python and the C++ core's aoti-cuda loop, side by side;
#    for the default (a frame-stack U-Net) also the C++ DeviceLoop (state on the GPU), eager and as a CUDA graph, with
#    and without fetching each frame, its frames checked against the aoti-cuda FrameLoop's first; the same for a small
#    K/V-cache transformer (its ring on the GPU);
# 4. runs the GPU tests (tests/test_gpu_device_loops.py) where pytest is importable;
# 5. runs `nextframe bench --backend all` on the default (the user's command; torch-cuda is the eager GPU reference).
# Needs safetensors importable (carry its wheel if the machine lacks it). Seen on an H200 (2026-12-01): steps 1 and 2
# pass (GCC 13, CMake 4.4, torch 2.11+cu130); the gpu_bench runs with the core's rows crashed (segmentation fault,
# location unknown then: hence the stage lines and faulthandler, and the Python-side rows first).
# NF_DEADLINE_S (default 600): the seconds this script may take in all; each benchmark's timeout is what is left
# of it (benchmarks/device/session.sh shares the call with a training run).
set -euo pipefail
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
DEADLINE=${NF_DEADLINE_S:-600}
BUILD_LOG=${NF_BUILD_LOG:-$OUT/device_build.log}
left() {  # seconds left of the deadline, at most $1
    local l=$((DEADLINE - SECONDS - 5))
    if [ "$l" -gt "$1" ]; then l=$1; fi
    if [ "$l" -lt 10 ]; then l=10; fi
    echo "$l"
}
TORCH_PREFIX=$($PY -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
$PY -m pip install --no-build-isolation --no-deps -e . -Ccmake.define.NF_TORCH_PREFIX="$TORCH_PREFIX" \
    -Cbuild-dir=build/device > "$BUILD_LOG" 2>&1 || { grep -m8 -B2 -A6 "error" "$BUILD_LOG"; tail -5 "$BUILD_LOG"; exit 1; }
echo "built in ${SECONDS} s"
grep -E "AOTInductor plugin|CMake Warning" -A2 "$BUILD_LOG" | head -12 || true  # torch's CUDA against the toolkit's
$PY - <<'PYEOF'
import torch
from nextframe import _core
from nextframe.benchmarks.device_info import gpu_info
assert torch.cuda.is_available(), "no CUDA device"
assert _core.aoti_available(), _core.aoti_unavailable_reason()
print("device:", gpu_info())
PYEOF
GPU=$($PY -c 'import torch; print(torch.cuda.get_device_name(0).replace(" ", "_").lower())')
export PYTHONFAULTHANDLER=1 PYTHONUNBUFFERED=1
# the Python-side rows (eager, CUDA graph, AOTI package from Python) on their own first: kept if the core's rows crash
timeout "$(left 150)" $PY benchmarks/gpu_bench.py --model default --device cuda --frames 500 --no-core \
    --out "$OUT/gpu_${GPU}_default_python.json" || echo "default (Python rows): failed or timed out (see above)"
# the core's rows on the tiny U-Net first, with the plugin's libtorch global (the default) and then local: which one
# crashes says whether symbol interposition is the segfault seen on the first H200 run (README, "Status")
# (diagnostic runs: under gdb where there is one, so a crash prints the native stack, and with AOTInductor's own
# input checks on, which name a device, dtype or shape mismatch instead of reading out of bounds)
DEBUG=()
if command -v gdb > /dev/null; then DEBUG=(gdb -q -batch -ex run -ex "bt 40" --args); fi
for rtld in global local; do
    NEXTFRAME_AOTI_RTLD=$rtld AOTI_RUNTIME_CHECK_INPUTS=1 timeout "$(left 90)" "${DEBUG[@]}" $PY benchmarks/gpu_bench.py \
        --model tiny_unet --device cuda --frames 100 --out "$OUT/gpu_${GPU}_tiny_unet_rtld_${rtld}.json" \
        || echo "tiny_unet, RTLD $rtld: failed or timed out (see above)"
done
timeout "$(left 240)" $PY benchmarks/gpu_bench.py --model default --device cuda --frames 500 --out "$OUT/gpu_${GPU}_default.json" \
    || echo "default: failed or timed out (see above)"
echo "default done at ${SECONDS} s"
# the transformer's DeviceLoop (K/V ring on the GPU, written by slot inside the CUDA graph) on a small DiT
timeout "$(left 100)" $PY benchmarks/gpu_bench.py --model tiny --device cuda --frames 300 --out "$OUT/gpu_${GPU}_tiny_dit.json" \
    || echo "tiny transformer device loop: failed or timed out (see above)"
echo "tiny done at ${SECONDS} s"
timeout "$(left 300)" $PY benchmarks/gpu_bench.py --model nfd310m --device cuda --steps 4 --frames 200 --no-core \
    --out "$OUT/gpu_${GPU}_nfd310m.json" || echo "nfd310m: failed or timed out (see above)"
echo "nfd310m done at ${SECONDS} s"
# the GPU tests (tests/test_gpu_device_loops.py): the AOTInductor loops against the CPU host loop (the ORT CUDA and
# TensorRT ones skip without onnxruntime-gpu / TensorRT, and say so); needs pytest (carry its wheels in .whl/)
if $PY -c "import pytest" 2>/dev/null; then
    AOTI_RUNTIME_CHECK_INPUTS=1 timeout "$(left 200)" $PY -m pytest -q -ra -m gpu -p no:cacheprovider tests/test_gpu_device_loops.py \
        > "$OUT/gpu_tests_${GPU}.txt" 2>&1 || echo "gpu tests: failed or timed out"
    tail -15 "$OUT/gpu_tests_${GPU}.txt"
else
    echo "gpu tests: pytest is not importable here (carry the wheels of pytest, pluggy, iniconfig, packaging and pygments: session.sh says how)"
fi
echo "tests done at ${SECONDS} s"
# the user's command on the GPU machine: every backend that can run the default side by side (the ORT CPU, AOTI CPU
# and CUDA, and frame-graph loops, the eager PyTorch loop on the CPU and the GPU), context from a synthetic episode
$PY - <<'PYEOF'
import numpy as np
from nextframe.data.episode import Episode, save_episode
rng = np.random.default_rng(0)
save_episode("/tmp/nf_bench_episode.npz", Episode(rng.integers(0, 256, (41, 210, 160, 3), dtype=np.uint8),
                                                  rng.integers(0, 4, 40).astype(np.int64), "Breakout", 2))
PYEOF
timeout "$(left 240)" $PY -m nextframe.cli bench --backend all --episode /tmp/nf_bench_episode.npz \
    --frames 300 --json --out "$OUT/bench_${GPU}_default_all.json" > /dev/null || echo "bench --backend all: failed or timed out"
echo "bench done at ${SECONDS} s"
$PY benchmarks/compare.py --markdown "$OUT/cross_device_table.md" || true
echo "done: $OUT"
