#include "trt_device_loop.h"

#include "common.h"

#ifndef NF_HAVE_TENSORRT

namespace nf {

struct TrtDeviceLoop::Impl {};

namespace {
[[noreturn]] void not_built() {
    throw RuntimeError("trt_device_loop: not built (TensorRT was not found at build time; rebuild with "
                       "-DNF_WITH_TENSORRT=ON -DTENSORRT_ROOT=<TensorRT 10 or 11 dir>)");
}
}  // namespace

TrtDeviceLoop::TrtDeviceLoop(const Bundle&, const TrtDeviceLoopParams&) { not_built(); }
TrtDeviceLoop::~TrtDeviceLoop() = default;
void TrtDeviceLoop::reset(const float*, std::int64_t, const std::int64_t*) { not_built(); }
void TrtDeviceLoop::step(std::int64_t, float*) { not_built(); }
void TrtDeviceLoop::frame(float*) { not_built(); }
std::int64_t TrtDeviceLoop::frame_numel() const { not_built(); }
std::int64_t TrtDeviceLoop::n_actions() const { not_built(); }
std::int64_t TrtDeviceLoop::no_action() const { not_built(); }
std::int64_t TrtDeviceLoop::context_depth() const { not_built(); }
const std::string& TrtDeviceLoop::device() const { not_built(); }
bool TrtDeviceLoop::cuda_graph() const { not_built(); }
std::int64_t TrtDeviceLoop::steps() const { not_built(); }
const std::string& TrtDeviceLoop::engine_file() const { not_built(); }

}  // namespace nf

#else  // NF_HAVE_TENSORRT

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "frame_history.h"
#include "frame_loop.h"
#include "noise.h"
#include "trt_support.h"

namespace nf {

namespace {

using namespace trt;

// One IO tensor of the frame engine in device memory (int tensors as the engine keeps them: int64 or int32).
struct Buffer {
    std::string name;
    nvinfer1::DataType type = nvinfer1::DataType::kFLOAT;
    std::int64_t numel = 0;
    std::size_t bytes = 0;
    DevicePtr device;
};

// int64 values as the engine's int type (int32 narrowed with a range check) into dst.
void stage_ints(void* dst, const std::int64_t* src, std::int64_t n, nvinfer1::DataType t, const std::string& name) {
    if (t == nvinfer1::DataType::kINT64) {
        std::memcpy(dst, src, std::size_t(n) * sizeof(std::int64_t));
        return;
    }
    auto* d = static_cast<std::int32_t*>(dst);
    for (std::int64_t i = 0; i < n; ++i) {
        NF_CHECK_ARG(src[i] >= std::numeric_limits<std::int32_t>::min() && src[i] <= std::numeric_limits<std::int32_t>::max(),
                     "trt_device_loop: '" + name + "' value " + std::to_string(src[i]) + " does not fit the engine's int32");
        d[i] = std::int32_t(src[i]);
    }
}

}  // namespace

struct TrtDeviceLoop::Impl {
    // Declaration order is teardown order reversed: graphs and stream, buffers, contexts, engine, runtime, logger.
    TrtLogger logger;
    std::unique_ptr<nvinfer1::IRuntime> runtime;
    std::unique_ptr<nvinfer1::ICudaEngine> engine;
    std::unique_ptr<nvinfer1::IExecutionContext> context[2];
    Buffer frames[2], acts[2], action, noise, push_noise, frame, bad;
    PinnedPtr noise_pin, push_pin, action_pin, bad_pin;
    StreamPtr stream;
    GraphExecPtr graph[2];
    bool tried[2] = {false, false};
    bool use_graph = true, push = false;
    int parity = 0, device_id = 0;
    std::string device, file;
    std::int64_t k = 0, numel = 0, n_actions = 0, no_action = 0, steps = 0;
    float context_noise = 0.0f;
    bool has_context = false, has_frame = false;
    SeededNoise seeded;
    std::vector<float> ctx_host;
    std::vector<std::int64_t> acts_host;
    std::vector<unsigned char> acts_staged;

    explicit Impl(std::uint64_t seed) : seeded(seed) {}

    // The engine's tensor for spec: present, of that direction, type, shape, linear on the device. Its type.
    nvinfer1::DataType check(const TensorSpec& spec, bool input) {
        const char* name = spec.name.c_str();
        const char* kind = input ? "input" : "output";
        bool found = false;
        for (std::int32_t i = 0; i < engine->getNbIOTensors(); ++i) found = found || spec.name == engine->getIOTensorName(i);
        NF_CHECK_ARG(found, "trt_device_loop: " + file + " has no " + kind + " '" + spec.name + "' (the manifest lists it)");
        NF_CHECK_ARG(engine->getTensorIOMode(name) == (input ? nvinfer1::TensorIOMode::kINPUT : nvinfer1::TensorIOMode::kOUTPUT),
                     "trt_device_loop: " + file + " tensor '" + spec.name + "' is not an " + kind);
        const nvinfer1::DataType type = engine->getTensorDataType(name);
        NF_CHECK_ARG(compatible(spec.dtype, type), "trt_device_loop: " + file + " " + kind + " '" + spec.name + "' is " +
                                                       trt_type_name(type) + " (manifest: " + dtype_name(spec.dtype) + ")");
        const Shape got = shape_of(engine->getTensorShape(name));
        NF_CHECK_ARG(got == spec.shape, "trt_device_loop: " + file + " " + kind + " '" + spec.name + "' is " + shape_str(got) +
                                            " (manifest: " + shape_str(spec.shape) + ")");
        NF_CHECK_ARG(engine->getTensorFormat(name) == nvinfer1::TensorFormat::kLINEAR &&
                         engine->getTensorLocation(name) == nvinfer1::TensorLocation::kDEVICE,
                     "trt_device_loop: " + file + " " + kind + " '" + spec.name + "' is not a linear device tensor");
        return type;
    }

    Buffer make(const TensorSpec& spec, bool input) {
        Buffer b;
        b.name = spec.name;
        b.type = check(spec, input);
        b.numel = shape_numel(spec.shape);
        b.bytes = std::size_t(b.numel) * trt_type_size(b.type);
        void* p = nullptr;
        cuda_check(cudaMalloc(&p, b.bytes), "cudaMalloc for '" + b.name + "'");
        b.device.reset(p);
        return b;
    }

    static PinnedPtr pinned(std::size_t bytes) {
        void* p = nullptr;
        cuda_check(cudaMallocHost(&p, bytes), "cudaMallocHost");
        return PinnedPtr(p);
    }

    void set_address(int p, const Buffer& b) {
        NF_CHECK(context[p]->setTensorAddress(b.name.c_str(), b.device.get()),
                 "trt_device_loop: setTensorAddress('" + b.name + "') failed" + logger.suffix());
    }

    // Noise (and context noise) and the action in, enqueueV3, the non-finite count out: what a CUDA graph captures.
    void enqueue(int p) {
        cudaStream_t s = stream.get();
        cuda_check(cudaMemcpyAsync(noise.device.get(), noise_pin.get(), noise.bytes, cudaMemcpyHostToDevice, s), "noise copy");
        if (push)
            cuda_check(cudaMemcpyAsync(push_noise.device.get(), push_pin.get(), push_noise.bytes, cudaMemcpyHostToDevice, s),
                       "context noise copy");
        cuda_check(cudaMemcpyAsync(action.device.get(), action_pin.get(), action.bytes, cudaMemcpyHostToDevice, s), "action copy");
        NF_CHECK(context[p]->enqueueV3(s), "trt_device_loop: enqueueV3 failed" + logger.suffix());
        cuda_check(cudaMemcpyAsync(bad_pin.get(), bad.device.get(), bad.bytes, cudaMemcpyDeviceToHost, s), "non-finite count copy");
    }

    // After a context's first (warm) run; a failed capture is not an error: that context keeps calling enqueueV3.
    void try_capture(int p) {
        cudaGraph_t g = nullptr;
        if (cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal) == cudaSuccess) {
            bool ok = true;
            try {
                enqueue(p);
            } catch (const RuntimeError&) {
                ok = false;
            }
            if (cudaStreamEndCapture(stream.get(), &g) == cudaSuccess && ok && g != nullptr) {
                cudaGraphExec_t exec = nullptr;
                if (cudaGraphInstantiateWithFlags(&exec, g, 0) == cudaSuccess) graph[p].reset(exec);
            }
            if (g != nullptr) cudaGraphDestroy(g);
        }
        cudaGetLastError();  // clear the (non-sticky) error a failed capture leaves behind
    }

    void upload_state(int p) {
        cuda_check(cudaMemcpy(frames[p].device.get(), ctx_host.data(), frames[p].bytes, cudaMemcpyHostToDevice), "context upload");
        stage_ints(acts_staged.data(), acts_host.data(), k, acts[p].type, acts[p].name);
        cuda_check(cudaMemcpy(acts[p].device.get(), acts_staged.data(), acts[p].bytes, cudaMemcpyHostToDevice), "context actions upload");
    }
};

TrtDeviceLoop::TrtDeviceLoop(const Bundle& bundle, const TrtDeviceLoopParams& params)
    : impl_(std::make_unique<Impl>(params.seed)) {
    Impl& m = *impl_;
    NF_CHECK_ARG(bundle.has_frame_graph(), "trt_device_loop: the bundle has no frame graph (re-export it with "
                                           "`nextframe export --frame-graph --trt`)");
    NF_CHECK_ARG(!bundle.uses_cache(), "trt_device_loop: serves frame-stack bundles; a K/V-cache transformer's device "
                                       "loop is backend ort or aoti");
    NF_CHECK_ARG(params.device_id >= 0, "trt_device_loop: device_id must be non-negative");
    m.device_id = int(params.device_id);
    const DeviceInfo dev = device_info(m.device_id);
    cuda_check(cudaSetDevice(m.device_id), "cudaSetDevice");
    const std::string release = loaded_trt_release();
    std::string have;
    const TrtEngineEntry* entry = find_engine(bundle, "frame", dev, release, params.precision, &have);
    NF_CHECK(entry != nullptr, "trt_device_loop: no TensorRT engine of the frame graph for " + dev.sm + " (" + dev.name +
                                   "), TensorRT " + release + (params.precision.empty() ? "" : ", precision " + params.precision) +
                                   " (it has: " + (have.empty() ? "none" : have) + "); build one on this machine with: "
                                   "python -m nextframe.export.tensorrt " + bundle.dir);
    m.file = entry->file;
    m.device = "cuda:" + std::to_string(m.device_id);
    const std::vector<char> plan = bundle.read_verified(entry->file);
    m.runtime.reset(nvinfer1::createInferRuntime(m.logger));
    NF_CHECK(m.runtime != nullptr, "trt_device_loop: createInferRuntime failed" + m.logger.suffix());
    m.engine.reset(m.runtime->deserializeCudaEngine(plan.data(), plan.size()));
    NF_CHECK(m.engine != nullptr, "trt_device_loop: cannot deserialize '" + entry->file + "'" + m.logger.suffix());

    const GraphInfo& g = bundle.frame_graph;
    const FrameInfo& f = bundle.frame;
    m.numel = f.channels * f.height * f.width;
    m.n_actions = bundle.n_actions;
    m.no_action = bundle.no_action;
    m.context_noise = float(bundle.sampler.context_noise);
    m.push = m.context_noise > 0.0f;
    m.k = g.spec_with_role(Role::ContextFrames, true).shape[1];
    for (int p = 0; p < 2; ++p) {
        m.frames[p] = m.make(g.spec_with_role(Role::ContextFrames, true), true);
        m.acts[p] = m.make(g.spec_with_role(Role::ContextActions, true), true);
    }
    m.action = m.make(g.spec_with_role(Role::Action, true), true);
    m.noise = m.make(g.spec_with_role(Role::FrameNoise, true), true);
    if (m.push) m.push_noise = m.make(g.spec_with_role(Role::PushNoise, true), true);
    m.frame = m.make(g.spec_with_role(Role::Frame, false), false);
    m.bad = m.make(g.spec_with_role(Role::NonFinite, false), false);
    const std::int32_t n_io = m.engine->getNbIOTensors();
    NF_CHECK_ARG(n_io == std::int32_t(g.inputs.size() + g.outputs.size()),
                 "trt_device_loop: " + m.file + " has " + std::to_string(n_io) + " io tensors (the manifest lists " +
                     std::to_string(g.inputs.size() + g.outputs.size()) + ")");
    // the next context is written into the other pair: same shapes (Bundle checks) and the same engine types
    const TensorSpec& next_frames = g.spec_with_role(Role::NextContextFrames, false);
    const TensorSpec& next_acts = g.spec_with_role(Role::NextContextActions, false);
    NF_CHECK_ARG(m.check(next_frames, false) == m.frames[0].type && m.check(next_acts, false) == m.acts[0].type,
                 "trt_device_loop: " + m.file + " writes its next context in other types than it reads it");
    const std::string next_frames_name = next_frames.name, next_acts_name = next_acts.name;
    for (int p = 0; p < 2; ++p) {
        m.context[p].reset(m.engine->createExecutionContext());
        NF_CHECK(m.context[p] != nullptr, "trt_device_loop: createExecutionContext failed" + m.logger.suffix());
        m.set_address(p, m.frames[p]);
        m.set_address(p, m.acts[p]);
        m.set_address(p, m.action);
        m.set_address(p, m.noise);
        if (m.push) m.set_address(p, m.push_noise);
        m.set_address(p, m.frame);
        m.set_address(p, m.bad);
        // this context's next state is the other pair
        NF_CHECK(m.context[p]->setTensorAddress(next_frames_name.c_str(), m.frames[1 - p].device.get()) &&
                     m.context[p]->setTensorAddress(next_acts_name.c_str(), m.acts[1 - p].device.get()),
                 "trt_device_loop: setTensorAddress of the next context failed" + m.logger.suffix());
        NF_CHECK(m.context[p]->allInputDimensionsSpecified(), "trt_device_loop: unspecified input dimensions" + m.logger.suffix());
    }
    cudaStream_t stream = nullptr;
    cuda_check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    m.stream.reset(stream);
    m.noise_pin = Impl::pinned(m.noise.bytes);
    if (m.push) m.push_pin = Impl::pinned(m.push_noise.bytes);
    m.action_pin = Impl::pinned(m.action.bytes);
    m.bad_pin = Impl::pinned(m.bad.bytes);
    m.use_graph = cuda_graph_enabled(params.cuda_graph);
    m.ctx_host.resize(std::size_t(m.k * m.numel));
    m.acts_host.resize(std::size_t(m.k));
    m.acts_staged.resize(m.acts[0].bytes);
}

TrtDeviceLoop::~TrtDeviceLoop() {
    if (impl_ != nullptr && impl_->stream != nullptr) cudaStreamSynchronize(impl_->stream.get());
}

void TrtDeviceLoop::reset(const float* frames, std::int64_t n_frames, const std::int64_t* actions) {
    Impl& m = *impl_;
    NF_CHECK_ARG(n_frames >= 1, "trt_device_loop: reset needs at least one frame");
    check_frames_in_range(frames, n_frames, m.numel, "trt_device_loop");
    for (std::int64_t i = 0; i < n_frames; ++i)
        NF_CHECK_ARG(actions[i] >= 0 && actions[i] <= m.no_action,
                     "trt_device_loop: action " + std::to_string(actions[i]) + " outside 0.." + std::to_string(m.no_action));
    std::vector<float> ctx_noise;  // the seeded stream's order (frame_loop.h)
    if (m.push) {
        ctx_noise.resize(std::size_t(n_frames * m.numel));
        m.seeded.fill(ctx_noise.data(), n_frames * m.numel);
    }
    stack_context(frames, n_frames, actions, m.k, m.numel, m.no_action, m.context_noise,
                  ctx_noise.empty() ? nullptr : ctx_noise.data(), m.ctx_host.data(), m.acts_host.data());
    cuda_check(cudaSetDevice(m.device_id), "cudaSetDevice");
    m.upload_state(m.parity);
    m.has_context = true;
    m.has_frame = false;
}

void TrtDeviceLoop::step(std::int64_t action, float* out) {
    Impl& m = *impl_;
    NF_CHECK_ARG(m.has_context, "trt_device_loop: step before reset (no context frame)");
    NF_CHECK_ARG(action >= 0 && action < m.n_actions,
                 "trt_device_loop: action " + std::to_string(action) + " outside 0.." + std::to_string(m.n_actions - 1));
    m.seeded.fill(static_cast<float*>(m.noise_pin.get()), m.numel);
    if (m.push) m.seeded.fill(static_cast<float*>(m.push_pin.get()), m.numel);
    stage_ints(m.action_pin.get(), &action, 1, m.action.type, m.action.name);
    cuda_check(cudaSetDevice(m.device_id), "cudaSetDevice");  // the caller may step from another thread
    m.has_frame = false;
    const int p = m.parity;
    if (m.graph[p] != nullptr) {
        cuda_check(cudaGraphLaunch(m.graph[p].get(), m.stream.get()), "cudaGraphLaunch");
    } else {
        m.enqueue(p);
    }
    cuda_check(cudaStreamSynchronize(m.stream.get()), "cudaStreamSynchronize");
    const std::int64_t bad = m.bad.type == nvinfer1::DataType::kINT64 ? *static_cast<const std::int64_t*>(m.bad_pin.get())
                                                                       : *static_cast<const std::int32_t*>(m.bad_pin.get());
    NF_CHECK(bad == 0, "trt_device_loop: the model produced " + std::to_string(bad) + " non-finite values (NaN/inf) of " +
                           std::to_string(m.numel) + " in frame " + std::to_string(m.steps) +
                           "; the frame was not kept (a broken or mis-quantized engine?)");
    if (m.use_graph && !m.tried[p]) {
        m.tried[p] = true;
        m.try_capture(p);
    }
    m.parity = 1 - p;
    m.has_frame = true;
    ++m.steps;
    if (out != nullptr) frame(out);
}

void TrtDeviceLoop::frame(float* out) {
    Impl& m = *impl_;
    NF_CHECK_ARG(m.has_frame, "trt_device_loop: no frame generated since reset");
    cuda_check(cudaMemcpy(out, m.frame.device.get(), m.frame.bytes, cudaMemcpyDeviceToHost), "frame download");
}

std::int64_t TrtDeviceLoop::frame_numel() const { return impl_->numel; }
std::int64_t TrtDeviceLoop::n_actions() const { return impl_->n_actions; }
std::int64_t TrtDeviceLoop::no_action() const { return impl_->no_action; }
std::int64_t TrtDeviceLoop::context_depth() const { return impl_->k; }
const std::string& TrtDeviceLoop::device() const { return impl_->device; }
bool TrtDeviceLoop::cuda_graph() const { return impl_->graph[0] != nullptr && impl_->graph[1] != nullptr; }
std::int64_t TrtDeviceLoop::steps() const { return impl_->steps; }
const std::string& TrtDeviceLoop::engine_file() const { return impl_->file; }

}  // namespace nf

#endif  // NF_HAVE_TENSORRT
