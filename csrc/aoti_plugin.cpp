// The AOTInductor backend's torch side, built as its own shared library (libnf_aoti.so) so that the core never
// links torch: csrc/engine_aoti.cpp dlopens it on first use, and a runtime-only install without torch simply
// has no "aoti" backend. The boundary is a C ABI of plain pointers (no C++ type crosses it), so the plugin's
// libstdc++ ABI (torch's) and the core's need not agree.
//
// Every call: the caller's host buffers are wrapped as tensors without a copy (CPU) or copied to the device
// (CUDA), the package runs, and its outputs are copied into the caller's buffers.
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <ATen/Functions.h>
#include <ATen/Parallel.h>
#include <torch/headeronly/version.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

namespace {

struct Handle {
    std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader;
    c10::Device device{c10::kCPU};
    std::vector<at::Tensor> inputs;  // reused across calls: only data pointers and device copies change
};

void set_error(char* err, std::size_t err_len, const std::string& msg) {
    if (err == nullptr || err_len == 0) return;
    // torch's messages carry a C++ backtrace after the first line: keep the first line only
    const std::string line = msg.substr(0, msg.find('\n'));
    std::strncpy(err, line.c_str(), err_len - 1);
    err[err_len - 1] = '\0';
}

at::ScalarType scalar_type(int dtype) { return dtype == 1 ? at::kLong : at::kFloat; }  // csrc/tensor.h: F32, I64

}  // namespace

extern "C" {

// The torch version the plugin was built against ("2.13.0"): a package from another torch is refused by the core.
__attribute__((visibility("default"))) const char* nf_aoti_torch_version() { return TORCH_VERSION; }

// device: "cpu" or "cuda:N". threads > 0 sets ATen's intra-op pool (process-wide, like torch.set_num_threads).
// Returns nullptr and writes err on failure.
__attribute__((visibility("default"))) void* nf_aoti_open(const char* package_path, const char* device,
                                                          std::int64_t threads, char* err, std::size_t err_len) {
    try {
        auto h = std::make_unique<Handle>();
        h->device = c10::Device(std::string(device));
        if (threads > 0) at::set_num_threads(int(threads));
        h->loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(
            package_path, "model", false, 1, h->device.is_cuda() ? h->device.index() : c10::DeviceIndex(-1));
        return h.release();
    } catch (const std::exception& e) {
        set_error(err, err_len, e.what());
    } catch (...) {
        set_error(err, err_len, "unknown error");
    }
    return nullptr;
}

// Runs once. Inputs: n_in host buffers with their dtypes (0 float32, 1 int64), ranks and shapes; outputs: n_out
// host buffers of out_numel elements each, filled in order (float32). Returns 0, or 1 with err written.
__attribute__((visibility("default"))) int nf_aoti_run(void* handle, int n_in, void* const* in_data,
                                                       const int* in_dtype, const int* in_rank,
                                                       const std::int64_t* const* in_shape, int n_out,
                                                       void* const* out_data, const std::int64_t* out_numel,
                                                       char* err, std::size_t err_len) {
    try {
        auto* h = static_cast<Handle*>(handle);
        std::vector<at::Tensor> inputs;
        inputs.reserve(std::size_t(n_in));
        for (int i = 0; i < n_in; ++i) {
            at::Tensor t = at::from_blob(in_data[i], at::IntArrayRef(in_shape[i], std::size_t(in_rank[i])),
                                         at::TensorOptions().dtype(scalar_type(in_dtype[i])));
            inputs.push_back(h->device.is_cpu() ? t : t.to(h->device));
        }
        std::vector<at::Tensor> outputs = h->loader->run(inputs);
        if (int(outputs.size()) != n_out) {
            set_error(err, err_len, "the package returned " + std::to_string(outputs.size()) + " outputs (expected " +
                                        std::to_string(n_out) + ")");
            return 1;
        }
        for (int i = 0; i < n_out; ++i) {
            at::Tensor o = outputs[std::size_t(i)].to(at::kCPU, at::kFloat).contiguous();
            if (o.numel() != out_numel[i]) {
                set_error(err, err_len, "output " + std::to_string(i) + " has " + std::to_string(o.numel()) +
                                            " elements (expected " + std::to_string(out_numel[i]) + ")");
                return 1;
            }
            std::memcpy(out_data[i], o.data_ptr<float>(), std::size_t(o.numel()) * sizeof(float));
        }
        return 0;
    } catch (const std::exception& e) {
        set_error(err, err_len, e.what());
    } catch (...) {
        set_error(err, err_len, "unknown error");
    }
    return 1;
}

__attribute__((visibility("default"))) void nf_aoti_close(void* handle) { delete static_cast<Handle*>(handle); }

}  // extern "C"
