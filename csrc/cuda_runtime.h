// The few CUDA runtime calls a device-resident ONNX Runtime loop needs (copies between host and device and into the
// K/V ring, the device to use, waiting for it), taken from libcudart at run time, as ort_api.h takes ONNX Runtime: the core links no CUDA, a runtime-only
// install without a GPU never loads it, and onnxruntime-gpu brings its own libcudart, which is the one found.
//
// Search order: $NEXTFRAME_CUDART_LIB (an error if set but unloadable), a libcudart already loaded in the process
// (onnxruntime-gpu's), then libcudart.so.13, .so.12, .so. Kept loaded for the life of the process.
#pragma once

#include <cstddef>
#include <string>

namespace nf {

struct CudaRuntime {
    std::string path;
    // cudaError_t is an int-sized enum; 0 is success
    int (*set_device)(int) = nullptr;
    int (*memcpy)(void* dst, const void* src, std::size_t bytes, int kind) = nullptr;  // synchronous
    // height rows of width bytes, pitches apart: one copy writes a frame's K/V into its slot of every (layer, head)
    int (*memcpy_2d)(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch, std::size_t width,
                     std::size_t height, int kind) = nullptr;
    // Device-to-device copies return before they finish, and ONNX Runtime runs on a stream of its own: the loops wait
    // for the device before the next run reads what was copied.
    int (*synchronize)() = nullptr;
    int (*memset)(void* dst, int value, std::size_t bytes) = nullptr;
    const char* (*error_string)(int) = nullptr;
    static constexpr int kHostToDevice = 1, kDeviceToHost = 2, kDeviceToDevice = 3;  // cudaMemcpyKind

    // Throws nf::RuntimeError "<what>: <CUDA's message>" when rc is not 0.
    void check(int rc, const std::string& what) const;
};

// Loads on the first call; nf::RuntimeError "cuda_runtime: ..." (one line) when no libcudart loads or one lacks a
// symbol.
const CudaRuntime& cuda_runtime();

}  // namespace nf
