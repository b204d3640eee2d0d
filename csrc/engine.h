// Engine: one loaded graph (the bundle's step graph) behind a backend-neutral interface. No ORT or TRT
// type appears here; backends live in engine_<backend>.cpp and are chosen only by make_engine().
//
// The caller owns every buffer. run(bindings) validates and binds them on the first call (and again only if
// a buffer changes, counted by n_binds()), so a frame loop that keeps its buffers binds once and each
// later run allocates nothing on our side.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tensor.h"

namespace nf {

struct Bundle;

enum class Backend { Auto, OrtCpu, OrtCuda, Trt, Aoti, AotiCuda };

// "auto" | "ort-cpu" | "ort-cuda" | "trt" | "aoti" | "aoti-cuda"; anything else is nf::InvalidArgument. "trt" and
// "aoti" parse in every build; make_engine() says when the TensorRT backend was not compiled in (trt_built()) or
// the AOTInductor plugin cannot be loaded (aoti_available()).
Backend parse_backend(const std::string& s);
const char* backend_name(Backend b);

struct EngineParams {
    Backend backend = Backend::Auto;
    std::int64_t threads = 2;  // intra-op threads (inter-op is 1: the graph runs sequentially)
    std::string ort_lib;       // libonnxruntime path; empty: NEXTFRAME_ORT_LIB, then default names
    std::int64_t device_id = 0;
    // trt: the precision of the bundle's TensorRT engine to run (fp32, fp16, bf16, fp8, int8); empty: the
    // first engine in the manifest's "tensorrt" section built for this GPU and TensorRT version.
    std::string trt_precision;
    // trt: capture host->device copies, enqueueV3 and device->host copies into a CUDA graph after the first
    // (warm) run and launch that graph from then on. $NEXTFRAME_TRT_CUDA_GRAPH=0 turns it off too.
    bool trt_cuda_graph = true;
};

// True when the TensorRT backend (engine_trt.cpp) was compiled in (CMake found TensorRT >= 10 and CUDA).
bool trt_built();
// True when the AOTInductor plugin (libnf_aoti.so beside the core, or $NEXTFRAME_AOTI_LIB) loads; else why says
// why in one line (engine_aoti.cpp).
bool aoti_available(std::string* why = nullptr);

// Buffers for a graph's inputs and outputs, in the order of Engine::inputs() / outputs().
struct Bindings {
    std::vector<HostTensor*> inputs;
    std::vector<HostTensor*> outputs;
};

class Engine {
public:
    virtual ~Engine() = default;
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    const std::vector<TensorSpec>& inputs() const { return inputs_; }
    const std::vector<TensorSpec>& outputs() const { return outputs_; }
    // The backend actually running: "ort-cpu", "ort-cuda", "fake", ...
    const std::string& name() const { return name_; }
    // Why "auto" chose what it chose (empty when nothing to say).
    const std::string& note() const { return note_; }
    std::int64_t n_binds() const { return n_binds_; }

    // Runs the graph once. Not thread-safe: one caller at a time.
    void run(const Bindings& b);

protected:
    Engine(std::vector<TensorSpec> inputs, std::vector<TensorSpec> outputs, std::string name);
    void set_note(std::string note) { note_ = std::move(note); }
    // Called when the bound buffers change; b matches the specs (checked).
    virtual void bind(const Bindings& b) = 0;
    virtual void execute() = 0;

private:
    bool same_as_bound(const Bindings& b) const;
    std::vector<TensorSpec> inputs_, outputs_;
    std::string name_, note_;
    std::vector<const void*> bound_;  // data pointers of the last bind: inputs then outputs
    std::vector<Shape> bound_shapes_;  // and their shapes (a dynamic dim may change between runs)
    std::int64_t n_binds_ = 0;
};

// The ONNX Runtime library the ORT backend uses (loading it if not yet loaded: see ort_api.h for the
// search order). Throws nf::RuntimeError "ort_api: ..." when none loads. Defined in ort_api.cpp.
struct OrtLibraryInfo {
    std::string path;
    std::string version;
    std::vector<std::string> providers;  // e.g. {"CPUExecutionProvider"}
};
OrtLibraryInfo ort_library_info(const std::string& ort_lib = "");

// The only place backends are chosen. Auto: ORT with CUDA when the loaded library has the CUDA provider
// and a session can be made on the device, else ORT CPU (note() says why); auto never picks TensorRT.
// Trt: the bundle's prebuilt TensorRT engine for this GPU (engine_trt.cpp); nf::RuntimeError when the
// backend was not compiled in. Aoti / AotiCuda: the bundle's AOTInductor package of the step graph for the CPU /
// the GPU (engine_aoti.cpp).
std::unique_ptr<Engine> make_engine(const Bundle& bundle, const EngineParams& params);
// An ONNX Runtime engine (ort-cpu, ort-cuda or auto as params say) for a graph given as verified bytes (other bundle
// kinds: ar_bundle.h). A spec dim of -1 in graph.inputs/outputs is dynamic: any positive size binds.
struct GraphInfo;
std::unique_ptr<Engine> make_ort_engine_from_bytes(const std::vector<char>& model, const GraphInfo& graph,
                                                   const EngineParams& params);
// An engine for the bundle's kv graph on the provider step_engine runs on, or nullptr when the bundle has
// no kv graph (the frame loop then writes the cache with the step graph); an AOTInductor step engine gets the
// bundle's kv package for its device, if it has one; a TensorRT step engine the bundle's kv engine of the same
// precision for this GPU and TensorRT, if it has one (else nullptr).
std::unique_ptr<Engine> make_kv_engine(const Bundle& bundle, const Engine& step_engine, const EngineParams& params);
// One engine per entry of the bundle's step_groups, on the provider step_engine runs on; empty when the bundle
// has none or the step engine is not ONNX Runtime (a TensorRT plan is built from one graph: the step graph).
std::vector<std::unique_ptr<Engine>> make_group_engines(const Bundle& bundle, const Engine& step_engine,
                                                        const EngineParams& params);

}  // namespace nf
