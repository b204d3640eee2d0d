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
#include "kv_cache.h"
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

// One context input of the frame graph with the output that carries it on, in two copies (ort_device_loop.cpp).
struct State {
    RoleSpec role;
    std::int64_t n = 1;  // frames back (context_frame / context_action) or frames held (context_frames / _actions)
    std::string out_name;
    Buffer buf[2];
    HostTensor staging;                // reset's values on the host
    std::vector<unsigned char> staged;  // ... as the engine keeps them
};

}  // namespace

struct TrtDeviceLoop::Impl {
    // Declaration order is teardown order reversed: graphs and stream, buffers, contexts, engines, runtime, logger.
    TrtLogger logger;
    std::unique_ptr<nvinfer1::IRuntime> runtime;
    std::unique_ptr<nvinfer1::ICudaEngine> engine, push_engine;  // push_engine: reset's cache writes (kv graph)
    std::unique_ptr<nvinfer1::IExecutionContext> context[2], push_context;
    std::vector<State> state;
    Buffer action, noise, push_noise, frame, bad;
    Buffer cache_k, cache_v, ages, k_new, v_new, push_x, push_t, push_prediction;  // the K/V ring (transformers)
    std::unique_ptr<KvCache> slots;  // slot bookkeeping; the memory is cache_k / cache_v
    PinnedPtr noise_pin, push_pin, action_pin, bad_pin, ages_pin;
    StreamPtr stream;
    GraphExecPtr graph[2];
    bool tried[2] = {false, false};
    bool use_graph = true, push = false;
    int parity = 0, device_id = 0;
    std::string device, file, push_file;
    std::int64_t depth = 0, numel = 0, n_actions = 0, no_action = 0, steps = 0;
    float context_noise = 0.0f;
    bool has_context = false, has_frame = false;
    SeededNoise seeded;
    std::vector<std::int64_t> ages_host;

    explicit Impl(std::uint64_t seed) : seeded(seed) {}

    // The engine's tensor for spec: present, of that direction, type, shape, linear on the device. Its type.
    nvinfer1::DataType check(const nvinfer1::ICudaEngine& e, const std::string& f, const TensorSpec& spec, bool input) {
        const char* name = spec.name.c_str();
        const char* kind = input ? "input" : "output";
        bool found = false;
        for (std::int32_t i = 0; i < e.getNbIOTensors(); ++i) found = found || spec.name == e.getIOTensorName(i);
        NF_CHECK_ARG(found, "trt_device_loop: " + f + " has no " + kind + " '" + spec.name + "' (the manifest lists it)");
        NF_CHECK_ARG(e.getTensorIOMode(name) == (input ? nvinfer1::TensorIOMode::kINPUT : nvinfer1::TensorIOMode::kOUTPUT),
                     "trt_device_loop: " + f + " tensor '" + spec.name + "' is not an " + kind);
        const nvinfer1::DataType type = e.getTensorDataType(name);
        NF_CHECK_ARG(compatible(spec.dtype, type), "trt_device_loop: " + f + " " + kind + " '" + spec.name + "' is " +
                                                       trt_type_name(type) + " (manifest: " + dtype_name(spec.dtype) + ")");
        const Shape got = shape_of(e.getTensorShape(name));
        NF_CHECK_ARG(got == spec.shape, "trt_device_loop: " + f + " " + kind + " '" + spec.name + "' is " + shape_str(got) +
                                            " (manifest: " + shape_str(spec.shape) + ")");
        NF_CHECK_ARG(e.getTensorFormat(name) == nvinfer1::TensorFormat::kLINEAR &&
                         e.getTensorLocation(name) == nvinfer1::TensorLocation::kDEVICE,
                     "trt_device_loop: " + f + " " + kind + " '" + spec.name + "' is not a linear device tensor");
        return type;
    }

    Buffer make(const TensorSpec& spec, bool input) { return make_for(*engine, file, spec, input); }

    Buffer make_for(const nvinfer1::ICudaEngine& e, const std::string& f, const TensorSpec& spec, bool input) {
        Buffer b;
        b.name = spec.name;
        b.type = check(e, f, spec, input);
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

    static void set_address(nvinfer1::IExecutionContext& c, const std::string& name, const Buffer& b, TrtLogger& log) {
        NF_CHECK(c.setTensorAddress(name.c_str(), b.device.get()),
                 "trt_device_loop: setTensorAddress('" + name + "') failed" + log.suffix());
    }

    void set_address(int p, const Buffer& b) { set_address(*context[p], b.name, b, logger); }

    // Noise (and context noise), the action and the ring's ages in, enqueueV3, the non-finite count out: what a CUDA
    // graph captures (the pinned buffers' contents change between launches, their addresses do not).
    void enqueue(int p) {
        cudaStream_t s = stream.get();
        cuda_check(cudaMemcpyAsync(noise.device.get(), noise_pin.get(), noise.bytes, cudaMemcpyHostToDevice, s), "noise copy");
        if (push)
            cuda_check(cudaMemcpyAsync(push_noise.device.get(), push_pin.get(), push_noise.bytes, cudaMemcpyHostToDevice, s),
                       "context noise copy");
        cuda_check(cudaMemcpyAsync(action.device.get(), action_pin.get(), action.bytes, cudaMemcpyHostToDevice, s), "action copy");
        if (slots) cuda_check(cudaMemcpyAsync(ages.device.get(), ages_pin.get(), ages.bytes, cudaMemcpyHostToDevice, s), "ages copy");
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

    // The ages for the frame at slots->pos() into their pinned buffer (as the engine keeps ints).
    void stage_ages() {
        slots->ages(ages_host.data());
        stage_ints(ages_pin.get(), ages_host.data(), std::int64_t(ages_host.size()), ages.type, ages.name);
    }

    // One frame's K/V [L, 1, heads, N, hd] into its slot of the ring [L, 1, heads, S, N, hd] on the stream (kv_cache.h).
    void write_slot(Buffer& ring, const Buffer& frame_kv, std::int64_t slot) {
        const KvCacheLayout& l = slots->layout();
        const std::size_t row = sizeof(float) * std::size_t(l.tokens_per_frame * l.head_dim);
        const std::size_t rows = std::size_t(l.n_layers * l.n_heads), pitch = row * std::size_t(l.n_slots);
        cuda_check(cudaMemcpy2DAsync(static_cast<char*>(ring.device.get()) + row * std::size_t(slot), pitch,
                                     frame_kv.device.get(), row, row, rows, cudaMemcpyDeviceToDevice, stream.get()),
                   "cache write");
    }

    void write_frame_kv() {
        const std::int64_t slot = slots->slot_of(slots->pos());
        write_slot(cache_k, k_new, slot);
        write_slot(cache_v, v_new, slot);
        slots->advance();
    }

    // The history's context into every state tensor's first copy.
    void upload_state(const FrameHistory& history) {
        for (auto& st : state) {
            read_context(history, st.role.role, st.n, st.staging.raw());
            const void* src = st.staging.raw();
            if (st.staging.dtype() == DType::I64) {
                stage_ints(st.staged.data(), st.staging.data<std::int64_t>(), st.staging.numel(), st.buf[0].type, st.buf[0].name);
                src = st.staged.data();
            }
            cuda_check(cudaMemcpy(st.buf[0].device.get(), src, st.buf[0].bytes, cudaMemcpyHostToDevice), "context upload");
        }
    }
};

TrtDeviceLoop::TrtDeviceLoop(const Bundle& bundle, const TrtDeviceLoopParams& params)
    : impl_(std::make_unique<Impl>(params.seed)) {
    Impl& m = *impl_;
    NF_CHECK_ARG(bundle.has_frame_graph(), "trt_device_loop: the bundle has no frame graph (re-export it with "
                                           "`nextframe export --frame-graph --trt`)");
    NF_CHECK_ARG(params.device_id >= 0, "trt_device_loop: device_id must be non-negative");
    m.device_id = int(params.device_id);
    const DeviceInfo dev = device_info(m.device_id);
    cuda_check(cudaSetDevice(m.device_id), "cudaSetDevice");
    const std::string release = loaded_trt_release();
    auto engine_of = [&](const std::string& graph, const std::string& precision) -> const TrtEngineEntry& {
        std::string have;
        const TrtEngineEntry* entry = find_engine(bundle, graph, dev, release, precision, &have);
        NF_CHECK(entry != nullptr, "trt_device_loop: no TensorRT engine of the " + graph + " graph for " + dev.sm + " (" +
                                       dev.name + "), TensorRT " + release +
                                       (precision.empty() ? "" : ", precision " + precision) + " (it has: " +
                                       (have.empty() ? "none" : have) + "); build one on this machine with: "
                                       "python -m nextframe.export.tensorrt " + bundle.dir);
        return *entry;
    };
    m.runtime.reset(nvinfer1::createInferRuntime(m.logger));
    NF_CHECK(m.runtime != nullptr, "trt_device_loop: createInferRuntime failed" + m.logger.suffix());
    auto load = [&](const TrtEngineEntry& entry) {
        const std::vector<char> plan = bundle.read_verified(entry.file);
        std::unique_ptr<nvinfer1::ICudaEngine> e(m.runtime->deserializeCudaEngine(plan.data(), plan.size()));
        NF_CHECK(e != nullptr, "trt_device_loop: cannot deserialize '" + entry.file + "'" + m.logger.suffix());
        return e;
    };
    const TrtEngineEntry& entry = engine_of("frame", params.precision);
    m.file = entry.file;
    m.device = "cuda:" + std::to_string(m.device_id);
    m.engine = load(entry);

    const GraphInfo& g = bundle.frame_graph;
    const FrameInfo& f = bundle.frame;
    m.numel = f.channels * f.height * f.width;
    m.n_actions = bundle.n_actions;
    m.no_action = bundle.no_action;
    m.context_noise = float(bundle.sampler.context_noise);
    m.push = m.context_noise > 0.0f;
    const std::int32_t n_io = m.engine->getNbIOTensors();
    NF_CHECK_ARG(n_io == std::int32_t(g.inputs.size() + g.outputs.size()),
                 "trt_device_loop: " + m.file + " has " + std::to_string(n_io) + " io tensors (the manifest lists " +
                     std::to_string(g.inputs.size() + g.outputs.size()) + ")");
    // the state: each context input with the output that carries it on (the bundle check pairs them), the next value
    // written into the other copy: same shapes (Bundle checks) and the same engine types
    for (std::size_t i = 0; i < g.inputs.size(); ++i) {
        const RoleSpec& r = g.input_roles[i];
        if (!is_context_role(r.role)) continue;
        State st;
        st.role = r;
        st.n = g.context_reach(i);
        for (int p = 0; p < 2; ++p) st.buf[p] = m.make(g.inputs[i], true);
        const TensorSpec& next = g.next_of(r);
        st.out_name = next.name;
        NF_CHECK_ARG(m.check(*m.engine, m.file, next, false) == st.buf[0].type,
                     "trt_device_loop: " + m.file + " writes '" + st.out_name + "' in another type than it reads '" +
                         st.buf[0].name + "'");
        st.staging = HostTensor(g.inputs[i].dtype, g.inputs[i].shape);
        st.staged.resize(st.buf[0].bytes);
        m.depth = std::max(m.depth, st.n);
        m.state.push_back(std::move(st));
    }
    m.action = m.make(g.spec_with_role(Role::Action, true), true);
    m.noise = m.make(g.spec_with_role(Role::FrameNoise, true), true);
    if (m.push) m.push_noise = m.make(g.spec_with_role(Role::PushNoise, true), true);
    m.frame = m.make(g.spec_with_role(Role::Frame, false), false);
    m.bad = m.make(g.spec_with_role(Role::NonFinite, false), false);
    const bool ring = bundle.uses_cache();
    if (ring) {
        m.slots = std::make_unique<KvCache>(bundle.kv_cache, false);
        m.cache_k = m.make(g.spec_with_role(Role::CacheK, true), true);
        m.cache_v = m.make(g.spec_with_role(Role::CacheV, true), true);
        // a masked slot's values still meet a zero weight: no NaN bits from fresh device memory
        for (Buffer* b : {&m.cache_k, &m.cache_v}) cuda_check(cudaMemset(b->device.get(), 0, b->bytes), "cudaMemset");
        m.ages = m.make(g.spec_with_role(Role::CacheAges, true), true);
        m.k_new = m.make(g.spec_with_role(Role::KNew, false), false);
        m.v_new = m.make(g.spec_with_role(Role::VNew, false), false);
        m.ages_host.resize(std::size_t(bundle.kv_cache.n_slots));
    }
    for (int p = 0; p < 2; ++p) {
        m.context[p].reset(m.engine->createExecutionContext());
        NF_CHECK(m.context[p] != nullptr, "trt_device_loop: createExecutionContext failed" + m.logger.suffix());
        for (const auto& st : m.state) {
            m.set_address(p, st.buf[p]);
            Impl::set_address(*m.context[p], st.out_name, st.buf[1 - p], m.logger);  // this context's next state
        }
        m.set_address(p, m.action);
        m.set_address(p, m.noise);
        if (m.push) m.set_address(p, m.push_noise);
        m.set_address(p, m.frame);
        m.set_address(p, m.bad);
        if (ring)
            for (const Buffer* b : {&m.cache_k, &m.cache_v, &m.ages, &m.k_new, &m.v_new}) m.set_address(p, *b);
        NF_CHECK(m.context[p]->allInputDimensionsSpecified(), "trt_device_loop: unspecified input dimensions" + m.logger.suffix());
    }
    if (ring) {
        // reset's cache writes at the frame engine's precision (another would write K/V the frame engine does not
        // make): the kv graph's engine, the step graph's where the bundle has no kv graph or no kv engine of it; bound
        // to the state's first copy (reset leaves the loop at parity 0), the ring and the frame engine's k_new / v_new
        const TrtEngineEntry* kv_entry =
            bundle.has_kv_graph() ? find_engine(bundle, "kv", dev, release, entry.precision, nullptr) : nullptr;
        const GraphInfo& pg = kv_entry != nullptr ? bundle.kv : bundle.step;
        const TrtEngineEntry& pe = kv_entry != nullptr ? *kv_entry : engine_of("step", entry.precision);
        m.push_file = pe.file;
        m.push_engine = load(pe);
        m.push_context.reset(m.push_engine->createExecutionContext());
        NF_CHECK(m.push_context != nullptr, "trt_device_loop: createExecutionContext failed" + m.logger.suffix());
        auto bind_same = [&](const TensorSpec& s, bool input, const Buffer& b) {
            NF_CHECK_ARG(m.check(*m.push_engine, m.push_file, s, input) == b.type,
                         "trt_device_loop: " + m.push_file + " '" + s.name + "' is " +
                             trt_type_name(m.push_engine->getTensorDataType(s.name.c_str())) + " where " + m.file + " has " +
                             trt_type_name(b.type));
            Impl::set_address(*m.push_context, s.name, b, m.logger);
        };
        for (std::size_t i = 0; i < pg.inputs.size(); ++i) {
            const TensorSpec& s = pg.inputs[i];
            const RoleSpec& r = pg.input_roles[i];
            switch (r.role) {
                case Role::NoisyFrame: Impl::set_address(*m.push_context, s.name, m.push_x = m.make_for(*m.push_engine, m.push_file, s, true), m.logger); break;
                case Role::NoiseLevel: Impl::set_address(*m.push_context, s.name, m.push_t = m.make_for(*m.push_engine, m.push_file, s, true), m.logger); break;
                case Role::Action: bind_same(s, true, m.action); break;
                case Role::CacheK: bind_same(s, true, m.cache_k); break;
                case Role::CacheV: bind_same(s, true, m.cache_v); break;
                case Role::CacheAges: bind_same(s, true, m.ages); break;
                default: {
                    const State* st = nullptr;
                    for (const auto& c : m.state)
                        if (c.role.role == r.role && c.role.back == r.back) st = &c;
                    NF_CHECK_ARG(st != nullptr, "trt_device_loop: " + m.push_file + " input '" + s.name + "' (" +
                                                    role_name(r.role) + ") is not one the frame graph reads");
                    bind_same(s, true, st->buf[0]);
                }
            }
        }
        for (std::size_t o = 0; o < pg.outputs.size(); ++o) {
            const TensorSpec& s = pg.outputs[o];
            const Role r = pg.output_roles[o].role;
            if (r == Role::KNew || r == Role::VNew) bind_same(s, false, r == Role::KNew ? m.k_new : m.v_new);
            else Impl::set_address(*m.push_context, s.name, m.push_prediction = m.make_for(*m.push_engine, m.push_file, s, false), m.logger);
        }
        NF_CHECK(m.push_context->allInputDimensionsSpecified(), "trt_device_loop: unspecified input dimensions" + m.logger.suffix());
        cuda_check(cudaMemcpy(m.push_t.device.get(), &m.context_noise, sizeof(float), cudaMemcpyHostToDevice), "context level upload");
        m.ages_pin = Impl::pinned(m.ages.bytes);
    }
    cudaStream_t stream = nullptr;
    cuda_check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    m.stream.reset(stream);
    m.noise_pin = Impl::pinned(m.noise.bytes);
    if (m.push) m.push_pin = Impl::pinned(m.push_noise.bytes);
    m.action_pin = Impl::pinned(m.action.bytes);
    m.bad_pin = Impl::pinned(m.bad.bytes);
    m.use_graph = cuda_graph_enabled(params.cuda_graph);
    cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
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
    cuda_check(cudaSetDevice(m.device_id), "cudaSetDevice");
    cuda_check(cudaStreamSynchronize(m.stream.get()), "cudaStreamSynchronize");
    // FrameLoop::reset's pushes, as OrtDeviceLoop::reset: the seeded stream's order, push_locked's rounding, each
    // frame's K/V written with the context as it was before that frame
    FrameHistory history(m.depth, m.numel, m.no_action);
    std::vector<float> pushed(static_cast<std::size_t>(m.numel));
    std::vector<float> e(m.push ? static_cast<std::size_t>(m.numel) : 0);
    m.has_context = m.has_frame = false;
    m.parity = 0;
    if (m.slots) m.slots->clear();
    for (std::int64_t i = 0; i < n_frames; ++i) {
        if (m.push) m.seeded.fill(e.data(), m.numel);
        noised_frame(frames + i * m.numel, m.push ? e.data() : nullptr, m.context_noise, m.numel, pushed.data());
        if (m.slots) {
            m.upload_state(history);
            cuda_check(cudaMemcpy(m.push_x.device.get(), pushed.data(), m.push_x.bytes, cudaMemcpyHostToDevice), "frame upload");
            stage_ints(m.action_pin.get(), &actions[i], 1, m.action.type, m.action.name);
            cuda_check(cudaMemcpy(m.action.device.get(), m.action_pin.get(), m.action.bytes, cudaMemcpyHostToDevice), "action upload");
            m.stage_ages();
            cuda_check(cudaMemcpy(m.ages.device.get(), m.ages_pin.get(), m.ages.bytes, cudaMemcpyHostToDevice), "ages upload");
            cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");  // the uploads, before the stream reads them
            NF_CHECK(m.push_context->enqueueV3(m.stream.get()), "trt_device_loop: enqueueV3 (cache write) failed" + m.logger.suffix());
            m.write_frame_kv();
            cuda_check(cudaStreamSynchronize(m.stream.get()), "cudaStreamSynchronize");
        }
        history.push(pushed.data(), actions[i]);
    }
    m.upload_state(history);
    cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    m.has_context = true;
}

void TrtDeviceLoop::step(std::int64_t action, float* out) {
    Impl& m = *impl_;
    NF_CHECK_ARG(m.has_context, "trt_device_loop: step before reset (no context frame)");
    NF_CHECK_ARG(action >= 0 && action < m.n_actions,
                 "trt_device_loop: action " + std::to_string(action) + " outside 0.." + std::to_string(m.n_actions - 1));
    cuda_check(cudaSetDevice(m.device_id), "cudaSetDevice");  // the caller may step from another thread
    m.seeded.fill(static_cast<float*>(m.noise_pin.get()), m.numel);
    if (m.push) m.seeded.fill(static_cast<float*>(m.push_pin.get()), m.numel);
    stage_ints(m.action_pin.get(), &action, 1, m.action.type, m.action.name);
    if (m.slots) m.stage_ages();
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
    if (m.slots) m.write_frame_kv();  // on the stream, after this frame's run: the next run reads it
    m.parity = 1 - p;
    m.has_frame = true;
    ++m.steps;
    if (out != nullptr) frame(out);
}

void TrtDeviceLoop::frame(float* out) {
    Impl& m = *impl_;
    NF_CHECK_ARG(m.has_frame, "trt_device_loop: no frame generated since reset");
    cuda_check(cudaSetDevice(m.device_id), "cudaSetDevice");  // as step(): the caller's thread may be another
    cuda_check(cudaMemcpy(out, m.frame.device.get(), m.frame.bytes, cudaMemcpyDeviceToHost), "frame download");
}

std::int64_t TrtDeviceLoop::frame_numel() const { return impl_->numel; }
std::int64_t TrtDeviceLoop::n_actions() const { return impl_->n_actions; }
std::int64_t TrtDeviceLoop::no_action() const { return impl_->no_action; }
std::int64_t TrtDeviceLoop::context_depth() const { return impl_->depth; }
const std::string& TrtDeviceLoop::device() const { return impl_->device; }
bool TrtDeviceLoop::cuda_graph() const { return impl_->graph[0] != nullptr && impl_->graph[1] != nullptr; }
std::int64_t TrtDeviceLoop::steps() const { return impl_->steps; }
const std::string& TrtDeviceLoop::engine_file() const { return impl_->file; }

}  // namespace nf

#endif  // NF_HAVE_TENSORRT
