// TensorRT backend (10.x and 11.x): runs the bundle's prebuilt engine of a graph (a plan written by `nextframe export
// --trt`, listed in the manifest's "tensorrt" section) chosen for this GPU's compute capability and the loaded
// TensorRT library's version (getInferLibVersion): the step graph's, and for a transformer bundle the kv graph's
// engine of the same precision, which writes the cache (make_trt_kv_engine). Named IO tensors only (TensorRT 10 and
// 11 have no binding indices): every IO tensor is checked against the graph's specs in the manifest (name, shape, dtype, linear layout, on the
// device), device buffers are cudaMalloc'ed once and bound once with setTensorAddress, and each run stages
// the caller's host inputs through pinned buffers, copies them in, enqueueV3, copies the outputs back and
// synchronizes the stream. Because every address is fixed, the copies plus enqueueV3 are captured into a
// CUDA graph after the first (warm) run and that graph is launched from then on; if capture fails the
// engine keeps calling enqueueV3 and note() says why.
//
// Nothing here depends on how the engine was built: TensorRT 11's strongly typed engines (precision set by
// the graph, export/onnx_lowp.py) keep the fp32/int64 IO the manifest lists, as the weakly typed 10.x ones did.
//
// Compiled only when CMake finds TensorRT >= 10 and the CUDA toolkit (NF_HAVE_TENSORRT). Uses only runtime
// APIs present and not deprecated in both 10.x and 11.x (compile-checked with -Wall -Wextra against the 10.0,
// 10.16 and 11.1 headers of NVIDIA/TensorRT and CUDA 13; linked against a stand-in libnvinfer.so.11 exporting
// the symbols TensorRT 11.4's Python bindings import). Never run: no GPU on the machines it was developed on.
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "bundle.h"
#include "common.h"
#include "engine.h"
#include "trt_support.h"

static_assert(NV_TENSORRT_MAJOR >= 10, "engine_trt.cpp needs TensorRT 10 or newer (named IO tensors, enqueueV3)");

namespace nf {

namespace {

using namespace trt;

class TrtEngine final : public Engine {
public:
    TrtEngine(const Bundle& bundle, const GraphInfo& graph, const EngineParams& params, const TrtEngineEntry& entry,
              const DeviceInfo& dev, const std::string& trt)
        : Engine(graph.inputs, graph.outputs, "trt"),
          precision_(entry.precision),
          device_(int(params.device_id)),
          use_graph_(cuda_graph_enabled(params.trt_cuda_graph)) {
        cuda_check(cudaSetDevice(device_), "cudaSetDevice(" + std::to_string(device_) + ")");
        const std::vector<char> plan = bundle.read_verified(entry.file);  // the bytes that were hashed
        runtime_.reset(nvinfer1::createInferRuntime(logger_));
        NF_CHECK(runtime_ != nullptr, "engine_trt: createInferRuntime failed" + logger_.suffix());
        engine_.reset(runtime_->deserializeCudaEngine(plan.data(), plan.size()));
        NF_CHECK(engine_ != nullptr, "engine_trt: cannot deserialize '" + entry.file + "'" + logger_.suffix());
        context_.reset(engine_->createExecutionContext());
        NF_CHECK(context_ != nullptr, "engine_trt: createExecutionContext failed" + logger_.suffix());
        cudaStream_t stream = nullptr;
        cuda_check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
        stream_.reset(stream);

        make_slots(entry.file);
        for (auto& s : slots_)
            NF_CHECK(context_->setTensorAddress(s.name.c_str(), s.device.get()),
                     "engine_trt: setTensorAddress('" + s.name + "') failed" + logger_.suffix());
        NF_CHECK(context_->allInputDimensionsSpecified(),
                 "engine_trt: '" + entry.file + "' still has unspecified input dimensions" + logger_.suffix());

        base_note_ = "trt: " + entry.file + " (" + entry.precision + ", " + entry.compute_capability + ", TensorRT " + trt +
                     " on " + dev.name + ")";
        set_note(base_note_ + (use_graph_ ? "; cuda graph after the first run" : "; cuda graph off"));
    }

    // The precision of the plan running (its kv engine is chosen to match).
    const std::string& precision() const { return precision_; }

    ~TrtEngine() override {
        // Members go in reverse order: graph, stream, buffers, context, engine, runtime, logger. Nothing may
        // throw here; a failed free at teardown is ignored.
        if (stream_ != nullptr) cudaStreamSynchronize(stream_.get());
    }

private:
    struct Slot {
        std::string name;
        bool input = true;
        int index = -1;  // position in inputs()/outputs(); -1: an engine output the manifest does not list (not read)
        DType host_dtype = DType::F32;
        nvinfer1::DataType dev_dtype = nvinfer1::DataType::kFLOAT;
        std::int64_t numel = 0;
        std::size_t bytes = 0;  // device (and staging) bytes
        DevicePtr device;
        PinnedPtr pinned;  // staging for the copies (pinned, so they can be captured into a CUDA graph)
    };

    void make_slots(const std::string& file) {
        const std::int32_t n = engine_->getNbIOTensors();
        std::vector<std::string> names;
        for (std::int32_t i = 0; i < n; ++i) names.emplace_back(engine_->getIOTensorName(i));
        auto in_engine = [&](const std::string& name) { return std::find(names.begin(), names.end(), name) != names.end(); };

        // Inputs first, so a dynamic dim (an engine built with a profile) is fixed before outputs are resolved.
        for (std::size_t i = 0; i < inputs().size(); ++i) {
            const TensorSpec& spec = inputs()[i];
            NF_CHECK_ARG(in_engine(spec.name), "engine_trt: " + file + " has no input '" + spec.name + "' (the manifest lists it)");
            NF_CHECK_ARG(engine_->getTensorIOMode(spec.name.c_str()) == nvinfer1::TensorIOMode::kINPUT,
                         "engine_trt: " + file + " tensor '" + spec.name + "' is not an input");
            const Shape declared = shape_of(engine_->getTensorShape(spec.name.c_str()));
            if (std::any_of(declared.begin(), declared.end(), [](std::int64_t d) { return d < 0; }))
                NF_CHECK_ARG(context_->setInputShape(spec.name.c_str(), dims_of(spec.shape)),
                             "engine_trt: " + file + " input '" + spec.name + "' " + shape_str(declared) +
                                 " does not accept the manifest's " + shape_str(spec.shape) + logger_.suffix());
            add_slot(file, spec, true, int(i));
        }
        for (std::size_t i = 0; i < outputs().size(); ++i) {
            const TensorSpec& spec = outputs()[i];
            NF_CHECK_ARG(in_engine(spec.name), "engine_trt: " + file + " has no output '" + spec.name + "' (the manifest lists it)");
            NF_CHECK_ARG(engine_->getTensorIOMode(spec.name.c_str()) == nvinfer1::TensorIOMode::kOUTPUT,
                         "engine_trt: " + file + " tensor '" + spec.name + "' is not an output");
            add_slot(file, spec, false, int(i));
        }
        // Every IO tensor needs an address: an input the manifest does not list cannot be fed (an error), an
        // extra output gets a device buffer that is never copied back.
        for (const auto& name : names) {
            const bool listed = std::any_of(slots_.begin(), slots_.end(), [&](const Slot& s) { return s.name == name; });
            if (listed) continue;
            NF_CHECK_ARG(engine_->getTensorIOMode(name.c_str()) == nvinfer1::TensorIOMode::kOUTPUT,
                         "engine_trt: " + file + " needs input '" + name + "' the manifest does not list");
            TensorSpec extra;
            extra.name = name;
            extra.shape = shape_of(context_->getTensorShape(name.c_str()));
            NF_CHECK_ARG(std::all_of(extra.shape.begin(), extra.shape.end(), [](std::int64_t d) { return d >= 0; }),
                         "engine_trt: " + file + " output '" + name + "' (not in the manifest) has a data-dependent shape " +
                             shape_str(extra.shape));
            add_slot(file, extra, false, -1);
        }
    }

    void add_slot(const std::string& file, const TensorSpec& spec, bool input, int index) {
        const char* name = spec.name.c_str();
        const char* kind = input ? "input" : "output";
        const nvinfer1::DataType t = engine_->getTensorDataType(name);
        // An output the manifest does not list (index -1) is never read: any allocatable type will do.
        NF_CHECK_ARG(index < 0 || compatible(spec.dtype, t), "engine_trt: " + file + " " + kind + " '" + spec.name + "' is " +
                                                                 trt_type_name(t) + " (manifest: " + dtype_name(spec.dtype) + ")");
        NF_CHECK_ARG(trt_type_size(t) > 0, "engine_trt: " + file + " " + kind + " '" + spec.name + "' has type " +
                                               trt_type_name(t) + ", which this backend does not allocate");
        const Shape got = shape_of(context_->getTensorShape(name));
        NF_CHECK_ARG(got == spec.shape, "engine_trt: " + file + " " + kind + " '" + spec.name + "' is " + shape_str(got) +
                                            " (manifest: " + shape_str(spec.shape) + ")");
        NF_CHECK_ARG(engine_->getTensorFormat(name) == nvinfer1::TensorFormat::kLINEAR,
                     "engine_trt: " + file + " " + kind + " '" + spec.name + "' is not in linear (row-major) layout");
        NF_CHECK_ARG(engine_->getTensorLocation(name) == nvinfer1::TensorLocation::kDEVICE,
                     "engine_trt: " + file + " " + kind + " '" + spec.name + "' is a host (shape) tensor");
        Slot s;
        s.name = spec.name;
        s.input = input;
        s.index = index;
        s.host_dtype = spec.dtype;
        s.dev_dtype = t;
        s.numel = shape_numel(spec.shape);
        s.bytes = std::size_t(s.numel) * trt_type_size(t);
        void* p = nullptr;
        cuda_check(cudaMalloc(&p, std::max<std::size_t>(s.bytes, 1)), "cudaMalloc(" + std::to_string(s.bytes) + " bytes) for '" + s.name + "'");
        s.device.reset(p);
        if (index >= 0) {
            void* h = nullptr;
            cuda_check(cudaMallocHost(&h, std::max<std::size_t>(s.bytes, 1)), "cudaMallocHost for '" + s.name + "'");
            s.pinned.reset(h);
        }
        slots_.push_back(std::move(s));
    }

    void bind(const Bindings& b) override {
        // Device buffers, staging and the CUDA graph do not depend on the caller's buffers: nothing to recapture.
        host_inputs_ = b.inputs;
        host_outputs_ = b.outputs;
    }

    static void stage_in(const Slot& s, const HostTensor& host) {
        if (s.dev_dtype == nvinfer1::DataType::kINT32) {
            const std::int64_t* src = host.data<std::int64_t>();
            auto* dst = static_cast<std::int32_t*>(s.pinned.get());
            for (std::int64_t i = 0; i < s.numel; ++i) {
                NF_CHECK_ARG(src[i] >= std::numeric_limits<std::int32_t>::min() && src[i] <= std::numeric_limits<std::int32_t>::max(),
                             "engine_trt: input '" + s.name + "' value " + std::to_string(src[i]) +
                                 " does not fit the engine's int32");
                dst[i] = std::int32_t(src[i]);
            }
        } else {
            std::memcpy(s.pinned.get(), host.raw(), s.bytes);
        }
    }

    static void stage_out(const Slot& s, HostTensor& host) {
        if (s.dev_dtype == nvinfer1::DataType::kINT32) {
            const auto* src = static_cast<const std::int32_t*>(s.pinned.get());
            std::int64_t* dst = host.data<std::int64_t>();
            for (std::int64_t i = 0; i < s.numel; ++i) dst[i] = src[i];
        } else {
            std::memcpy(host.raw(), s.pinned.get(), s.bytes);
        }
    }

    // Copies in, enqueueV3, copies out, all on stream_ (what the CUDA graph captures).
    void enqueue_all() {
        for (const auto& s : slots_)
            if (s.input)
                cuda_check(cudaMemcpyAsync(s.device.get(), s.pinned.get(), s.bytes, cudaMemcpyHostToDevice, stream_.get()),
                           "cudaMemcpyAsync to '" + s.name + "'");
        NF_CHECK(context_->enqueueV3(stream_.get()), "engine_trt: enqueueV3 failed" + logger_.suffix());
        for (const auto& s : slots_)
            if (!s.input && s.index >= 0)
                cuda_check(cudaMemcpyAsync(s.pinned.get(), s.device.get(), s.bytes, cudaMemcpyDeviceToHost, stream_.get()),
                           "cudaMemcpyAsync from '" + s.name + "'");
    }

    // After the first run (TensorRT has done its deferred set-up): record enqueue_all() into a graph.
    // As in trtexec, a failed capture is not an error: the engine keeps calling enqueueV3.
    void try_capture() {
        std::string why;
        cudaGraph_t graph = nullptr;
        cudaError_t e = cudaStreamBeginCapture(stream_.get(), cudaStreamCaptureModeThreadLocal);
        if (e == cudaSuccess) {
            try {
                enqueue_all();
            } catch (const RuntimeError& err) {
                why = err.what();
            }
            e = cudaStreamEndCapture(stream_.get(), &graph);
            if (why.empty() && e != cudaSuccess) why = std::string("cudaStreamEndCapture: ") + cudaGetErrorString(e);
            if (why.empty() && graph != nullptr) {
                cudaGraphExec_t exec = nullptr;
                e = cudaGraphInstantiateWithFlags(&exec, graph, 0);
                if (e == cudaSuccess)
                    graph_exec_.reset(exec);
                else
                    why = std::string("cudaGraphInstantiateWithFlags: ") + cudaGetErrorString(e);
            }
            if (graph != nullptr) cudaGraphDestroy(graph);
        } else {
            why = std::string("cudaStreamBeginCapture: ") + cudaGetErrorString(e);
        }
        cudaGetLastError();  // clear the (non-sticky) error a failed capture leaves behind
        set_note(base_note_ + (graph_exec_ != nullptr ? "; cuda graph captured" : "; cuda graph capture failed (" + why + "), enqueueV3 each run"));
    }

    void execute() override {
        cuda_check(cudaSetDevice(device_), "cudaSetDevice");  // the frame loop may call from its worker thread
        for (const auto& s : slots_)
            if (s.input) stage_in(s, *host_inputs_[std::size_t(s.index)]);
        if (graph_exec_ != nullptr) {
            cuda_check(cudaGraphLaunch(graph_exec_.get(), stream_.get()), "cudaGraphLaunch");
        } else {
            enqueue_all();
        }
        cuda_check(cudaStreamSynchronize(stream_.get()), "cudaStreamSynchronize");
        for (const auto& s : slots_)
            if (!s.input && s.index >= 0) stage_out(s, *host_outputs_[std::size_t(s.index)]);
        if (use_graph_ && !graph_tried_) {
            graph_tried_ = true;
            try_capture();
        }
    }

    // Declaration order is teardown order reversed: TensorRT objects are deleted with delete (TensorRT >= 10),
    // context before engine before runtime, and the logger outlives them all.
    TrtLogger logger_;
    std::unique_ptr<nvinfer1::IRuntime> runtime_;
    std::unique_ptr<nvinfer1::ICudaEngine> engine_;
    std::unique_ptr<nvinfer1::IExecutionContext> context_;
    std::vector<Slot> slots_;
    StreamPtr stream_;
    GraphExecPtr graph_exec_;
    std::vector<HostTensor*> host_inputs_, host_outputs_;
    std::string base_note_;
    std::string precision_;
    int device_ = 0;
    bool use_graph_ = true;
    bool graph_tried_ = false;
};

}  // namespace

std::unique_ptr<Engine> make_trt_engine(const Bundle& bundle, const EngineParams& params) {
    NF_CHECK_ARG(params.device_id >= 0, "engine_trt: device_id must be non-negative (got " + std::to_string(params.device_id) + ")");
    const DeviceInfo dev = device_info(int(params.device_id));
    const std::string trt = loaded_trt_release();
    const TrtEngineEntry& entry = choose_step_engine(bundle, dev, trt, params.trt_precision);
    return std::make_unique<TrtEngine>(bundle, bundle.step, params, entry, dev, trt);
}

std::unique_ptr<Engine> make_trt_kv_engine(const Bundle& bundle, const Engine& step_engine, const EngineParams& params) {
    const auto* step = dynamic_cast<const TrtEngine*>(&step_engine);
    if (step == nullptr || !bundle.has_kv_graph()) return nullptr;
    const DeviceInfo dev = device_info(int(params.device_id));
    const std::string trt = loaded_trt_release();
    const TrtEngineEntry* entry = find_engine(bundle, "kv", dev, trt, step->precision(), nullptr);
    if (entry == nullptr) return nullptr;  // the step engine writes the cache (frame_loop.h)
    return std::make_unique<TrtEngine>(bundle, bundle.kv, params, *entry, dev, trt);
}

}  // namespace nf
