// What the TensorRT engine (engine_trt.cpp) and the TensorRT device loop (trt_device_loop.cpp) share: the logger,
// CUDA handles, which plan of the bundle fits this GPU and TensorRT, and the TensorRT <-> core type and shape
// mappings. Compiled only with TensorRT (NF_HAVE_TENSORRT).
#pragma once

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>

#include "bundle.h"
#include "tensor.h"

namespace nf {
namespace trt {

// nf::RuntimeError "engine_trt: <what> failed (<CUDA error>)" unless e is cudaSuccess.
void cuda_check(cudaError_t e, const std::string& what);

// Keeps the last error TensorRT reported (appended to our exceptions) and prints errors and warnings.
class TrtLogger final : public nvinfer1::ILogger {
public:
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
        if (severity > Severity::kWARNING || msg == nullptr) return;
        try {
            std::lock_guard<std::mutex> lock(mu_);
            if (severity <= Severity::kERROR) last_error_ = msg;
        } catch (...) {
            // a logger must not throw; losing the message is the only consequence
        }
        std::fprintf(stderr, "nextframe: TensorRT %s: %s\n", severity <= Severity::kERROR ? "error" : "warning", msg);
    }
    // "" or " (TensorRT: <last error>)"
    std::string suffix() const {
        std::lock_guard<std::mutex> lock(mu_);
        return last_error_.empty() ? "" : " (TensorRT: " + last_error_ + ")";
    }

private:
    mutable std::mutex mu_;
    std::string last_error_;
};

struct CudaFree {
    void operator()(void* p) const { cudaFree(p); }
};
struct CudaFreeHost {
    void operator()(void* p) const { cudaFreeHost(p); }
};
struct CudaStreamDestroy {
    void operator()(cudaStream_t s) const { cudaStreamDestroy(s); }
};
struct CudaGraphExecDestroy {
    void operator()(cudaGraphExec_t g) const { cudaGraphExecDestroy(g); }
};
using DevicePtr = std::unique_ptr<void, CudaFree>;
using PinnedPtr = std::unique_ptr<void, CudaFreeHost>;
using StreamPtr = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, CudaStreamDestroy>;
using GraphExecPtr = std::unique_ptr<std::remove_pointer_t<cudaGraphExec_t>, CudaGraphExecDestroy>;

// "10.16.0.72" -> "10.16.0": plans are tied to the TensorRT release; the build number is not compared.
std::string release_of(const std::string& version);
// The loaded libnvinfer's release, "11.4.0".
std::string loaded_trt_release();

struct DeviceInfo {
    std::string sm;  // "sm_89"
    std::string name;
};
DeviceInfo device_info(int device);

// The graph's engine for this device and library: same compute capability and TensorRT release (and precision,
// when asked), preferring one built on a GPU of the same name; else the first in manifest order. nullptr when
// none fits; have (optional) lists what the bundle has.
const TrtEngineEntry* find_engine(const Bundle& bundle, const std::string& graph, const DeviceInfo& dev,
                                  const std::string& trt, const std::string& precision, std::string* have);
const TrtEngineEntry& choose_step_engine(const Bundle& bundle, const DeviceInfo& dev, const std::string& trt,
                                         const std::string& precision);
const char* trt_type_name(nvinfer1::DataType t);
// Host float32 <-> engine float32; host int64 <-> engine int64, or int32 (narrowed with a range check).
bool compatible(DType host, nvinfer1::DataType dev);
// Bytes per element; 0 for types we do not allocate (sub-byte and newer types).
std::size_t trt_type_size(nvinfer1::DataType t);
Shape shape_of(const nvinfer1::Dims& d);
nvinfer1::Dims dims_of(const Shape& s);
// asked (EngineParams::trt_cuda_graph, TrtDeviceLoopParams::cuda_graph), unless $NEXTFRAME_TRT_CUDA_GRAPH=0.
bool cuda_graph_enabled(bool asked);

}  // namespace trt
}  // namespace nf
