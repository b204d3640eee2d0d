// Backend "aoti" / "aoti-cuda": a graph's AOTInductor package (exported beside the ONNX graphs by
// `nextframe export --aoti`), run through libtorch. The core never links torch: the torch side lives in
// libnf_aoti.so (csrc/aoti_plugin.cpp), dlopened here on first use behind a C ABI, so a runtime-only install
// without torch loads and runs every other backend and reports this one as unavailable in one line.
#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "bundle.h"
#include "common.h"
#include "aoti_api.h"
#include "engine.h"

namespace nf {

namespace {

// Next to the module this code is linked into (the Python extension _core, or a test binary).
std::string default_plugin_path() {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&default_plugin_path), &info) == 0 || info.dli_fname == nullptr) return "libnf_aoti.so";
    std::string self = info.dli_fname;
    const std::size_t slash = self.rfind('/');
    return (slash == std::string::npos ? std::string() : self.substr(0, slash + 1)) + "libnf_aoti.so";
}

template <typename F>
void load_symbol(void* lib, const char* name, F& f) {
    f = reinterpret_cast<F>(dlsym(lib, name));
}

}  // namespace

const AotiApi& aoti_api() {
    static std::once_flag once;
    static AotiApi api;
    std::call_once(once, [] {
        const char* env = std::getenv("NEXTFRAME_AOTI_LIB");
        api.path = env != nullptr && *env != '\0' ? env : default_plugin_path();
        // RTLD_GLOBAL: libtorch's own dlopen of the package's .so resolves its symbols through the global scope.
        // NEXTFRAME_AOTI_RTLD=local keeps the plugin's libtorch out of it (a suspect of the crash seen on an H200:
        // the package's inline symbols then bind to their own copies; benchmarks/device/run.sh tries both)
        const char* rtld = std::getenv("NEXTFRAME_AOTI_RTLD");
        const bool local = rtld != nullptr && std::string(rtld) == "local";
        void* lib = dlopen(api.path.c_str(), RTLD_NOW | (local ? RTLD_LOCAL : RTLD_GLOBAL));
        if (lib == nullptr) {
            const char* e = dlerror();
            api.error = e != nullptr ? e : "dlopen failed";
            return;
        }
        load_symbol(lib, "nf_aoti_torch_version", api.version);
        load_symbol(lib, "nf_aoti_open", api.open);
        load_symbol(lib, "nf_aoti_run", api.run);
        load_symbol(lib, "nf_aoti_close", api.close);
        if (!api.version || !api.open || !api.run || !api.close) {
            api.error = api.path + " lacks the nf_aoti_* entry points";
            api.open = nullptr;
            return;
        }
        api.torch_version = api.version();
        // the device loop's entry points (a plugin older than them runs engines only)
        load_symbol(lib, "nf_aoti_loop_cuda_graphs", api.loop_cuda_graphs);
        load_symbol(lib, "nf_aoti_loop_open2", api.loop_open);
        load_symbol(lib, "nf_aoti_loop_cache", api.loop_cache);
        load_symbol(lib, "nf_aoti_loop_reset", api.loop_reset);
        load_symbol(lib, "nf_aoti_loop_step", api.loop_step);
        load_symbol(lib, "nf_aoti_loop_frame", api.loop_frame);
        load_symbol(lib, "nf_aoti_loop_replays", api.loop_replays);
        load_symbol(lib, "nf_aoti_loop_close", api.loop_close);
        if (!api.loop_cuda_graphs || !api.loop_open || !api.loop_cache || !api.loop_reset || !api.loop_step || !api.loop_frame ||
            !api.loop_replays || !api.loop_close)
            api.loop_open = nullptr;
    });
    return api;
}

namespace {

class AotiEngine final : public Engine {
public:
    AotiEngine(const Bundle& bundle, const GraphInfo& graph, const AotiPackage& package, const std::string& device,
               std::int64_t threads, const AotiApi& api)
        : Engine(graph.inputs, graph.outputs, device == "cpu" ? "aoti" : "aoti-cuda"), api_(api) {
        char err[1024] = {0};
        handle_ = api_.open(bundle.path_of(package.file).c_str(), device.c_str(), device == "cpu" ? threads : 0, err,
                            sizeof(err));
        if (handle_ == nullptr)
            throw RuntimeError("engine: aoti could not load " + package.file + " on " + device + ": " + err);
        set_note("AOTInductor package " + package.file + " (torch " + api_.torch_version + ")");
    }
    ~AotiEngine() override {
        if (handle_ != nullptr) api_.close(handle_);
    }

protected:
    void bind(const Bindings& b) override {
        in_data_.clear(); in_dtype_.clear(); in_rank_.clear(); in_shape_.clear(); out_data_.clear(); out_numel_.clear();
        for (const HostTensor* t : b.inputs) {
            in_data_.push_back(const_cast<void*>(t->raw()));
            in_dtype_.push_back(t->dtype() == DType::I64 ? 1 : 0);
            in_rank_.push_back(int(t->shape().size()));
            in_shape_.push_back(t->shape().data());
        }
        for (HostTensor* t : b.outputs) {
            NF_CHECK_ARG(t->dtype() == DType::F32, "engine: aoti writes float32 outputs only");
            out_data_.push_back(const_cast<void*>(t->raw()));
            out_numel_.push_back(t->numel());
        }
    }
    void execute() override {
        char err[1024] = {0};
        if (api_.run(handle_, int(in_data_.size()), in_data_.data(), in_dtype_.data(), in_rank_.data(), in_shape_.data(),
                     int(out_data_.size()), out_data_.data(), out_numel_.data(), err, sizeof(err)) != 0)
            throw RuntimeError(std::string("engine: aoti run failed: ") + err);
    }

private:
    const AotiApi& api_;
    void* handle_ = nullptr;
    std::vector<void*> in_data_, out_data_;
    std::vector<int> in_dtype_, in_rank_;
    std::vector<const std::int64_t*> in_shape_;
    std::vector<std::int64_t> out_numel_;
};

}  // namespace

bool aoti_available(std::string* why) {
    const AotiApi& api = aoti_api();
    if (api.open == nullptr && why != nullptr)
        *why = "backend 'aoti' unavailable: " + api.error +
               " (it needs torch's C++ library at build and run time: the development install, `make venv`, builds "
               "libnf_aoti.so where it finds torch; or set NEXTFRAME_AOTI_LIB)";
    return api.open != nullptr;
}

std::unique_ptr<Engine> make_aoti_engine(const Bundle& bundle, const std::string& graph_name, const EngineParams& params) {
    const std::string device = params.backend == Backend::AotiCuda ? "cuda" : "cpu";
    const AotiPackage* package = bundle.find_aoti_package(graph_name, device);
    if (package == nullptr) {
        NF_CHECK_ARG(graph_name != "step", "bundle: no AOTInductor package of the step graph for " + device +
                                               " (re-export with `nextframe export --aoti " + device + "`)");
        return nullptr;
    }
    std::string why;
    if (!aoti_available(&why)) throw RuntimeError("engine: " + why);
    const AotiApi& api = aoti_api();
    NF_CHECK_ARG(package->torch_version.rfind(api.torch_version, 0) == 0,
                 "bundle: AOTInductor package " + package->file + " was built by torch " + package->torch_version +
                     ", the aoti backend runs torch " + api.torch_version + " (re-export with this torch)");
    const GraphInfo& graph = graph_name == "step" ? bundle.step : bundle.kv;
    const std::string where = device == "cpu" ? "cpu" : "cuda:" + std::to_string(params.device_id);
    return std::make_unique<AotiEngine>(bundle, graph, *package, where, params.threads, api);
}

}  // namespace nf
