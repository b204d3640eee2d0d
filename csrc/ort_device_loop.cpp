#include "ort_device_loop.h"

#include <algorithm>
#include <cstring>

#include "common.h"
#include "cuda_runtime.h"
#include "frame_history.h"
#include "frame_loop.h"
#include "ort_api.h"

namespace nf {

// One tensor the loop binds: device memory from ONNX Runtime's CUDA allocator, or host memory on the CPU provider.
struct DeviceTensor {
    OrtValuePtr value;
    void* data = nullptr;
    std::size_t bytes = 0;
    HostTensor host;  // the memory itself on the CPU provider
};

struct OrtDeviceLoop::Impl {
    const OrtApi& api;
    OrtSharedEnv env;
    OrtSessionPtr session;
    OrtMemoryInfoPtr memory;
    OrtAllocatorPtr allocator;  // CUDA: the session's allocator for device memory
    const CudaRuntime* cuda = nullptr;
    int device_id = 0;
    DeviceTensor ctx[2], acts[2], action, noise, push_noise, frame, bad;
    OrtIoBindingPtr io[2];
    OrtRunOptionsPtr run[2];
    int parity = 0;  // io[parity] reads ctx[parity] and writes ctx[1 - parity]
    std::vector<float> ctx_host;
    std::vector<std::int64_t> acts_host;

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

    void upload(DeviceTensor& dst, const void* src) {
        if (cuda == nullptr) {
            std::memcpy(dst.data, src, dst.bytes);
        } else {
            // the caller may step from another thread, whose current device is its own
            cuda->check(cuda->set_device(device_id), "ort_device_loop: cudaSetDevice failed");
            cuda->check(cuda->memcpy(dst.data, src, dst.bytes, CudaRuntime::kHostToDevice), "ort_device_loop: upload failed");
        }
    }

    void download(void* dst, const DeviceTensor& src) {
        if (cuda == nullptr) {
            std::memcpy(dst, src.data, src.bytes);
        } else {
            cuda->check(cuda->set_device(device_id), "ort_device_loop: cudaSetDevice failed");
            cuda->check(cuda->memcpy(dst, src.data, src.bytes, CudaRuntime::kDeviceToHost), "ort_device_loop: download failed");
        }
    }

    void bind(OrtIoBinding* b, const char* name, const DeviceTensor& t, bool input) {
        ort_check(input ? api.BindInput(b, name, t.value.get()) : api.BindOutput(b, name, t.value.get()),
                  std::string("ort_device_loop: cannot bind '") + name + "'");
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
    k_ = g.spec_with_role(Role::ContextFrames, true).shape[1];
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
    m.session = make_ort_session(api, m.env, bundle.read_verified(g.file), g.file, ep, cuda, cuda_options);
    check_ort_io(api, m.session.get(), g);

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

    const auto& in = [&](Role r) -> const TensorSpec& { return g.spec_with_role(r, true); };
    const auto& out = [&](Role r) -> const TensorSpec& { return g.spec_with_role(r, false); };
    for (int p = 0; p < 2; ++p) {
        m.ctx[p] = m.make(in(Role::ContextFrames));
        m.acts[p] = m.make(in(Role::ContextActions));
    }
    m.action = m.make(in(Role::Action));
    m.noise = m.make(in(Role::FrameNoise));
    const bool push = context_noise_ > 0.0f;
    if (push) m.push_noise = m.make(in(Role::PushNoise));
    m.frame = m.make(out(Role::Frame));
    m.bad = m.make(out(Role::NonFinite));
    for (int p = 0; p < 2; ++p) {
        OrtIoBinding* raw_io = nullptr;
        ort_check(api.CreateIoBinding(m.session.get(), &raw_io), "ort_device_loop: CreateIoBinding failed");
        m.io[p].reset(raw_io);
        OrtIoBinding* b = m.io[p].get();
        m.bind(b, in(Role::ContextFrames).name.c_str(), m.ctx[p], true);
        m.bind(b, in(Role::ContextActions).name.c_str(), m.acts[p], true);
        m.bind(b, in(Role::Action).name.c_str(), m.action, true);
        m.bind(b, in(Role::FrameNoise).name.c_str(), m.noise, true);
        if (push) m.bind(b, in(Role::PushNoise).name.c_str(), m.push_noise, true);
        m.bind(b, out(Role::Frame).name.c_str(), m.frame, false);
        m.bind(b, out(Role::NextContextFrames).name.c_str(), m.ctx[1 - p], false);
        m.bind(b, out(Role::NextContextActions).name.c_str(), m.acts[1 - p], false);
        m.bind(b, out(Role::NonFinite).name.c_str(), m.bad, false);
        OrtRunOptions* raw_run = nullptr;
        ort_check(api.CreateRunOptions(&raw_run), "ort_device_loop: CreateRunOptions failed");
        m.run[p].reset(raw_run);
        // one captured graph per binding (0 is ONNX Runtime's own id)
        if (cuda_graph_)
            ort_check(api.AddRunConfigEntry(raw_run, "gpu_graph_id", p == 0 ? "1" : "2"), "ort_device_loop: AddRunConfigEntry failed");
    }
    m.ctx_host.resize(std::size_t(k_ * numel_));
    m.acts_host.resize(std::size_t(k_));
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
    // the seeded stream's order (frame_loop.h): per context frame its context noise, drawn only at a level > 0
    std::vector<float> ctx_noise;
    if (context_noise_ > 0.0f) {
        ctx_noise.resize(std::size_t(n_frames * numel_));
        noise_.fill(ctx_noise.data(), n_frames * numel_);
    }
    stack_context(frames, n_frames, actions, k_, numel_, no_action_, context_noise_,
                  ctx_noise.empty() ? nullptr : ctx_noise.data(), m.ctx_host.data(), m.acts_host.data());
    m.upload(m.ctx[m.parity], m.ctx_host.data());
    m.upload(m.acts[m.parity], m.acts_host.data());
    has_context_ = true;
    has_frame_ = false;
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
    has_frame_ = false;
    ort_check(m.api.RunWithBinding(m.session.get(), m.run[m.parity].get(), m.io[m.parity].get()), "ort_device_loop: Run failed");
    std::int64_t bad = 0;
    m.download(&bad, m.bad);
    // the state written by this run is not taken: the loop stays where it was
    NF_CHECK(bad == 0, "ort_device_loop: the model produced " + std::to_string(bad) + " non-finite values (NaN/inf) of " +
                           std::to_string(numel_) + " in frame " + std::to_string(steps_) +
                           "; the frame was not kept (a broken or mis-quantized graph?)");
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
