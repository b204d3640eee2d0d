#!/usr/bin/env bash
# Compile-check the TensorRT backend (csrc/engine_trt.cpp, trt_support.cpp, the device loop trt_device_loop.cpp, and
# engine.cpp with it switched on) against TensorRT
# headers, with -Wall -Wextra -Werror, without a GPU or TensorRT's libraries: the check run here for TensorRT
# 10.0, 10.16 and 11.1 (the include/ folders of NVIDIA/TensorRT at those tags) and CUDA 13.0.
#
#   tools/check_trt_compile.sh /path/to/TensorRT-10.0/include /path/to/TensorRT-11.1/include ...
#
# CUDA_INCLUDE (default /usr/local/cuda/include) holds cuda_runtime_api.h.
set -euo pipefail
cd "$(dirname "$0")/.."
cuda="${CUDA_INCLUDE:-/usr/local/cuda/include}"
[ $# -ge 1 ] || { echo "usage: $0 TENSORRT_INCLUDE_DIR [...]" >&2; exit 2; }
for inc in "$@"; do
  [ -f "$inc/NvInferRuntime.h" ] || { echo "check_trt_compile: no NvInferRuntime.h in $inc" >&2; exit 2; }
  version=$(sed -n 's/^#define TRT_\(MAJOR\|MINOR\|PATCH\)_ENTERPRISE \([0-9]*\).*/\2/p; s/^#define NV_TENSORRT_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' \
            "$inc/NvInferVersion.h" | head -3 | paste -sd.)
  # -isystem: TensorRT's own headers use deprecated declarations; our code must not
  g++ -std=c++17 -Wall -Wextra -Werror -fsyntax-only -DNF_HAVE_TENSORRT -Icsrc -isystem "$inc" -isystem "$cuda" \
      csrc/engine_trt.cpp csrc/trt_support.cpp csrc/trt_device_loop.cpp csrc/engine.cpp
  echo "engine_trt.cpp, trt_support.cpp, trt_device_loop.cpp compile against TensorRT ${version:-?} ($inc)"
done
