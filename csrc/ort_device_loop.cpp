#include "ort_device_loop.h"

#include <algorithm>
#include <cstring>

#include "common.h"
#include "cuda_runtime.h"
#include "frame_history.h"
#include "frame_loop.h"
#include "kv_cache.h"
#include "ort_api.h"

namespace nf {

// One tensor the loop binds: device memory from ONNX Runtime's CUDA allocator, or host memory on the CPU provider.
struct DeviceTensor {
    OrtValuePtr value;
    void* data = nullptr;
    std::size_t bytes = 0;
    HostTensor host;  // the memory itself on the CPU provider
};

// One context input of the frame graph, the output that carries it on by a frame, and the state's two copies.
struct StateTensor {
    RoleSpec role;
    std::int64_t n = 1;  // frames back (context_frame / context_action) or frames held (context_frames / _actions)
    std::string in_name, out_name;
    DeviceTensor buf[2];
    HostTensor staging;  // reset's values on the host
};

struct OrtDeviceLoop::Impl {
    const OrtApi& api;
    OrtSharedEnv env;
    OrtSessionPtr session, push_session;  // push_session: the kv graph (or step graph) for reset's cache writes
    OrtMemoryInfoPtr memory;
    OrtAllocatorPtr allocator;  // CUDA: the session's allocator for device memory
    const CudaRuntime* cuda = nullptr;
    int device_id = 0;
    std::vector<StateTensor> state;
    DeviceTensor action, noise, push_noise, frame, bad;
    // the K/V ring (transformer bundles): cache, ages, the frame graph's k_new / v_new, reset's own inputs
    std::unique_ptr<KvCache> slots;  // slot bookkeeping only; the memory is cache_k / cache_v
    DeviceTensor cache_k, cache_v, ages, k_new, v_new, push_x, push_t, push_prediction;
    std::vector<std::int64_t> ages_host;
    OrtIoBindingPtr io[2], push_io;
    OrtRunOptionsPtr run[2], push_run;
    int parity = 0;  // io[parity] reads state buf[parity] and writes buf[1 - parity]

    Impl(const OrtApi& a, std::int64_t threads) : api(a), env(ort_env(threads)) {}

    DeviceTensor make(const TensorSpec& spec) {
        DeviceTensor t;
        OrtValue* v = nullptr;
        if (cuda == nullptr) {
            t.host = HostTensor(spec.dtype, spec.shape);
            ort_check(api.CreateTensorWithDataAsOrtValue(memory.get(), t.host.raw(), t.host.nbytes(), spec.shape.data(),
                                                         spec.shape.size(), ort_element_type(spec.dtype), &v),
                      "ort_device_loop: CreateTensorWithDataAsOrtValue failed");
        } else {
            ort_check(api.CreateTensorAsOrtValue(allocator.get(), spec.shape.data(), spec.shape.size(), ort_element_type(spec.dtype), &v),
                      "ort_device_loop: cannot allocate '" + spec.name + "' on the device");
        }
        t.value.reset(v);
        ort_check(api.GetTensorMutableData(v, &t.data), "ort_device_loop: GetTensorMutableData failed");
        t.bytes = std::size_t(shape_numel(spec.shape)) * dtype_size(spec.dtype);
        return t;
    }

    void use_device() const {
        // the caller may step from another thread, whose current device is its own
        cuda->check(cuda->set_device(device_id), "ort_device_loop: cudaSetDevice failed");
    }

    void upload(DeviceTensor& dst, const void* src) {
        if (cuda == nullptr) {
            std::memcpy(dst.data, src, dst.bytes);
        } else {
            use_device();
            cuda->check(cuda->memcpy(dst.data, src, dst.bytes, CudaRuntime::kHostToDevice), "ort_device_loop: upload failed");
        }
    }

    void download(void* dst, const DeviceTensor& src) {
        if (cuda == nullptr) {
            std::memcpy(dst, src.data, src.bytes);
        } else {
            use_device();
            cuda->check(cuda->memcpy(dst, src.data, src.bytes, CudaRuntime::kDeviceToHost), "ort_device_loop: download failed");
        }
    }

    // Uploads return once the host buffer is staged; the next run is on ONNX Runtime's stream, so wait for them.
    void settle() {
        if (cuda != nullptr) cuda->check(cuda->synchronize(), "ort_device_loop: cudaDeviceSynchronize failed");
    }

    // One frame's K/V [L, 1, heads, N, hd] into its slot of the ring [L, 1, heads, S, N, hd] (kv_cache.h): L * heads
    // rows of N * hd values, S * N * hd apart in the ring.
    void write_slot(DeviceTensor& ring, const DeviceTensor& frame_kv, std::int64_t slot) {
        const KvCacheLayout& l = slots->layout();
        const std::size_t row = sizeof(float) * std::size_t(l.tokens_per_frame * l.head_dim);
        const std::size_t rows = std::size_t(l.n_layers * l.n_heads), pitch = row * std::size_t(l.n_slots);
        char* dst = static_cast<char*>(ring.data) + row * std::size_t(slot);
        const char* src = static_cast<const char*>(frame_kv.data);
        if (cuda == nullptr) {
            for (std::size_t r = 0; r < rows; ++r) std::memcpy(dst + r * pitch, src + r * row, row);
        } else {
            use_device();
            cuda->check(cuda->memcpy_2d(dst, pitch, src, row, row, rows, CudaRuntime::kDeviceToDevice),
                        "ort_device_loop: cache write failed");
        }
    }

    void bind(OrtIoBinding* b, const std::string& name, const DeviceTensor& t, bool input) {
        ort_check(input ? api.BindInput(b, name.c_str(), t.value.get()) : api.BindOutput(b, name.c_str(), t.value.get()),
                  "ort_device_loop: cannot bind '" + name + "'");
    }

    OrtIoBindingPtr binding(OrtSession* s) {
        OrtIoBinding* raw = nullptr;
        ort_check(api.CreateIoBinding(s, &raw), "ort_device_loop: CreateIoBinding failed");
        return OrtIoBindingPtr(raw);
    }

    OrtRunOptionsPtr run_options(const char* graph_id) {
        OrtRunOptions* raw = nullptr;
        ort_check(api.CreateRunOptions(&raw), "ort_device_loop: CreateRunOptions failed");
        OrtRunOptionsPtr r(raw);
        if (graph_id != nullptr) ort_check(api.AddRunConfigEntry(raw, "gpu_graph_id", graph_id), "ort_device_loop: AddRunConfigEntry failed");
        return r;
    }

    // The ring's slot ages for the frame at slots->pos(), to the device.
    void upload_ages() {
        slots->ages(ages_host.data());
        upload(ages, ages_host.data());
    }
};

OrtDeviceLoop::OrtDeviceLoop(const Bundle& bundle, const OrtDeviceLoopParams& params) : noise_(params.seed) {
    NF_CHECK_ARG(params.device == "cuda" || params.device == "cpu",
                 "ort_device_loop: device '" + params.device + "' (expected cuda or cpu)");
    NF_CHECK_ARG(bundle.has_frame_graph(), "ort_device_loop: the bundle has no frame graph (re-export it with "
                                           "`nextframe export --frame-graph`)");
    NF_CHECK_ARG(params.threads >= 1, "ort_device_loop: threads must be at least 1");
    const bool cuda = params.device == "cuda";
    const OrtApi& api = ort_api(params.ort_lib);
    if (cuda) require_ort_cuda_provider("ort_device_loop");
    const GraphInfo& g = bundle.frame_graph;
    const FrameInfo& f = bundle.frame;
    numel_ = f.channels * f.height * f.width;
    n_actions_ = bundle.n_actions;
    no_action_ = bundle.no_action;
    context_noise_ = float(bundle.sampler.context_noise);
    cuda_graph_ = cuda && params.cuda_graph;
    device_ = cuda ? "cuda:" + std::to_string(params.device_id) : "cpu";

    impl_ = std::make_unique<Impl>(api, params.threads);
    Impl& m = *impl_;
    EngineParams ep;
    ep.threads = params.threads;
    ep.device_id = params.device_id;
    ep.ort_lib = params.ort_lib;
    std::vector<std::pair<std::string, std::string>> cuda_options;
    if (cuda_graph_) cuda_options.emplace_back("enable_cuda_graph", "1");
    const std::vector<char> graph_bytes = bundle.read_verified(g.file);
    try {
        m.session = make_ort_session(api, m.env, graph_bytes, g.file, ep, cuda, cuda_options);
    } catch (const RuntimeError&) {
        if (!cuda_graph_) throw;
        // ONNX Runtime refuses a CUDA graph of a graph with a node on the CPU provider: the same loop without one
        // (cuda_graph() says so), not an unusable loop
        cuda_graph_ = false;
        m.session = make_ort_session(api, m.env, graph_bytes, g.file, ep, cuda, {});
    }
    check_ort_io(api, m.session.get(), g);
    const bool ring = bundle.uses_cache();
    // reset's cache writes: the kv graph, or the step graph (which writes the same K/V) where the bundle has none
    const GraphInfo& push_graph = bundle.has_kv_graph() ? bundle.kv : bundle.step;
    if (ring) {
        m.push_session = make_ort_session(api, m.env, bundle.read_verified(push_graph.file), push_graph.file, ep, cuda, {});
        check_ort_io(api, m.push_session.get(), push_graph);
    }

    OrtMemoryInfo* raw_mem = nullptr;
    if (cuda) {
        m.cuda = &cuda_runtime();
        m.device_id = int(params.device_id);
        m.cuda->check(m.cuda->set_device(int(params.device_id)), "ort_device_loop: cannot use CUDA device " +
                                                                      std::to_string(params.device_id));
        ort_check(api.CreateMemoryInfo("Cuda", OrtDeviceAllocator, int(params.device_id), OrtMemTypeDefault, &raw_mem),
                  "ort_device_loop: CreateMemoryInfo failed");
        m.memory.reset(raw_mem);
        OrtAllocator* raw_alloc = nullptr;
        ort_check(api.CreateAllocator(m.session.get(), m.memory.get(), &raw_alloc),
                  "ort_device_loop: no device allocator in the CUDA session");
        m.allocator.reset(raw_alloc);
    } else {
        ort_check(api.CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &raw_mem),
                  "ort_device_loop: CreateCpuMemoryInfo failed");
        m.memory.reset(raw_mem);
    }

    // the state: each context input with the output that carries it on (the bundle check pairs them)
    for (std::size_t i = 0; i < g.inputs.size(); ++i) {
        const RoleSpec& r = g.input_roles[i];
        if (!is_context_role(r.role)) continue;
        StateTensor st;
        st.role = r;
        st.in_name = g.inputs[i].name;
        st.n = g.context_reach(i);
        st.out_name = g.next_of(r).name;
        for (int p = 0; p < 2; ++p) st.buf[p] = m.make(g.inputs[i]);
        st.staging = HostTensor(g.inputs[i].dtype, g.inputs[i].shape);
        depth_ = std::max(depth_, st.n);
        m.state.push_back(std::move(st));
    }
    const auto& in = [&](Role r) -> const TensorSpec& { return g.spec_with_role(r, true); };
    const auto& out = [&](Role r) -> const TensorSpec& { return g.spec_with_role(r, false); };
    m.action = m.make(in(Role::Action));
    m.noise = m.make(in(Role::FrameNoise));
    const bool push = context_noise_ > 0.0f;
    if (push) m.push_noise = m.make(in(Role::PushNoise));
    m.frame = m.make(out(Role::Frame));
    m.bad = m.make(out(Role::NonFinite));
    if (ring) {
        m.slots = std::make_unique<KvCache>(bundle.kv_cache, false);
        m.cache_k = m.make(in(Role::CacheK));
        m.cache_v = m.make(in(Role::CacheV));
        // empty slots are masked out, but a masked slot's values still meet a zero weight: NaN bits left in fresh
        // device memory would come through (0 * NaN); host tensors start zeroed
        if (m.cuda != nullptr)
            for (DeviceTensor* t : {&m.cache_k, &m.cache_v})
                m.cuda->check(m.cuda->memset(t->data, 0, t->bytes), "ort_device_loop: cannot clear the K/V ring");
        m.ages = m.make(in(Role::CacheAges));
        m.k_new = m.make(out(Role::KNew));
        m.v_new = m.make(out(Role::VNew));
        m.ages_host.resize(std::size_t(bundle.kv_cache.n_slots));
    }
    for (int p = 0; p < 2; ++p) {
        m.io[p] = m.binding(m.session.get());
        OrtIoBinding* b = m.io[p].get();
        for (const auto& st : m.state) {
            m.bind(b, st.in_name, st.buf[p], true);
            m.bind(b, st.out_name, st.buf[1 - p], false);
        }
        m.bind(b, in(Role::Action).name, m.action, true);
        m.bind(b, in(Role::FrameNoise).name, m.noise, true);
        if (push) m.bind(b, in(Role::PushNoise).name, m.push_noise, true);
        m.bind(b, out(Role::Frame).name, m.frame, false);
        m.bind(b, out(Role::NonFinite).name, m.bad, false);
        if (ring) {
            m.bind(b, in(Role::CacheK).name, m.cache_k, true);
            m.bind(b, in(Role::CacheV).name, m.cache_v, true);
            m.bind(b, in(Role::CacheAges).name, m.ages, true);
            m.bind(b, out(Role::KNew).name, m.k_new, false);
            m.bind(b, out(Role::VNew).name, m.v_new, false);
        }
        // one captured graph per binding (0 is ONNX Runtime's own id)
        m.run[p] = m.run_options(cuda_graph_ ? (p == 0 ? "1" : "2") : nullptr);
    }
    if (ring) {
        // reset runs the push graph on the state's first copy (reset leaves the loop at parity 0)
        m.push_io = m.binding(m.push_session.get());
        m.push_run = m.run_options(nullptr);
        OrtIoBinding* b = m.push_io.get();
        for (std::size_t i = 0; i < push_graph.inputs.size(); ++i) {
            const TensorSpec& s = push_graph.inputs[i];
            const RoleSpec& r = push_graph.input_roles[i];
            const DeviceTensor* t = nullptr;
            switch (r.role) {
                case Role::NoisyFrame: t = &(m.push_x = m.make(s)); break;
                case Role::NoiseLevel: t = &(m.push_t = m.make(s)); break;
                case Role::Action: t = &m.action; break;
                case Role::CacheK: t = &m.cache_k; break;
                case Role::CacheV: t = &m.cache_v; break;
                case Role::CacheAges: t = &m.ages; break;
                default:
                    for (const auto& st : m.state)
                        if (st.role.role == r.role && st.role.back == r.back) t = &st.buf[0];
            }
            NF_CHECK_ARG(t != nullptr, "ort_device_loop: " + push_graph.file + " input '" + s.name + "' (" +
                                           role_name(r.role) + ") is not one the frame graph reads");
            m.bind(b, s.name, *t, true);
        }
        for (std::size_t o = 0; o < push_graph.outputs.size(); ++o) {
            const Role r = push_graph.output_roles[o].role;
            const DeviceTensor& t = r == Role::KNew ? m.k_new : r == Role::VNew ? m.v_new
                                                                               : (m.push_prediction = m.make(push_graph.outputs[o]));
            m.bind(b, push_graph.outputs[o].name, t, false);
        }
        const float cn = context_noise_;
        m.upload(m.push_t, &cn);
    }
    noise_buf_.resize(std::size_t(numel_));
    push_noise_buf_.resize(push ? std::size_t(numel_) : 0);
}

OrtDeviceLoop::~OrtDeviceLoop() = default;

void OrtDeviceLoop::reset(const float* frames, std::int64_t n_frames, const std::int64_t* actions) {
    NF_CHECK_ARG(n_frames >= 1, "ort_device_loop: reset needs at least one frame");
    check_frames_in_range(frames, n_frames, numel_, "ort_device_loop");
    for (std::int64_t i = 0; i < n_frames; ++i)
        NF_CHECK_ARG(actions[i] >= 0 && actions[i] <= no_action_,
                     "ort_device_loop: action " + std::to_string(actions[i]) + " outside 0.." + std::to_string(no_action_));
    Impl& m = *impl_;
    // FrameLoop::reset's pushes: the seeded stream's order (frame_loop.h: per context frame its context noise, drawn
    // only at a level > 0), the rounding of push_locked, and for a ring each frame's K/V written with the context as
    // it was before that frame
    const float cn = context_noise_;
    FrameHistory history(depth_, numel_, no_action_);
    std::vector<float> pushed(static_cast<std::size_t>(numel_));
    std::vector<float> e(cn > 0.0f ? static_cast<std::size_t>(numel_) : 0);
    auto upload_state = [&] {
        for (auto& st : m.state) {
            read_context(history, st.role.role, st.n, st.staging.raw());
            m.upload(st.buf[0], st.staging.raw());
        }
    };
    has_context_ = has_frame_ = false;
    m.parity = 0;
    if (m.slots) m.slots->clear();
    for (std::int64_t i = 0; i < n_frames; ++i) {
        if (cn > 0.0f) noise_.fill(e.data(), numel_);
        noised_frame(frames + i * numel_, cn > 0.0f ? e.data() : nullptr, cn, numel_, pushed.data());
        if (m.slots) {
            upload_state();
            m.upload(m.push_x, pushed.data());
            m.upload(m.action, &actions[i]);
            m.upload_ages();
            m.settle();
            ort_check(m.api.RunWithBinding(m.push_session.get(), m.push_run.get(), m.push_io.get()),
                      "ort_device_loop: cache write failed");
            m.write_slot(m.cache_k, m.k_new, m.slots->slot_of(m.slots->pos()));
            m.write_slot(m.cache_v, m.v_new, m.slots->slot_of(m.slots->pos()));
            m.slots->advance();
        }
        history.push(pushed.data(), actions[i]);
    }
    upload_state();
    m.settle();
    has_context_ = true;
}

void OrtDeviceLoop::step(std::int64_t action, float* out) {
    NF_CHECK_ARG(has_context_, "ort_device_loop: step before reset (no context frame)");
    NF_CHECK_ARG(action >= 0 && action < n_actions_,
                 "ort_device_loop: action " + std::to_string(action) + " outside 0.." + std::to_string(n_actions_ - 1));
    Impl& m = *impl_;
    noise_.fill(noise_buf_.data(), numel_);
    if (!push_noise_buf_.empty()) noise_.fill(push_noise_buf_.data(), numel_);
    m.upload(m.noise, noise_buf_.data());
    if (!push_noise_buf_.empty()) m.upload(m.push_noise, push_noise_buf_.data());
    m.upload(m.action, &action);
    if (m.slots) m.upload_ages();
    m.settle();
    has_frame_ = false;
    ort_check(m.api.RunWithBinding(m.session.get(), m.run[m.parity].get(), m.io[m.parity].get()), "ort_device_loop: Run failed");
    std::int64_t bad = 0;
    m.download(&bad, m.bad);
    // the state written by this run is not taken: the loop stays where it was
    NF_CHECK(bad == 0, "ort_device_loop: the model produced " + std::to_string(bad) + " non-finite values (NaN/inf) of " +
                           std::to_string(numel_) + " in frame " + std::to_string(steps_) +
                           "; the frame was not kept (a broken or mis-quantized graph?)");
    if (m.slots) {
        const std::int64_t slot = m.slots->slot_of(m.slots->pos());
        m.write_slot(m.cache_k, m.k_new, slot);
        m.write_slot(m.cache_v, m.v_new, slot);
        m.slots->advance();
    }
    m.parity = 1 - m.parity;
    has_frame_ = true;
    ++steps_;
    if (out != nullptr) m.download(out, m.frame);
}

void OrtDeviceLoop::frame(float* out) {
    NF_CHECK_ARG(has_frame_, "ort_device_loop: no frame generated since reset");
    impl_->download(out, impl_->frame);
}

}  // namespace nf
