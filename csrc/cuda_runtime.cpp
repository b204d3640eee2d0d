#include "cuda_runtime.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "common.h"

namespace nf {

namespace {

std::string dl_error() {
    const char* e = dlerror();
    std::string s = e ? e : "unknown dlopen error";
    for (auto& c : s)
        if (c == '\n') c = ' ';
    return s;
}

}  // namespace

void CudaRuntime::check(int rc, const std::string& what) const {
    if (rc != 0) throw RuntimeError(what + ": " + (error_string ? error_string(rc) : "CUDA error") + " (" + std::to_string(rc) + ")");
}

const CudaRuntime& cuda_runtime() {
    static std::mutex mu;
    static CudaRuntime rt;
    static std::string failure;
    std::lock_guard<std::mutex> lock(mu);
    if (rt.memcpy != nullptr) return rt;
    NF_CHECK(failure.empty(), failure);
    void* handle = nullptr;
    std::string tried;
    const char* env = std::getenv("NEXTFRAME_CUDART_LIB");
    if (env != nullptr && *env != '\0') {
        handle = dlopen(env, RTLD_NOW | RTLD_LOCAL);
        if (handle == nullptr) failure = "cuda_runtime: cannot load NEXTFRAME_CUDART_LIB='" + std::string(env) + "' (" + dl_error() + ")";
        rt.path = env;
    } else {
        // first the runtime already in the process (onnxruntime-gpu's), whichever version it is, and only then a
        // new one: loading libcudart.so.13 beside ORT's .so.12 would give a second runtime (unusable on an older driver)
        const char* names[] = {"libcudart.so.13", "libcudart.so.12", "libcudart.so"};
        for (int flags : {RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD, RTLD_NOW | RTLD_LOCAL}) {
            for (const char* name : names) {
                handle = dlopen(name, flags);
                if (handle != nullptr) {
                    rt.path = name;
                    break;
                }
                if (!(flags & RTLD_NOLOAD)) tried += (tried.empty() ? "" : "; ") + dl_error();
            }
            if (handle != nullptr) break;
        }
        if (handle == nullptr) failure = "cuda_runtime: no CUDA runtime library loads (" + tried + "); set NEXTFRAME_CUDART_LIB";
    }
    NF_CHECK(failure.empty(), failure);
    rt.set_device = reinterpret_cast<int (*)(int)>(dlsym(handle, "cudaSetDevice"));
    rt.memcpy = reinterpret_cast<int (*)(void*, const void*, std::size_t, int)>(dlsym(handle, "cudaMemcpy"));
    rt.memcpy_2d = reinterpret_cast<int (*)(void*, std::size_t, const void*, std::size_t, std::size_t, std::size_t, int)>(
        dlsym(handle, "cudaMemcpy2D"));
    rt.synchronize = reinterpret_cast<int (*)()>(dlsym(handle, "cudaDeviceSynchronize"));
    rt.memset = reinterpret_cast<int (*)(void*, int, std::size_t)>(dlsym(handle, "cudaMemset"));
    rt.error_string = reinterpret_cast<const char* (*)(int)>(dlsym(handle, "cudaGetErrorString"));
    if (rt.set_device == nullptr || rt.memcpy == nullptr || rt.memcpy_2d == nullptr || rt.synchronize == nullptr ||
        rt.memset == nullptr || rt.error_string == nullptr) {
        rt.memcpy = nullptr;
        failure = "cuda_runtime: " + rt.path +
                   " lacks one of cudaSetDevice, cudaMemcpy, cudaMemcpy2D, cudaDeviceSynchronize, cudaMemset, "
                  "cudaGetErrorString";
        throw RuntimeError(failure);
    }
    return rt;
}

}  // namespace nf
