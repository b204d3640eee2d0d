#include "engine.h"

#include "bundle.h"
#include "common.h"

namespace nf {

// engine_ort.cpp
std::unique_ptr<Engine> make_ort_engine(const Bundle& bundle, const GraphInfo& graph, const EngineParams& params);
// engine_aoti.cpp (nullptr for a kv graph without a package)
std::unique_ptr<Engine> make_aoti_engine(const Bundle& bundle, const std::string& graph_name, const EngineParams& params);
#ifdef NF_HAVE_TENSORRT
// engine_trt.cpp (compiled only when CMake found TensorRT and CUDA)
std::unique_ptr<Engine> make_trt_engine(const Bundle& bundle, const EngineParams& params);
std::unique_ptr<Engine> make_trt_kv_engine(const Bundle& bundle, const Engine& step_engine, const EngineParams& params);
#endif

bool trt_built() {
#ifdef NF_HAVE_TENSORRT
    return true;
#else
    return false;
#endif
}

Backend parse_backend(const std::string& s) {
    if (s == "auto") return Backend::Auto;
    if (s == "ort-cpu") return Backend::OrtCpu;
    if (s == "ort-cuda") return Backend::OrtCuda;
    if (s == "trt") return Backend::Trt;
    if (s == "aoti") return Backend::Aoti;
    if (s == "aoti-cuda") return Backend::AotiCuda;
    throw InvalidArgument("engine: unknown backend '" + s + "' (expected auto, ort-cpu, ort-cuda, trt, aoti, aoti-cuda)");
}

const char* backend_name(Backend b) {
    switch (b) {
        case Backend::Auto: return "auto";
        case Backend::OrtCpu: return "ort-cpu";
        case Backend::OrtCuda: return "ort-cuda";
        case Backend::Trt: return "trt";
        case Backend::Aoti: return "aoti";
        case Backend::AotiCuda: return "aoti-cuda";
    }
    return "?";
}

Engine::Engine(std::vector<TensorSpec> inputs, std::vector<TensorSpec> outputs, std::string name)
    : inputs_(std::move(inputs)), outputs_(std::move(outputs)), name_(std::move(name)) {}

namespace {

// A buffer's shape against a spec whose -1 dims are dynamic.
bool fits(const Shape& got, const Shape& want) {
    if (got.size() != want.size()) return false;
    for (std::size_t d = 0; d < got.size(); ++d)
        if (want[d] >= 0 && got[d] != want[d]) return false;
    return true;
}

}  // namespace

bool Engine::same_as_bound(const Bindings& b) const {
    if (bound_.size() != b.inputs.size() + b.outputs.size()) return false;
    std::size_t k = 0;
    for (const auto* group : {&b.inputs, &b.outputs}) {
        for (const HostTensor* t : *group) {
            if (t == nullptr || bound_[k] != t->raw() || bound_shapes_[k] != t->shape()) return false;
            ++k;
        }
    }
    return true;
}

void Engine::run(const Bindings& b) {
    if (!same_as_bound(b)) {
        auto check = [](const std::vector<HostTensor*>& got, const std::vector<TensorSpec>& want, const char* kind) {
            NF_CHECK_ARG(got.size() == want.size(), std::string("engine: ") + std::to_string(got.size()) + " " + kind +
                                                        " buffers bound (expected " + std::to_string(want.size()) + ")");
            for (std::size_t i = 0; i < got.size(); ++i) {
                NF_CHECK_ARG(got[i] != nullptr && !got[i]->empty(),
                             std::string("engine: ") + kind + " '" + want[i].name + "' has no buffer");
                NF_CHECK_ARG(got[i]->dtype() == want[i].dtype && fits(got[i]->shape(), want[i].shape),
                             std::string("engine: ") + kind + " '" + want[i].name + "' bound to " +
                                 dtype_name(got[i]->dtype()) + shape_str(got[i]->shape()) + " (expected " +
                                 dtype_name(want[i].dtype) + shape_str(want[i].shape) + ")");
            }
        };
        check(b.inputs, inputs_, "input");
        check(b.outputs, outputs_, "output");
        bind(b);
        bound_.clear();
        bound_shapes_.clear();
        for (const auto* group : {&b.inputs, &b.outputs}) {
            for (const HostTensor* t : *group) {
                bound_.push_back(t->raw());
                bound_shapes_.push_back(t->shape());
            }
        }
        ++n_binds_;
    }
    execute();
}

std::unique_ptr<Engine> make_engine(const Bundle& bundle, const EngineParams& params) {
    NF_CHECK_ARG(params.threads >= 1, "engine: threads must be at least 1 (got " + std::to_string(params.threads) + ")");
    switch (params.backend) {
        case Backend::Auto:
        case Backend::OrtCpu:
        case Backend::OrtCuda:
            return make_ort_engine(bundle, bundle.step, params);
        case Backend::Trt:
#ifdef NF_HAVE_TENSORRT
            return make_trt_engine(bundle, params);
#else
            throw RuntimeError("engine: backend 'trt' not built (TensorRT was not found at build time; rebuild with "
                               "-DNF_WITH_TENSORRT=ON -DTENSORRT_ROOT=<TensorRT 10 or 11 dir>)");
#endif
        case Backend::Aoti:
        case Backend::AotiCuda:
            return make_aoti_engine(bundle, "step", params);
    }
    throw InvalidArgument("engine: unknown backend");
}

namespace {

// Params for a further ONNX Runtime engine on the provider step_engine runs on (so "auto" cannot split one
// loop's graphs across devices); false when the step engine is not ONNX Runtime.
bool same_ort_provider(const Engine& step_engine, const EngineParams& params, EngineParams* out) {
    *out = params;
    if (step_engine.name() == "ort-cpu") out->backend = Backend::OrtCpu;
    else if (step_engine.name() == "ort-cuda") out->backend = Backend::OrtCuda;
    else return false;
    return true;
}

}  // namespace

std::unique_ptr<Engine> make_kv_engine(const Bundle& bundle, const Engine& step_engine, const EngineParams& params) {
    EngineParams p;
    if (!bundle.has_kv_graph()) return nullptr;
#ifdef NF_HAVE_TENSORRT
    if (step_engine.name() == "trt") return make_trt_kv_engine(bundle, step_engine, params);
#endif
    if (step_engine.name() == "aoti" || step_engine.name() == "aoti-cuda") {
        p = params;
        p.backend = step_engine.name() == "aoti" ? Backend::Aoti : Backend::AotiCuda;
        return make_aoti_engine(bundle, "kv", p);
    }
    if (!same_ort_provider(step_engine, params, &p)) return nullptr;
    return make_ort_engine(bundle, bundle.kv, p);
}

std::vector<std::unique_ptr<Engine>> make_group_engines(const Bundle& bundle, const Engine& step_engine,
                                                        const EngineParams& params) {
    std::vector<std::unique_ptr<Engine>> out;
    EngineParams p;
    if (!same_ort_provider(step_engine, params, &p)) return out;
    for (std::size_t i = 0; i < bundle.step_groups.size(); ++i) out.push_back(make_ort_engine(bundle, bundle.step_group_graph(i), p));
    return out;
}

}  // namespace nf
