#include "trt_support.h"

#include <algorithm>
#include <cstdlib>

#include "common.h"

static_assert(NV_TENSORRT_MAJOR >= 10, "trt_support.cpp needs TensorRT 10 or newer (named IO tensors, enqueueV3)");

namespace nf {
namespace trt {

void cuda_check(cudaError_t e, const std::string& what) {
    if (e != cudaSuccess)
        throw RuntimeError("engine_trt: " + what + " failed (" + cudaGetErrorName(e) + ": " + cudaGetErrorString(e) + ")");
}

// "10.16.0.72" -> "10.16.0": plans are tied to the TensorRT release; the build number is not compared.
std::string release_of(const std::string& version) {
    std::size_t dots = 0, i = 0;
    for (; i < version.size(); ++i)
        if (version[i] == '.' && ++dots == 3) break;
    return version.substr(0, i);
}

// getInferLibVersion() is (MAJOR * 100 + MINOR) * 100 + PATCH in TensorRT 10 and 11 (NvInferRuntimeBase.h).
std::string loaded_trt_release() {
    const std::int32_t v = getInferLibVersion();
    return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

DeviceInfo device_info(int device) {
    int count = 0;
    cuda_check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    NF_CHECK(device >= 0 && device < count, "engine_trt: CUDA device " + std::to_string(device) + " not present (" +
                                                std::to_string(count) + " visible)");
    cudaDeviceProp prop{};
    cuda_check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    return {"sm_" + std::to_string(prop.major) + std::to_string(prop.minor), prop.name};
}

// The graph's engine for this device and library: same compute capability and TensorRT release (and precision,
// when asked), preferring one built on a GPU of the same name; else the first in manifest order. nullptr when
// none fits (the caller says why: a missing step engine is an error, a missing kv engine is not).
const TrtEngineEntry* find_engine(const Bundle& bundle, const std::string& graph, const DeviceInfo& dev,
                                  const std::string& trt, const std::string& precision, std::string* have) {
    const TrtEngineEntry* best = nullptr;
    for (const auto& e : bundle.trt_engines) {
        if (e.graph != graph) continue;
        if (have != nullptr)
            *have += (have->empty() ? "" : ", ") + e.precision + " " + e.compute_capability + " TensorRT " + e.trt_version;
        if (e.compute_capability != dev.sm || release_of(e.trt_version) != trt) continue;
        if (!precision.empty() && e.precision != precision) continue;
        if (best == nullptr || (best->gpu != dev.name && e.gpu == dev.name)) best = &e;
    }
    return best;
}

const TrtEngineEntry& choose_step_engine(const Bundle& bundle, const DeviceInfo& dev, const std::string& trt,
                                         const std::string& precision) {
    NF_CHECK(std::any_of(bundle.trt_engines.begin(), bundle.trt_engines.end(), [](const TrtEngineEntry& e) { return e.graph == "step"; }),
             "engine_trt: the bundle has no TensorRT engine (no \"tensorrt\" section in its manifest); build one on "
             "this machine with: python -m nextframe.export.tensorrt " + bundle.dir);
    std::string have;
    const TrtEngineEntry* best = find_engine(bundle, "step", dev, trt, precision, &have);
    NF_CHECK(best != nullptr, "engine_trt: no TensorRT engine in the bundle for " + dev.sm + " (" + dev.name + "), TensorRT " +
                                  trt + (precision.empty() ? "" : ", precision " + precision) + " (it has: " + have +
                                  "); build one on this machine with: python -m nextframe.export.tensorrt " + bundle.dir);
    return *best;
}

const char* trt_type_name(nvinfer1::DataType t) {
    switch (t) {
        case nvinfer1::DataType::kFLOAT: return "float32";
        case nvinfer1::DataType::kHALF: return "float16";
        case nvinfer1::DataType::kINT8: return "int8";
        case nvinfer1::DataType::kINT32: return "int32";
        case nvinfer1::DataType::kBOOL: return "bool";
        case nvinfer1::DataType::kUINT8: return "uint8";
        case nvinfer1::DataType::kFP8: return "fp8";
        case nvinfer1::DataType::kBF16: return "bfloat16";
        case nvinfer1::DataType::kINT64: return "int64";
        default: return "other";
    }
}

// Host float32 <-> engine float32; host int64 <-> engine int64, or int32 (narrowed with a range check).
bool compatible(DType host, nvinfer1::DataType dev) {
    if (host == DType::F32) return dev == nvinfer1::DataType::kFLOAT;
    return dev == nvinfer1::DataType::kINT64 || dev == nvinfer1::DataType::kINT32;
}

// Bytes per element; 0 for types we do not allocate (sub-byte and newer types).
std::size_t trt_type_size(nvinfer1::DataType t) {
    switch (t) {
        case nvinfer1::DataType::kFLOAT:
        case nvinfer1::DataType::kINT32: return 4;
        case nvinfer1::DataType::kHALF:
        case nvinfer1::DataType::kBF16: return 2;
        case nvinfer1::DataType::kINT8:
        case nvinfer1::DataType::kBOOL:
        case nvinfer1::DataType::kUINT8:
        case nvinfer1::DataType::kFP8: return 1;
        case nvinfer1::DataType::kINT64: return 8;
        default: return 0;
    }
}

Shape shape_of(const nvinfer1::Dims& d) {
    Shape s;
    for (std::int32_t i = 0; i < d.nbDims; ++i) s.push_back(std::int64_t(d.d[i]));
    return s;
}

nvinfer1::Dims dims_of(const Shape& s) {
    nvinfer1::Dims d{};
    NF_CHECK_ARG(s.size() <= std::size_t(nvinfer1::Dims::MAX_DIMS),
                 "engine_trt: rank " + std::to_string(s.size()) + " exceeds TensorRT's " + std::to_string(nvinfer1::Dims::MAX_DIMS));
    d.nbDims = std::int32_t(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) d.d[i] = s[i];
    return d;
}

bool cuda_graph_enabled(bool asked) {
    const char* env = std::getenv("NEXTFRAME_TRT_CUDA_GRAPH");
    if (env != nullptr && std::string(env) == "0") return false;
    return asked;
}

}  // namespace trt
}  // namespace nf
