// The AOTInductor backend's torch side, built as its own shared library (libnf_aoti.so) so that the core never
// links torch: csrc/engine_aoti.cpp dlopens it on first use, and a runtime-only install without torch simply
// has no "aoti" backend. The boundary is a C ABI of plain pointers (no C++ type crosses it), so the plugin's
// libstdc++ ABI (torch's) and the core's need not agree.
//
// Every call: the caller's host buffers are wrapped as tensors without a copy (CPU) or copied to the device
// (CUDA), the package runs, and its outputs are copied into the caller's buffers.
//
// The device loop (nf_aoti_loop_*): the whole next-frame step of a frame-stack bundle on the package's device, the
// twin of csrc/frame_loop.cpp for these bundles (same arithmetic order, same noise order): the frame being denoised,
// the last K frames and every graph input live in device tensors bound once; per frame the host sends one frame of
// noise (and of context noise, where the bundle noises its context) and the action, and gets the frame back only
// when it asks. On CUDA (NF_AOTI_CUDA: a plugin built against a CUDA torch) the steady-state step (noise in, every
// denoising evaluation, Euler updates, clamp, palette snap, the push into the context) is captured once as a CUDA
// graph and replayed.
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <ATen/Functions.h>
#include <ATen/Parallel.h>
#include <torch/headeronly/version.h>
#include <c10/core/Device.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#ifdef NF_AOTI_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

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

// Runs f; an exception becomes err (its first line) and the fallback value: nothing may cross the C ABI.
template <typename R, typename F>
R guarded(char* err, std::size_t err_len, R fallback, F&& f) {
    try {
        return f();
    } catch (const std::exception& e) {
        set_error(err, err_len, e.what());
    } catch (...) {
        set_error(err, err_len, "unknown error");
    }
    return fallback;
}

at::ScalarType scalar_type(int dtype) { return dtype == 1 ? at::kLong : at::kFloat; }  // csrc/tensor.h: F32, I64

// Input roles the device loop binds (csrc/device_loop.h keeps the same numbers).
enum LoopRole { kNoisyFrame = 0, kNoiseLevel = 1, kAction = 2, kContextFrames = 3, kContextActions = 4, kContextNoise = 5 };

struct Loop {
    Handle* h = nullptr;
    std::vector<int> roles;  // per package input, in the package's order
    int prediction = 0;      // index of the prediction among the package's outputs
    bool velocity = false;   // the prediction is the flow velocity (else the clean frame)
    std::int64_t k = 0, c = 0, hh = 0, w = 0, no_action = 0;
    std::vector<double> times;
    float context_noise = 0.0f;
    at::Tensor palette;  // [n, 3] on the device; undefined: no snapping
    // device state, bound once
    at::Tensor x, t_in, a_in, ctx, ctx_a, ctx_t, hist, noise, ctx_noise, bad;
    at::Tensor noise_host, ctx_noise_host, action_host, ctx_a_host;  // pinned staging on CUDA
    std::vector<at::Tensor> inputs;
    std::vector<std::int64_t> hist_actions;  // host mirror: the actions that led to the pushed frames kept
    std::int64_t n_pushed = 0;
    bool use_graph = false, captured = false;
    std::int64_t replays = 0;
#ifdef NF_AOTI_CUDA
    std::unique_ptr<at::cuda::CUDAGraph> graph;
#endif
};

// Euler step of the flow ODE in place, as csrc/sampler.cpp rounds it: velocity x += dt v; clean frame
// x = out + (t_next / t) (x - out).
void euler(Loop& l, const at::Tensor& out, double t, double t_next) {
    if (l.velocity) {
        l.x.add_(out, float(t_next - t));
        return;
    }
    l.x.sub_(out).mul_(float(t_next / t)).add_(out);
}

// Nearest palette colour per pixel (first of equals, as the core's search), written back into x [1, C, H, W].
void snap(Loop& l) {
    if (!l.palette.defined()) return;
    at::Tensor px = l.x.view({3, l.hh * l.w}).t();  // [HW, 3]
    at::Tensor d = px.unsqueeze(1).sub(l.palette.unsqueeze(0)).pow(2).sum(2);  // [HW, n]
    at::Tensor idx = d.argmin(1);
    l.x.view({3, l.hh * l.w}).copy_(l.palette.index_select(0, idx).t());
}

// Push the frame in x (noised to the context level, as the core's push) into hist, the last K pushed frames
// oldest first (device work only: push_host keeps the count and the actions, refresh_context the input).
void push(Loop& l) {
    at::Tensor pushed = l.context_noise > 0.0f ? l.x.mul(1.0f - l.context_noise).add_(l.ctx_noise.mul(l.context_noise)) : l.x;
    if (l.n_pushed < l.k) {
        l.hist[l.n_pushed].copy_(pushed[0]);
    } else {
        l.hist.narrow(0, 0, l.k - 1).copy_(l.hist.narrow(0, 1, l.k - 1).clone());
        l.hist[l.k - 1].copy_(pushed[0]);
    }
}

// Where context slot i (oldest first) reads from hist after n pushes: while fewer than K frames were pushed the
// first stands in for the missing ones (frame_history.h); from K on, slot i is hist[i].
std::int64_t hist_index(std::int64_t n, std::int64_t k, std::int64_t i) {
    return std::max<std::int64_t>(n - k + i, 0) - (n - std::min(n, k));
}

void push_host(Loop& l, std::int64_t action) {
    if (l.n_pushed < l.k) {
        l.hist_actions[std::size_t(l.n_pushed)] = action;
    } else {
        std::rotate(l.hist_actions.begin(), l.hist_actions.begin() + 1, l.hist_actions.end());
        l.hist_actions.back() = action;
    }
    ++l.n_pushed;
    auto* a = l.ctx_a_host.data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < l.k; ++i)  // a stand-in frame is led by no action
        a[i] = l.n_pushed - l.k + i >= 0 ? l.hist_actions[std::size_t(hist_index(l.n_pushed, l.k, i))] : l.no_action;
    l.ctx_a.copy_(l.ctx_a_host.view({1, l.k}), true);
}

// The context frames input from hist (hist_index); from K pushes on it is hist itself (what the CUDA graph replays).
void refresh_context(Loop& l) {
    if (l.n_pushed >= l.k) {
        l.ctx[0].copy_(l.hist);
        return;
    }
    std::vector<std::int64_t> idx(std::size_t(l.k));
    for (std::int64_t i = 0; i < l.k; ++i) idx[std::size_t(i)] = hist_index(l.n_pushed, l.k, i);
    at::Tensor index = at::tensor(idx, at::TensorOptions().dtype(at::kLong)).to(l.x.device());
    l.ctx[0].copy_(l.hist.index_select(0, index));
}

// The frame in x to the host buffer out (nothing when out is null).
void copy_out(const Loop& l, float* out) {
    if (out == nullptr) return;
    at::Tensor o = l.x.to(at::kCPU).contiguous();
    std::memcpy(out, o.data_ptr<float>(), std::size_t(o.numel()) * sizeof(float));
}

// A NaN would clamp to -1 (black) and an infinity to +-1: a broken graph would pass for a dark frame (frame_loop.cpp).
void check_finite(std::int64_t bad, std::int64_t numel, const char* fate) {
    if (bad != 0)
        throw std::runtime_error("the model produced " + std::to_string(bad) + " non-finite values (NaN/inf) of " +
                                 std::to_string(numel) + " in a frame; " + fate);
}

// From the noise to the integrated frame: every evaluation of the schedule, each followed by its Euler update.
void denoise(Loop& l) {
    l.x.copy_(l.noise);
    for (std::size_t i = 0; i + 1 < l.times.size(); ++i) {
        l.t_in.fill_(float(l.times[i]));
        std::vector<at::Tensor> outs = l.h->loader->run(l.inputs);
        euler(l, outs[std::size_t(l.prediction)], l.times[i], l.times[i + 1]);
    }
}

// Noise in, every evaluation, clamp, snap, push, context: the steady-state step (K frames pushed) the CUDA
// graph replays. The non-finite count goes to bad, read after the replay.
void step_body(Loop& l) {
    denoise(l);
    // counted before the clamp, checked after the replay (check_finite)
    l.bad.copy_(l.x.isfinite().logical_not().sum());
    l.x.clamp_(-1.0f, 1.0f);
    snap(l);
    push(l);
    l.ctx[0].copy_(l.hist);
}

}  // namespace

extern "C" {

// The torch version the plugin was built against ("2.13.0"): a package from another torch is refused by the core.
__attribute__((visibility("default"))) const char* nf_aoti_torch_version() { return TORCH_VERSION; }

// device: "cpu" or "cuda:N". threads > 0 sets ATen's intra-op pool (process-wide, like torch.set_num_threads).
// Returns nullptr and writes err on failure.
__attribute__((visibility("default"))) void* nf_aoti_open(const char* package_path, const char* device,
                                                          std::int64_t threads, char* err, std::size_t err_len) {
    return guarded(err, err_len, static_cast<void*>(nullptr), [&]() -> void* {
        auto h = std::make_unique<Handle>();
        h->device = c10::Device(std::string(device));
        if (threads > 0) at::set_num_threads(int(threads));
        h->loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(
            package_path, "model", false, 1, h->device.is_cuda() ? h->device.index() : c10::DeviceIndex(-1));
        return h.release();
    });
}

// Runs once. Inputs: n_in host buffers with their dtypes (0 float32, 1 int64), ranks and shapes; outputs: n_out
// host buffers of out_numel elements each, filled in order (float32). Returns 0, or 1 with err written.
__attribute__((visibility("default"))) int nf_aoti_run(void* handle, int n_in, void* const* in_data,
                                                       const int* in_dtype, const int* in_rank,
                                                       const std::int64_t* const* in_shape, int n_out,
                                                       void* const* out_data, const std::int64_t* out_numel,
                                                       char* err, std::size_t err_len) {
    return guarded(err, err_len, 1, [&]() -> int {
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
    });
}

__attribute__((visibility("default"))) void nf_aoti_close(void* handle) { delete static_cast<Handle*>(handle); }

// Whether this plugin captures CUDA graphs (built against a CUDA torch).
__attribute__((visibility("default"))) int nf_aoti_loop_cuda_graphs() {
#ifdef NF_AOTI_CUDA
    return 1;
#else
    return 0;
#endif
}

// A device loop over an opened package. roles: per package input (LoopRole); prediction: the output to integrate;
// frame [k, c, h, w] = context depth and frame shape; times: the schedule, n_times values from 1 down to 0;
// palette: n_colours x 3 values in [-1, 1] (nullptr: no snapping); use_graph: capture CUDA graphs (CUDA only).
__attribute__((visibility("default"))) void* nf_aoti_loop_open(void* handle, int n_in, const int* roles, int prediction,
                                                               int velocity, const std::int64_t* frame,
                                                               std::int64_t no_action, const double* times, int n_times,
                                                               const float* palette, int n_colours, float context_noise,
                                                               int use_graph, char* err, std::size_t err_len) {
    return guarded(err, err_len, static_cast<void*>(nullptr), [&]() -> void* {
        auto l = std::make_unique<Loop>();
        l->h = static_cast<Handle*>(handle);
        l->roles.assign(roles, roles + n_in);
        l->prediction = prediction;
        l->velocity = velocity != 0;
        l->k = frame[0], l->c = frame[1], l->hh = frame[2], l->w = frame[3];
        l->no_action = no_action;
        l->times.assign(times, times + n_times);
        l->context_noise = context_noise;
        const c10::Device dev = l->h->device;
        const auto f32 = at::TensorOptions().dtype(at::kFloat).device(dev);
        const auto i64 = at::TensorOptions().dtype(at::kLong).device(dev);
        const auto host = [&](at::ScalarType t) {
            return at::TensorOptions().dtype(t).pinned_memory(dev.is_cuda());
        };
        if (palette != nullptr && n_colours > 0) {
            if (l->c != 3) throw std::invalid_argument("palette snapping needs 3-channel frames");
            l->palette = at::from_blob(const_cast<float*>(palette), {n_colours, 3}, at::kFloat).to(dev).clone();
        }
        l->x = at::zeros({1, l->c, l->hh, l->w}, f32);
        l->noise = at::zeros_like(l->x);
        l->ctx_noise = at::zeros_like(l->x);
        l->t_in = at::zeros({1}, f32);
        l->a_in = at::zeros({1}, i64);
        l->ctx = at::zeros({1, l->k, l->c, l->hh, l->w}, f32);
        l->ctx_a = at::full({1, l->k}, no_action, i64);
        l->ctx_t = at::full({1}, context_noise, f32);
        l->hist = at::zeros({l->k, l->c, l->hh, l->w}, f32);
        l->bad = at::zeros({}, i64);
        l->noise_host = at::empty({1, l->c, l->hh, l->w}, host(at::kFloat));
        l->ctx_noise_host = at::empty({1, l->c, l->hh, l->w}, host(at::kFloat));
        l->action_host = at::empty({1}, host(at::kLong));
        l->ctx_a_host = at::empty({l->k}, host(at::kLong));
        l->hist_actions.assign(std::size_t(l->k), no_action);
        for (int r : l->roles) {
            switch (r) {
                case kNoisyFrame: l->inputs.push_back(l->x); break;
                case kNoiseLevel: l->inputs.push_back(l->t_in); break;
                case kAction: l->inputs.push_back(l->a_in); break;
                case kContextFrames: l->inputs.push_back(l->ctx); break;
                case kContextActions: l->inputs.push_back(l->ctx_a); break;
                case kContextNoise: l->inputs.push_back(l->ctx_t); break;
                default: throw std::invalid_argument("unknown input role " + std::to_string(r));
            }
        }
        l->use_graph = use_graph != 0 && dev.is_cuda();
        return l.release();
    });
}

// Clears the context and pushes n real frames [n, C, H, W] (host) led by actions [n]; ctx_noise: n frames of
// context noise (nullptr at context noise 0).
__attribute__((visibility("default"))) int nf_aoti_loop_reset(void* loop, const float* frames, std::int64_t n,
                                                              const std::int64_t* actions, const float* ctx_noise,
                                                              char* err, std::size_t err_len) {
    return guarded(err, err_len, 1, [&]() -> int {
        auto* l = static_cast<Loop*>(loop);
        l->n_pushed = 0;
        std::fill(l->hist_actions.begin(), l->hist_actions.end(), l->no_action);
        const std::int64_t numel = l->c * l->hh * l->w;
        for (std::int64_t i = 0; i < n; ++i) {
            l->x.copy_(at::from_blob(const_cast<float*>(frames + i * numel), l->x.sizes(), at::kFloat));
            if (ctx_noise != nullptr)
                l->ctx_noise.copy_(at::from_blob(const_cast<float*>(ctx_noise + i * numel), l->x.sizes(), at::kFloat));
            push(*l);
            push_host(*l, actions[i]);
            refresh_context(*l);
        }
        return 0;
    });
}

// Generates the next frame for action from noise (one frame, host) and, at context noise > 0, ctx_noise (one
// frame); writes it to out when out is not nullptr. Returns 0, or 1 with err written (a non-finite frame is
// refused and not kept: the context stays as it was only where no graph ran; the caller should reset).
__attribute__((visibility("default"))) int nf_aoti_loop_step(void* loop, std::int64_t action, const float* noise,
                                                             const float* ctx_noise, float* out, char* err,
                                                             std::size_t err_len) {
    return guarded(err, err_len, 1, [&]() -> int {
        auto* l = static_cast<Loop*>(loop);
        const std::int64_t numel = l->c * l->hh * l->w;
        std::memcpy(l->noise_host.data_ptr<float>(), noise, std::size_t(numel) * sizeof(float));
        l->noise.copy_(l->noise_host, true);
        if (ctx_noise != nullptr) {
            std::memcpy(l->ctx_noise_host.data_ptr<float>(), ctx_noise, std::size_t(numel) * sizeof(float));
            l->ctx_noise.copy_(l->ctx_noise_host, true);
        }
        l->action_host.data_ptr<std::int64_t>()[0] = action;
        l->a_in.copy_(l->action_host, true);
        // steady state (K frames pushed: the context refresh is the identity the graph holds)
        const bool steady = l->n_pushed >= l->k;
#ifdef NF_AOTI_CUDA
        if (l->use_graph && steady) {
            c10::cuda::CUDAGuard guard(l->h->device);
            if (!l->captured) {
                step_body(*l);  // warm: the package's lazy initialisation runs outside the capture
                push_host(*l, action);
                // a capture records kernels without running them, so the state just computed stays as it is
                at::cuda::getCurrentCUDAStream(l->h->device.index()).synchronize();
                at::cuda::CUDAStream stream = c10::cuda::getStreamFromPool(false, l->h->device.index());
                {
                    c10::cuda::CUDAStreamGuard sg(stream);
                    auto graph = std::make_unique<at::cuda::CUDAGraph>();
                    bool capturing = false;
                    try {
                        graph->capture_begin();
                        capturing = true;
                        step_body(*l);
                        capturing = false;
                        graph->capture_end();
                        l->graph = std::move(graph);
                    } catch (const std::exception&) {
                        // the package cannot be captured: eager from now on (replays stay 0), the stream left
                        // out of capture mode
                        if (capturing) {
                            try {
                                graph->capture_end();
                            } catch (...) {
                            }
                        }
                        l->use_graph = false;
                    }
                }
                stream.synchronize();
                l->captured = true;
            } else {
                l->graph->replay();
                ++l->replays;
                push_host(*l, action);
            }
            check_finite(l->bad.item<std::int64_t>(), numel, "the context holds it: reset");
            copy_out(*l, out);
            return 0;
        }
#endif
        (void)steady;
        denoise(*l);
        check_finite(l->x.isfinite().logical_not().sum().item<std::int64_t>(), numel, "the frame was not kept");
        l->x.clamp_(-1.0f, 1.0f);
        snap(*l);
        push(*l);
        push_host(*l, action);
        refresh_context(*l);
        copy_out(*l, out);
        return 0;
    });
}

// The last generated frame (host copy), for a caller that stepped without asking for it.
__attribute__((visibility("default"))) int nf_aoti_loop_frame(void* loop, float* out, char* err, std::size_t err_len) {
    return guarded(err, err_len, 1, [&]() -> int {
        copy_out(*static_cast<Loop*>(loop), out);
        return 0;
    });
}

// CUDA graph replays since open (0 on CPU or without graphs).
__attribute__((visibility("default"))) std::int64_t nf_aoti_loop_replays(void* loop) {
    return static_cast<Loop*>(loop)->replays;
}

__attribute__((visibility("default"))) void nf_aoti_loop_close(void* loop) { delete static_cast<Loop*>(loop); }

}  // extern "C"
