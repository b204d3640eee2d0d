// The CUDA runtime calls the ONNX Runtime device loop takes from libcudart at run time (cuda_runtime.h): with the
// toolkit's libcudart (present where nvcc is, as on the development machines and in CI) every symbol resolves; no call
// is made (no GPU here). Without a toolkit the loader's error names what it tried.
#include <cstdlib>
#include <fstream>

#include "common.h"
#include "cuda_runtime.h"
#include "nf_test.h"

NF_TEST(cuda_runtime_resolves_every_call) {
    const char* lib = "/usr/local/cuda/lib64/libcudart.so";
    if (std::getenv("NEXTFRAME_CUDART_LIB") == nullptr && std::ifstream(lib).good()) setenv("NEXTFRAME_CUDART_LIB", lib, 1);
    if (std::getenv("NEXTFRAME_CUDART_LIB") == nullptr) {
        CHECK_THROWS(nf::RuntimeError, nf::cuda_runtime(), "cuda_runtime: ");
        return;
    }
    const nf::CudaRuntime& rt = nf::cuda_runtime();
    CHECK(rt.set_device != nullptr && rt.memcpy != nullptr && rt.memcpy_2d != nullptr && rt.synchronize != nullptr &&
          rt.memset != nullptr && rt.error_string != nullptr);
    CHECK(std::string(rt.error_string(1)).size() > 0);  // cudaErrorInvalidValue's text: needs no device
}
