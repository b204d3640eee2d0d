// The AOTInductor backend's torch side, built as its own shared library (libnf_aoti.so) so that the core never
// links torch: csrc/engine_aoti.cpp dlopens it on first use, and a runtime-only install without torch simply
// has no "aoti" backend. The boundary is a C ABI of plain pointers (no C++ type crosses it), so the plugin's
// libstdc++ ABI (torch's) and the core's need not agree.
//
// Every call: the caller's host buffers are wrapped as tensors without a copy (CPU) or copied to the device
// (CUDA), the package runs, and its outputs are copied into the caller's buffers.
//
// The device loop (nf_aoti_loop_*): the whole next-frame step on the package's device, the twin of
// csrc/frame_loop.cpp (same arithmetic order, same noise order): the frame being denoised, the last frames the
// graphs read, a transformer's K/V ring (written by slot with its kv package's output) and every graph input live in
// device tensors bound once; per frame the host sends one frame of noise (and of context noise, where the bundle
// noises its context), the action, and a handful of integers (context actions, cache ages, the ring slot), and
// gets the frame back only when it asks. On CUDA (NF_AOTI_CUDA: a plugin built against a CUDA torch) the
// steady-state step (noise in, every denoising evaluation, Euler updates, clamp, palette snap, the cache write and
// the push into the context) is captured once as a CUDA graph and replayed.
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <ATen/Functions.h>
#include <ATen/Parallel.h>
#include <torch/headeronly/version.h>
#include <c10/core/Device.h>
#include <c10/core/DeviceGuard.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
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

// A package's output i: a package that returns fewer outputs than the manifest lists is an error, not a read past
// the vector.
const at::Tensor& output_at(const std::vector<at::Tensor>& outs, std::int64_t i, const char* graph) {
    if (i < 0 || std::size_t(i) >= outs.size())
        throw std::runtime_error(std::string("the ") + graph + " package returned " + std::to_string(outs.size()) +
                                 " outputs (the manifest lists at least " + std::to_string(i + 1) + ")");
    return outs[std::size_t(i)];
}

// The device a call makes current (c10::OptionalDeviceGuard): the package's on CUDA (its runner takes the current
// device's stream: another thread or device_id would otherwise run it elsewhere), none on the CPU.
std::optional<c10::Device> cuda_only(const c10::Device& device) {
    return device.is_cuda() ? std::optional<c10::Device>(device) : std::nullopt;
}

// Input roles the device loop binds (csrc/device_loop.cpp keeps the same numbers).
enum LoopRole {
    kNoisyFrame = 0, kNoiseLevel = 1, kAction = 2, kContextFrames = 3, kContextActions = 4, kContextNoise = 5,
    kContextFrame = 6, kContextAction = 7, kCacheK = 8, kCacheV = 9, kCacheAges = 10
};

// A context input (graph_roles.h): the last n frames or their actions (kContextFrames / kContextActions), or the
// frame or action n back (kContextFrame / kContextAction). Graphs that read the same one share it.
struct ContextInput {
    int role = 0;
    std::int64_t n = 0;
    at::Tensor dev;   // the graph input
    at::Tensor host;  // actions: pinned staging on CUDA
};

struct Loop {
    Handle* h = nullptr;
    int prediction = 0;      // index of the prediction among the package's outputs
    bool velocity = false;   // the prediction is the flow velocity (else the clean frame)
    std::int64_t depth = 0, c = 0, hh = 0, w = 0, no_action = 0;  // depth: frames kept for the context inputs
    std::vector<double> times;
    float context_noise = 0.0f;
    at::Tensor palette;  // [n, 3] on the device; undefined: no snapping
    // device state, bound once
    at::Tensor x, t_in, a_in, ctx_t, hist, noise, ctx_noise, bad;
    at::Tensor noise_host, ctx_noise_host, action_host;  // pinned staging on CUDA
    std::vector<ContextInput> contexts;
    std::vector<int> step_roles;            // the step package's inputs (LoopRole, frames read), kept until bound
    std::vector<std::int64_t> step_backs;
    std::vector<at::Tensor> inputs;         // empty until bound (a K/V-cache bundle: by nf_aoti_loop_cache)
    std::vector<std::int64_t> hist_actions;  // host mirror: the actions that led to the pushed frames kept
    std::int64_t n_pushed = 0;
    // the K/V ring of a transformer bundle (kv == nullptr: none), csrc/kv_cache.h's layout and rules
    Handle* kv = nullptr;     // the kv graph's package: one frame's K/V from the finished frame
    std::vector<at::Tensor> kv_inputs;
    int k_out = 0, v_out = 0;
    at::Tensor xp;            // the frame as pushed (noised to the context level): the kv graph's input
    at::Tensor k_ring, v_ring, ages, slot, ages_host, slot_host;
    std::vector<std::int64_t> slot_pos;  // host mirror: the frame position each slot holds, -1 empty
    bool use_graph = false, captured = false;
    std::int64_t replays = 0;
#ifdef NF_AOTI_CUDA
    std::unique_ptr<at::cuda::CUDAGraph> graph;
    // a capture that failed: kept until close, since a CUDAGraph whose capture_end threw may still be referenced by
    // the caching allocator's capture filter (freeing it would leave that pointer dangling)
    std::unique_ptr<at::cuda::CUDAGraph> failed_graph;
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

// Push the frame in x (noised to the context level, as the core's push): a transformer's kv package computes its
// K/V from it and the context as it was (the cache write reads the context before this frame, frame_loop.cpp), written
// into the ring at the slot the host set; then into hist, the last `depth` pushed frames oldest first. Device work
// only: push_host keeps the count, the actions and the ring's bookkeeping, refresh_frames the inputs.
void push(Loop& l) {
    at::Tensor pushed = l.context_noise > 0.0f ? l.x.mul(1.0f - l.context_noise).add_(l.ctx_noise.mul(l.context_noise)) : l.x;
    if (l.kv != nullptr) {
        l.xp.copy_(pushed);
        std::vector<at::Tensor> outs = l.kv->loader->run(l.kv_inputs);
        l.k_ring.index_copy_(3, l.slot, output_at(outs, l.k_out, "kv").unsqueeze(3));
        l.v_ring.index_copy_(3, l.slot, output_at(outs, l.v_out, "kv").unsqueeze(3));
        pushed = l.xp;
    }
    if (l.n_pushed < l.depth) {
        l.hist[l.n_pushed].copy_(pushed[0]);
    } else {
        l.hist.narrow(0, 0, l.depth - 1).copy_(l.hist.narrow(0, 1, l.depth - 1).clone());
        l.hist[l.depth - 1].copy_(pushed[0]);
    }
}

// Where the frame b back reads from hist after n >= 1 pushes: while fewer than b frames were pushed the first stands
// in (frame_history.h); from `depth` pushes on it is hist[depth - b], a fixed place (what the CUDA graph replays).
std::int64_t back_index(std::int64_t n, std::int64_t depth, std::int64_t b) {
    return std::max<std::int64_t>(n - b, 0) - std::max<std::int64_t>(n - depth, 0);
}

std::int64_t action_back(const Loop& l, std::int64_t b) {  // a stand-in frame is led by no action
    return l.n_pushed - b >= 0 ? l.hist_actions[std::size_t(back_index(l.n_pushed, l.depth, b))] : l.no_action;
}

// The frame inputs from hist; before any push they are zeros (the core feeds zeros: nothing to read).
void refresh_frames(Loop& l) {
    const std::int64_t n = l.n_pushed;
    for (ContextInput& c : l.contexts) {
        if (c.role != kContextFrames && c.role != kContextFrame) continue;
        if (n == 0) {
            c.dev.zero_();
        } else if (c.role == kContextFrame) {
            c.dev[0].copy_(l.hist[back_index(n, l.depth, c.n)]);
        } else if (n >= l.depth) {
            c.dev[0].copy_(l.hist.narrow(0, l.depth - c.n, c.n));
        } else {  // slot j (oldest first) holds the frame n - j back
            std::vector<std::int64_t> idx(std::size_t(c.n));
            for (std::int64_t j = 0; j < c.n; ++j) idx[std::size_t(j)] = back_index(n, l.depth, c.n - j);
            c.dev[0].copy_(l.hist.index_select(0, at::tensor(idx, at::TensorOptions().dtype(at::kLong)).to(l.x.device())));
        }
    }
}

// The host's share of a push and of a reset: the count, the actions, the action inputs, and for a K/V ring the ages
// and the slot of the next frame (csrc/kv_cache.cpp: age = pos - slot_pos, 0 for an empty slot).
// non_blocking: from pinned staging on CUDA; only where a synchronisation comes before the staging is written again.
void refresh_host(Loop& l, bool non_blocking) {
    for (ContextInput& c : l.contexts) {
        if (c.role != kContextActions && c.role != kContextAction) continue;
        auto* a = c.host.data_ptr<std::int64_t>();
        if (c.role == kContextAction) a[0] = action_back(l, c.n);
        else for (std::int64_t j = 0; j < c.n; ++j) a[j] = action_back(l, c.n - j);
        c.dev.copy_(c.host.view(c.dev.sizes()), non_blocking);
    }
    if (l.kv == nullptr) return;
    const auto n_slots = std::int64_t(l.slot_pos.size());
    auto* ages = l.ages_host.data_ptr<std::int64_t>();
    for (std::int64_t s = 0; s < n_slots; ++s)
        ages[s] = l.slot_pos[std::size_t(s)] < 0 ? 0 : l.n_pushed - l.slot_pos[std::size_t(s)];
    l.slot_host.data_ptr<std::int64_t>()[0] = l.n_pushed % n_slots;
    l.ages.copy_(l.ages_host, non_blocking);
    l.slot.copy_(l.slot_host, non_blocking);
}

// non_blocking: as refresh_host; a step checks its frame (a synchronisation) before the next writes the staging.
void push_host(Loop& l, std::int64_t action, bool non_blocking = true) {
    if (l.n_pushed < l.depth) {
        l.hist_actions[std::size_t(l.n_pushed)] = action;
    } else {
        std::rotate(l.hist_actions.begin(), l.hist_actions.begin() + 1, l.hist_actions.end());
        l.hist_actions.back() = action;
    }
    if (l.kv != nullptr) l.slot_pos[std::size_t(l.n_pushed % std::int64_t(l.slot_pos.size()))] = l.n_pushed;
    ++l.n_pushed;
    refresh_host(l, non_blocking);
}

// A package's inputs in its order, bound to the loop's tensors by role; context inputs are made on first use. frame,
// level: what the noisy_frame and noise_level roles read (the step: the frame being denoised at its level; the kv
// graph: the frame as pushed, at the context's level, as the core's push sets them).
std::vector<at::Tensor> bind(Loop& l, int n_in, const int* roles, const std::int64_t* backs, const at::Tensor& frame,
                             const at::Tensor& level) {
    const c10::Device dev = l.h->device;
    std::vector<at::Tensor> out;
    for (int i = 0; i < n_in; ++i) {
        const int r = roles[i];
        const std::int64_t n = backs[i];
        switch (r) {
            case kNoisyFrame: out.push_back(frame); break;
            case kNoiseLevel: out.push_back(level); break;
            case kAction: out.push_back(l.a_in); break;
            case kContextNoise: out.push_back(l.ctx_t); break;
            case kCacheK: out.push_back(l.k_ring); break;
            case kCacheV: out.push_back(l.v_ring); break;
            case kCacheAges: out.push_back(l.ages); break;
            case kContextFrames: case kContextActions: case kContextFrame: case kContextAction: {
                if (n < 1 || n > l.depth)
                    throw std::invalid_argument("context input reads " + std::to_string(n) + " frames (kept: " +
                                                std::to_string(l.depth) + ")");
                auto it = std::find_if(l.contexts.begin(), l.contexts.end(),
                                       [&](const ContextInput& c) { return c.role == r && c.n == n; });
                if (it == l.contexts.end()) {
                    ContextInput c{r, n, {}, {}};
                    const bool frames = r == kContextFrames || r == kContextFrame;
                    std::vector<std::int64_t> shape{1};
                    if (r == kContextFrames || r == kContextActions) shape.push_back(n);
                    if (frames) shape.insert(shape.end(), {l.c, l.hh, l.w});
                    c.dev = at::zeros(shape, at::TensorOptions().dtype(frames ? at::kFloat : at::kLong).device(dev));
                    if (!frames) {
                        c.dev.fill_(l.no_action);
                        c.host = at::empty({c.dev.numel()}, at::TensorOptions().dtype(at::kLong).pinned_memory(dev.is_cuda()));
                    }
                    l.contexts.push_back(c);
                    it = l.contexts.end() - 1;
                }
                out.push_back(it->dev);
                break;
            }
            default: throw std::invalid_argument("unknown input role " + std::to_string(r));
        }
    }
    return out;
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
        euler(l, output_at(outs, l.prediction, "step"), l.times[i], l.times[i + 1]);
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
    refresh_frames(l);  // K or more frames pushed: fixed copies from hist
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
        // run_single_threaded on a GPU: the multi-threaded runner queries and synchronises its own CUDA event on every
        // run, which CUDA forbids inside the device loop's graph capture; our engines run one call at a time anyway
        h->loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(
            package_path, "model", /*run_single_threaded=*/h->device.is_cuda(), 1,
            h->device.is_cuda() ? h->device.index() : c10::DeviceIndex(-1));
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
        c10::OptionalDeviceGuard guard(cuda_only(h->device));
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

// A device loop over an opened package. roles, backs: per package input its LoopRole and, for a context input, how
// many frames it reads (the last n) or how far back; prediction: the output to integrate; frame [depth, c, h, w] =
// frames kept for the context inputs and frame shape; times: the schedule, n_times values from 1 down to 0;
// palette: n_colours x 3 values in [-1, 1] (nullptr: no snapping); use_graph: capture CUDA graphs (CUDA only).
// A bundle with a K/V ring adds it with nf_aoti_loop_cache before the first reset.
__attribute__((visibility("default"))) void* nf_aoti_loop_open2(void* handle, int n_in, const int* roles,
                                                                const std::int64_t* backs, int prediction, int velocity,
                                                                const std::int64_t* frame, std::int64_t no_action,
                                                                const double* times, int n_times, const float* palette,
                                                                int n_colours, float context_noise, int use_graph,
                                                                char* err, std::size_t err_len) {
    return guarded(err, err_len, static_cast<void*>(nullptr), [&]() -> void* {
        auto l = std::make_unique<Loop>();
        l->h = static_cast<Handle*>(handle);
        c10::OptionalDeviceGuard guard(cuda_only(l->h->device));
        l->prediction = prediction;
        l->velocity = velocity != 0;
        l->depth = frame[0], l->c = frame[1], l->hh = frame[2], l->w = frame[3];
        if (l->depth < 1) throw std::invalid_argument("the graphs read no past frame");
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
        l->ctx_t = at::full({1}, context_noise, f32);
        l->hist = at::zeros({l->depth, l->c, l->hh, l->w}, f32);
        l->bad = at::zeros({}, i64);
        l->noise_host = at::empty({1, l->c, l->hh, l->w}, host(at::kFloat));
        l->ctx_noise_host = at::empty({1, l->c, l->hh, l->w}, host(at::kFloat));
        l->action_host = at::empty({1}, host(at::kLong));
        l->hist_actions.assign(std::size_t(l->depth), no_action);
        l->step_roles.assign(roles, roles + n_in);
        l->step_backs.assign(backs, backs + n_in);
        const bool reads_cache = std::any_of(roles, roles + n_in, [](int r) { return r == kCacheK || r == kCacheV || r == kCacheAges; });
        if (!reads_cache) l->inputs = bind(*l, n_in, roles, backs, l->x, l->t_in);
        l->use_graph = use_graph != 0 && dev.is_cuda();
        return l.release();
    });
}

// Adds a K/V ring to a loop whose step package reads one: kv_handle runs the kv graph (roles, backs as above;
// k_out, v_out: its outputs' indices); layout = {layers, heads, slots, window, tokens per frame, head dim}
// (csrc/kv_cache.h). The step package's inputs, given to nf_aoti_loop_open2, are bound here with the ring.
__attribute__((visibility("default"))) int nf_aoti_loop_cache(void* loop, void* kv_handle, int n_kv, const int* kv_roles,
                                                              const std::int64_t* kv_backs, int k_out, int v_out,
                                                              const std::int64_t* layout, char* err, std::size_t err_len) {
    return guarded(err, err_len, 1, [&]() -> int {
        auto* l = static_cast<Loop*>(loop);
        c10::OptionalDeviceGuard guard(cuda_only(l->h->device));
        auto* kv = static_cast<Handle*>(kv_handle);
        if (kv->device != l->h->device) throw std::invalid_argument("the kv package is on another device");
        const auto f32 = at::TensorOptions().dtype(at::kFloat).device(l->h->device);
        const auto i64 = at::TensorOptions().dtype(at::kLong).device(l->h->device);
        const auto host = at::TensorOptions().dtype(at::kLong).pinned_memory(l->h->device.is_cuda());
        l->kv = kv;
        l->k_out = k_out;
        l->v_out = v_out;
        l->k_ring = at::zeros({layout[0], 1, layout[1], layout[2], layout[4], layout[5]}, f32);
        l->v_ring = at::zeros_like(l->k_ring);
        l->ages = at::zeros({layout[2]}, i64);
        l->slot = at::zeros({1}, i64);
        l->ages_host = at::empty({layout[2]}, host);
        l->slot_host = at::empty({1}, host);
        l->slot_pos.assign(std::size_t(layout[2]), -1);
        l->xp = at::zeros_like(l->x);
        l->inputs = bind(*l, int(l->step_roles.size()), l->step_roles.data(), l->step_backs.data(), l->x, l->t_in);
        l->kv_inputs = bind(*l, n_kv, kv_roles, kv_backs, l->xp, l->ctx_t);
        return 0;
    });
}

// Clears the context and pushes n real frames [n, C, H, W] (host) led by actions [n]; ctx_noise: n frames of
// context noise (nullptr at context noise 0).
__attribute__((visibility("default"))) int nf_aoti_loop_reset(void* loop, const float* frames, std::int64_t n,
                                                              const std::int64_t* actions, const float* ctx_noise,
                                                              char* err, std::size_t err_len) {
    return guarded(err, err_len, 1, [&]() -> int {
        auto* l = static_cast<Loop*>(loop);
        c10::OptionalDeviceGuard guard(cuda_only(l->h->device));
        if (l->inputs.empty())
            throw std::invalid_argument("the step package reads a K/V ring: add it first (nf_aoti_loop_cache)");
        l->n_pushed = 0;
        std::fill(l->hist_actions.begin(), l->hist_actions.end(), l->no_action);
        std::fill(l->slot_pos.begin(), l->slot_pos.end(), -1);  // the ring's memory stays: empty slots are never read
        refresh_host(*l, false);
        refresh_frames(*l);
        const std::int64_t numel = l->c * l->hh * l->w;
        for (std::int64_t i = 0; i < n; ++i) {
            l->x.copy_(at::from_blob(const_cast<float*>(frames + i * numel), l->x.sizes(), at::kFloat));
            if (ctx_noise != nullptr)
                l->ctx_noise.copy_(at::from_blob(const_cast<float*>(ctx_noise + i * numel), l->x.sizes(), at::kFloat));
            l->action_host.data_ptr<std::int64_t>()[0] = actions[i];  // the kv graph reads the action that led to it
            l->a_in.copy_(l->action_host);
            push(*l);
            push_host(*l, actions[i], false);
            refresh_frames(*l);
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
        c10::OptionalDeviceGuard guard(cuda_only(l->h->device));
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
        const bool steady = l->n_pushed >= l->depth;
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
                        l->failed_graph = std::move(graph);
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
        refresh_frames(*l);
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
