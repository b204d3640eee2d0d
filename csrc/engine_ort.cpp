// ONNX Runtime backend: one session on the bundle's step graph, inputs and outputs bound as OrtValues
// over the caller's HostTensors (created once per bind, reused by every run, so a run allocates no tensor
// on our side). Session options: intra-op threads from params, inter-op 1, sequential execution,
// ORT_ENABLE_ALL. The session's declared io is checked against the manifest before the first run.
#include <algorithm>
#include <cstring>

#include "bundle.h"
#include "common.h"
#include "engine.h"
#include "ort_api.h"

namespace nf {

namespace {

constexpr const char* kCudaProvider = "CUDAExecutionProvider";

DType from_ort(ONNXTensorElementDataType t, const std::string& what) {
    if (t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) return DType::F32;
    if (t == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64) return DType::I64;
    throw InvalidArgument("engine_ort: " + what + " has ONNX element type " + std::to_string(int(t)) +
                          " (expected float32 or int64)");
}

struct AllocatedName {
    char* p = nullptr;
    OrtAllocator* alloc = nullptr;
    ~AllocatedName() {
        // A destructor cannot throw; freeing a name the allocator gave us does not fail in practice.
        if (p != nullptr) OrtStatusPtr status(Ort::GetApi().AllocatorFree(alloc, p));
    }
};

// The session's declared io, in the session's order.
std::vector<TensorSpec> session_specs(const OrtApi& api, OrtSession* s, bool inputs) {
    OrtAllocator* alloc = nullptr;
    ort_check(api.GetAllocatorWithDefaultOptions(&alloc), "engine_ort: GetAllocatorWithDefaultOptions failed");
    std::size_t n = 0;
    ort_check(inputs ? api.SessionGetInputCount(s, &n) : api.SessionGetOutputCount(s, &n), "engine_ort: io count failed");
    std::vector<TensorSpec> specs;
    for (std::size_t i = 0; i < n; ++i) {
        TensorSpec spec;
        AllocatedName name;
        name.alloc = alloc;
        ort_check(inputs ? api.SessionGetInputName(s, i, alloc, &name.p) : api.SessionGetOutputName(s, i, alloc, &name.p),
                  "engine_ort: io name failed");
        spec.name = name.p;
        OrtTypeInfo* raw_info = nullptr;
        ort_check(inputs ? api.SessionGetInputTypeInfo(s, i, &raw_info) : api.SessionGetOutputTypeInfo(s, i, &raw_info),
                  "engine_ort: io type info failed");
        OrtTypeInfoPtr info(raw_info);
        const OrtTensorTypeAndShapeInfo* tinfo = nullptr;
        ort_check(api.CastTypeInfoToTensorInfo(info.get(), &tinfo), "engine_ort: io type info failed");
        NF_CHECK_ARG(tinfo != nullptr, "engine_ort: graph io '" + spec.name + "' is not a tensor");
        ONNXTensorElementDataType et{};
        ort_check(api.GetTensorElementType(tinfo, &et), "engine_ort: io element type failed");
        spec.dtype = from_ort(et, "graph io '" + spec.name + "'");
        std::size_t nd = 0;
        ort_check(api.GetDimensionsCount(tinfo, &nd), "engine_ort: io rank failed");
        spec.shape.assign(nd, 0);
        ort_check(api.GetDimensions(tinfo, spec.shape.data(), nd), "engine_ort: io dims failed");
        specs.push_back(std::move(spec));
    }
    return specs;
}

// Every manifest spec must exist in the graph with the same dtype and shape (a dynamic dim, -1, accepts
// the manifest's value), and the graph must need no input the manifest does not list.
void check_against_manifest(const std::vector<TensorSpec>& graph, const std::vector<TensorSpec>& manifest,
                            const std::string& file, const char* kind) {
    for (const auto& m : manifest) {
        auto it = std::find_if(graph.begin(), graph.end(), [&](const TensorSpec& g) { return g.name == m.name; });
        NF_CHECK_ARG(it != graph.end(), "engine_ort: " + file + " has no " + kind + " '" + m.name + "' (the manifest lists it)");
        bool same = it->dtype == m.dtype && it->shape.size() == m.shape.size();
        for (std::size_t d = 0; same && d < m.shape.size(); ++d)
            same = it->shape[d] < 0 || m.shape[d] < 0 || it->shape[d] == m.shape[d];
        NF_CHECK_ARG(same, "engine_ort: " + file + " " + kind + " '" + m.name + "' is " + dtype_name(it->dtype) +
                               shape_str(it->shape) + " (manifest: " + dtype_name(m.dtype) + shape_str(m.shape) + ")");
    }
    for (const auto& g : graph) {
        const bool listed = std::any_of(manifest.begin(), manifest.end(), [&](const TensorSpec& m) { return m.name == g.name; });
        NF_CHECK_ARG(listed || std::string(kind) == "output",
                     "engine_ort: " + file + " needs " + kind + " '" + g.name + "' the manifest does not list");
    }
}

}  // namespace

OrtSessionPtr make_ort_session(const OrtApi& api, const OrtSharedEnv& env, const std::vector<char>& model,
                               const std::string& file, const EngineParams& params, bool cuda,
                               const std::vector<std::pair<std::string, std::string>>& cuda_options) {
    OrtSessionOptions* raw_opts = nullptr;
    ort_check(api.CreateSessionOptions(&raw_opts), "engine_ort: CreateSessionOptions failed");
    OrtSessionOptionsPtr opts(raw_opts);
    if (params.threads == env.global_intra_threads) {
        ort_check(api.DisablePerSessionThreads(opts.get()), "engine_ort: DisablePerSessionThreads failed");
    } else {
        ort_check(api.SetIntraOpNumThreads(opts.get(), int(params.threads)), "engine_ort: SetIntraOpNumThreads failed");
        ort_check(api.SetInterOpNumThreads(opts.get(), 1), "engine_ort: SetInterOpNumThreads failed");
        // A session of its own pool sits beside the step/kv sessions' pools of the same Session: spinning
        // workers of the idle pool would take the cores the running one needs (measured: a 2-thread Session
        // opened after a 1-thread one ran 12.7 ms per frame against 9.1 ms on the shared pool).
        ort_check(api.AddSessionConfigEntry(opts.get(), "session.intra_op.allow_spinning", "0"),
                  "engine_ort: AddSessionConfigEntry failed");
    }
    ort_check(api.SetSessionExecutionMode(opts.get(), ORT_SEQUENTIAL), "engine_ort: SetSessionExecutionMode failed");
    ort_check(api.SetSessionGraphOptimizationLevel(opts.get(), ORT_ENABLE_ALL),
              "engine_ort: SetSessionGraphOptimizationLevel failed");
    if (cuda) {
        OrtCUDAProviderOptionsV2* raw_cuda = nullptr;
        ort_check(api.CreateCUDAProviderOptions(&raw_cuda), "engine_ort: CUDA provider options failed");
        OrtCudaOptionsPtr cuda_opts(raw_cuda);
        const std::string device = std::to_string(params.device_id);
        std::vector<const char*> keys = {"device_id"}, values = {device.c_str()};
        for (const auto& kv : cuda_options) {
            keys.push_back(kv.first.c_str());
            values.push_back(kv.second.c_str());
        }
        ort_check(api.UpdateCUDAProviderOptions(cuda_opts.get(), keys.data(), values.data(), keys.size()),
                  "engine_ort: CUDA provider options failed");
        ort_check(api.SessionOptionsAppendExecutionProvider_CUDA_V2(opts.get(), cuda_opts.get()),
                  "engine_ort: cannot append the CUDA execution provider");
    }
    // From memory (read_listed_file): the bytes ORT parses are the bytes just hashed, and a graph cannot pull in
    // files the manifest does not list (ONNX external data needs a model path, which an in-memory graph has none of).
    OrtSession* raw_session = nullptr;
    try {
        ort_check(api.CreateSessionFromArray(env.env.get(), model.data(), model.size(), opts.get(), &raw_session),
                  "engine_ort: cannot load graph '" + file + "'");
    } catch (const RuntimeError& e) {
        const std::string msg = e.what();
        if (msg.find("xternal") == std::string::npos) throw;
        throw RuntimeError(msg + " (bundle graphs must be self-contained: ONNX external data is not loaded)");
    }
    return OrtSessionPtr(raw_session);
}

void check_ort_io(const OrtApi& api, OrtSession* session, const GraphInfo& graph) {
    check_against_manifest(session_specs(api, session, true), graph.inputs, graph.file, "input");
    check_against_manifest(session_specs(api, session, false), graph.outputs, graph.file, "output");
}

namespace {

class OrtEngine final : public Engine {
public:
    OrtEngine(const std::vector<char>& model, const GraphInfo& graph, const EngineParams& params, bool cuda, std::string note)
        : Engine(graph.inputs, graph.outputs, cuda ? "ort-cuda" : "ort-cpu"),
          api_(ort_api(params.ort_lib)),
          env_(ort_env(params.threads)) {
        set_note(std::move(note));
        session_ = make_ort_session(api_, env_, model, graph.file, params, cuda);

        check_ort_io(api_, session_.get(), graph);

        OrtMemoryInfo* raw_mem = nullptr;
        ort_check(api_.CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &raw_mem),
                  "engine_ort: CreateCpuMemoryInfo failed");
        memory_.reset(raw_mem);
        for (const auto& s : inputs()) input_names_.push_back(s.name.c_str());
        for (const auto& s : outputs()) output_names_.push_back(s.name.c_str());
    }

private:
    OrtValuePtr wrap(HostTensor& t) {
        OrtValue* v = nullptr;
        ort_check(api_.CreateTensorWithDataAsOrtValue(memory_.get(), t.raw(), t.nbytes(), t.shape().data(),
                                                      t.shape().size(), ort_element_type(t.dtype()), &v),
                  "engine_ort: CreateTensorWithDataAsOrtValue failed");
        return OrtValuePtr(v);
    }

    void bind(const Bindings& b) override {
        owned_.clear();
        input_values_.clear();
        output_values_.clear();
        for (HostTensor* t : b.inputs) {
            owned_.push_back(wrap(*t));
            input_values_.push_back(owned_.back().get());
        }
        for (HostTensor* t : b.outputs) {
            owned_.push_back(wrap(*t));
            output_values_.push_back(owned_.back().get());
        }
    }

    void execute() override {
        // Outputs are pre-created over our buffers, so ORT writes the results into them.
        ort_check(api_.Run(session_.get(), nullptr, input_names_.data(), input_values_.data(), input_values_.size(),
                           output_names_.data(), output_names_.size(), output_values_.data()),
                  "engine_ort: Run failed");
    }

    const OrtApi& api_;
    OrtSharedEnv env_;  // outlives session_ (declared first, destroyed last)
    OrtSessionPtr session_;
    OrtMemoryInfoPtr memory_;
    std::vector<const char*> input_names_, output_names_;  // point into inputs()/outputs() names
    std::vector<OrtValuePtr> owned_;
    std::vector<const OrtValue*> input_values_;
    std::vector<OrtValue*> output_values_;
};

bool has_provider(const char* name) {
    for (const auto& p : ort_available_providers())
        if (p == name) return true;
    return false;
}

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
}

}  // namespace

void require_ort_cuda_provider(const std::string& who) {
    NF_CHECK(has_provider(kCudaProvider), who + ": " + std::string(kCudaProvider) + " not in onnxruntime " + ort_version() +
                                              " at '" + ort_lib_path() + "' (available: " + join(ort_available_providers()) +
                                              "); install onnxruntime-gpu in an environment without onnxruntime");
}

std::unique_ptr<Engine> make_ort_engine_from_bytes(const std::vector<char>& model, const GraphInfo& graph,
                                                   const EngineParams& params) {
    ort_api(params.ort_lib);
    if (params.backend == Backend::OrtCpu) return std::make_unique<OrtEngine>(model, graph, params, false, "");
    const bool cuda_built = has_provider(kCudaProvider);
    if (params.backend == Backend::OrtCuda) {
        require_ort_cuda_provider("engine_ort");
        return std::make_unique<OrtEngine>(model, graph, params, true, "");
    }
    // auto
    if (!cuda_built) {
        return std::make_unique<OrtEngine>(model, graph, params, false,
                                           "auto: onnxruntime " + ort_version() + " has no " + kCudaProvider);
    }
    try {
        return std::make_unique<OrtEngine>(model, graph, params, true, "auto: CUDA session created");
    } catch (const RuntimeError& e) {
        // No usable device: fall back to CPU and say why (the reason is kept, not dropped).
        return std::make_unique<OrtEngine>(model, graph, params, false, std::string("auto: CUDA unusable (") + e.what() + ")");
    }
}

std::unique_ptr<Engine> make_ort_engine(const Bundle& bundle, const GraphInfo& graph, const EngineParams& params) {
    ort_api(params.ort_lib);  // a missing library is reported before the graph is read
    return make_ort_engine_from_bytes(bundle.read_verified(graph.file), graph, params);
}

}  // namespace nf
