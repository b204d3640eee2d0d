// ONNX Runtime, loaded at run time. nf_core is compiled against the 1.21 headers with
// ORT_API_MANUAL_INIT; ort_api() dlopens libonnxruntime once per process, takes OrtGetApiBase with dlsym
// and asks for API version ORT_API_VERSION (21). Any newer library (the pip wheel ships 1.32) serves it.
// Only ort_api.cpp and engine_ort.cpp include this header; engine.h stays free of ORT types.
//
// Search order: $NEXTFRAME_ORT_LIB (an error if set but unloadable), then lib_path (Python passes the
// wheel's onnxruntime/capi/libonnxruntime.so.*), then a libonnxruntime already loaded in the process,
// then the default names libonnxruntime.so.1 and libonnxruntime.so. The library stays loaded for the
// life of the process (the API table it returns must outlive every session).
#pragma once

#ifndef ORT_API_MANUAL_INIT
#define ORT_API_MANUAL_INIT
#endif
#include <cstdint>
#include <onnxruntime_cxx_api.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor.h"

namespace nf {

// Loads on the first call (later calls ignore lib_path and return the same table). Throws
// nf::RuntimeError "ort_api: ..." when no library loads or it lacks API version ORT_API_VERSION.
const OrtApi& ort_api(const std::string& lib_path = "");
// Path of the loaded library and its version string; empty before the first successful ort_api().
std::string ort_lib_path();
std::string ort_version();

// The ONNX element type of a core dtype (float32, int64: the only two the core binds).
inline ONNXTensorElementDataType ort_element_type(DType d) {
    return d == DType::F32 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT : ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
}

// Throws nf::RuntimeError "<what>: <ORT message>" (one line) when status is not null; releases it.
void ort_check(OrtStatus* status, const std::string& what);

// Providers compiled into the loaded library, e.g. {"CPUExecutionProvider"}.
std::vector<std::string> ort_available_providers();

// One deleter per handle type; every ORT handle has exactly one owner.
struct OrtDeleter {
    void operator()(OrtEnv* p) const { Ort::GetApi().ReleaseEnv(p); }
    void operator()(OrtSessionOptions* p) const { Ort::GetApi().ReleaseSessionOptions(p); }
    void operator()(OrtSession* p) const { Ort::GetApi().ReleaseSession(p); }
    void operator()(OrtValue* p) const { Ort::GetApi().ReleaseValue(p); }
    void operator()(OrtMemoryInfo* p) const { Ort::GetApi().ReleaseMemoryInfo(p); }
    void operator()(OrtTypeInfo* p) const { Ort::GetApi().ReleaseTypeInfo(p); }
    void operator()(OrtStatus* p) const { Ort::GetApi().ReleaseStatus(p); }
    void operator()(OrtCUDAProviderOptionsV2* p) const { Ort::GetApi().ReleaseCUDAProviderOptions(p); }
    void operator()(OrtThreadingOptions* p) const { Ort::GetApi().ReleaseThreadingOptions(p); }
    void operator()(OrtIoBinding* p) const { Ort::GetApi().ReleaseIoBinding(p); }
    void operator()(OrtAllocator* p) const { Ort::GetApi().ReleaseAllocator(p); }
    void operator()(OrtRunOptions* p) const { Ort::GetApi().ReleaseRunOptions(p); }
};

using OrtEnvPtr = std::unique_ptr<OrtEnv, OrtDeleter>;
using OrtSessionOptionsPtr = std::unique_ptr<OrtSessionOptions, OrtDeleter>;
using OrtSessionPtr = std::unique_ptr<OrtSession, OrtDeleter>;
using OrtValuePtr = std::unique_ptr<OrtValue, OrtDeleter>;
using OrtMemoryInfoPtr = std::unique_ptr<OrtMemoryInfo, OrtDeleter>;
using OrtTypeInfoPtr = std::unique_ptr<OrtTypeInfo, OrtDeleter>;
using OrtStatusPtr = std::unique_ptr<OrtStatus, OrtDeleter>;
using OrtCudaOptionsPtr = std::unique_ptr<OrtCUDAProviderOptionsV2, OrtDeleter>;
using OrtIoBindingPtr = std::unique_ptr<OrtIoBinding, OrtDeleter>;
using OrtAllocatorPtr = std::unique_ptr<OrtAllocator, OrtDeleter>;
using OrtRunOptionsPtr = std::unique_ptr<OrtRunOptions, OrtDeleter>;

// The process-wide environment (created on first use, shared by every session, released with the last one),
// with a global intra-op thread pool of the size the first session of its lifetime asked for. Sessions that
// want that many threads use the global pool (DisablePerSessionThreads); others get their own.
struct OrtSharedEnv {
    std::shared_ptr<OrtEnv> env;
    std::int64_t global_intra_threads = 0;
};
OrtSharedEnv ort_env(std::int64_t intra_threads);

// A session on a graph's bytes as every engine makes one (engine_ort.cpp): intra-op threads from params (the shared
// pool where the sizes agree), inter-op 1, sequential, ORT_ENABLE_ALL; cuda: the CUDA provider on params.device_id,
// with cuda_options added (e.g. {"enable_cuda_graph", "1"}). file names the graph in errors.
struct EngineParams;
struct GraphInfo;
OrtSessionPtr make_ort_session(const OrtApi& api, const OrtSharedEnv& env, const std::vector<char>& model,
                               const std::string& file, const EngineParams& params, bool cuda,
                               const std::vector<std::pair<std::string, std::string>>& cuda_options = {});
// nf::RuntimeError "<who>: CUDAExecutionProvider not in onnxruntime ..." (with what the library has and how to get the
// provider) unless the loaded library has the CUDA provider.
void require_ort_cuda_provider(const std::string& who);
// The session's inputs and outputs against the manifest's specs of graph (nf::InvalidArgument naming the first
// difference).
void check_ort_io(const OrtApi& api, OrtSession* session, const GraphInfo& graph);

}  // namespace nf
