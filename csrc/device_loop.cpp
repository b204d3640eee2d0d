#include "device_loop.h"

#include <algorithm>

#include "aoti_api.h"
#include "common.h"
#include "frame_loop.h"
#include "graph_roles.h"
#include "sampler.h"

namespace nf {

namespace {

// The plugin's LoopRole numbers (csrc/aoti_plugin.cpp).
int loop_role(Role r) {
    switch (r) {
        case Role::NoisyFrame: return 0;
        case Role::NoiseLevel: return 1;
        case Role::Action: return 2;
        case Role::ContextFrames: return 3;
        case Role::ContextActions: return 4;
        case Role::ContextNoiseLevel: return 5;
        case Role::ContextFrame: return 6;
        case Role::ContextAction: return 7;
        case Role::CacheK: return 8;
        case Role::CacheV: return 9;
        case Role::CacheAges: return 10;
        default: return -1;
    }
}

// A graph's inputs as the plugin binds them: per input its role number and, for a context input, the frames it
// reads (the last n, or the one n back); depth grows to the deepest.
struct PluginInputs {
    std::vector<int> roles;
    std::vector<std::int64_t> backs;
};

PluginInputs plugin_inputs(const GraphInfo& g, const std::string& name, std::int64_t* depth) {
    PluginInputs p;
    for (std::size_t i = 0; i < g.inputs.size(); ++i) {
        const RoleSpec& r = g.input_roles[i];
        NF_CHECK_ARG(loop_role(r.role) >= 0, "device_loop: the " + name + " graph's input '" + g.inputs[i].name +
                                                 "' has role " + role_name(r.role) + ", which it does not serve");
        std::int64_t n = 0;
        if (r.role == Role::ContextFrames || r.role == Role::ContextActions) n = g.inputs[i].shape.at(1);
        if (r.role == Role::ContextFrame || r.role == Role::ContextAction) n = r.back;
        p.roles.push_back(loop_role(r.role));
        p.backs.push_back(n);
        *depth = std::max(*depth, n);
    }
    return p;
}

int output_index(const GraphInfo& g, Role role) {
    for (std::size_t i = 0; i < g.outputs.size(); ++i)
        if (g.output_roles[i].role == role) return int(i);
    return -1;
}

}  // namespace

DeviceLoop::DeviceLoop(const Bundle& bundle, const DeviceLoopParams& params) : noise_(params.seed) {
    NF_CHECK_ARG(params.device == "cuda" || params.device == "cpu",
                 "device_loop: device '" + params.device + "' (expected cuda or cpu)");
    const PluginInputs step = plugin_inputs(bundle.step, "step", &k_);
    NF_CHECK_ARG(k_ > 0, "device_loop: the step graph reads no past frame (run it with Session / FrameLoop)");
    const bool cache = bundle.uses_cache();
    PluginInputs kv;
    int k_out = -1, v_out = -1;
    if (cache) {
        NF_CHECK_ARG(!bundle.kv.file.empty(), "device_loop: the bundle writes its K/V cache with the step graph; it "
                                              "needs a kv graph (re-export it)");
        kv = plugin_inputs(bundle.kv, "kv", &k_);
        k_out = output_index(bundle.kv, Role::KNew);
        v_out = output_index(bundle.kv, Role::VNew);
        NF_CHECK_ARG(k_out >= 0 && v_out >= 0, "device_loop: the kv graph has no k_new or v_new output");
    }
    const int prediction = output_index(bundle.step, Role::Prediction);
    NF_CHECK_ARG(prediction >= 0, "device_loop: the step graph has no prediction output");
    const bool velocity = prediction_of_kind(bundle.sampler.kind) == Prediction::Velocity;

    const AotiApi& api = aoti_api();
    const auto find = [&](const char* graph) {
        const AotiPackage* package = bundle.find_aoti_package(graph, params.device);
        NF_CHECK_ARG(package != nullptr, std::string("device_loop: the bundle has no AOTInductor package of the ") + graph +
                                             " graph for " + params.device + " (re-export with `nextframe export --aoti " +
                                             params.device + "`)");
        return package;
    };
    const AotiPackage* package = find("step");
    const AotiPackage* kv_package = cache ? find("kv") : nullptr;
    NF_CHECK(api.open != nullptr, "device_loop: the AOTInductor plugin does not load: " + api.error);
    NF_CHECK(api.loop_open != nullptr, "device_loop: " + api.path + " has no device loop (rebuild the plugin)");
    for (const AotiPackage* p : {package, kv_package})
        NF_CHECK_ARG(p == nullptr || p->torch_version.rfind(api.torch_version, 0) == 0,
                     "bundle: AOTInductor package " + p->file + " was built by torch " + p->torch_version +
                         ", the plugin runs torch " + api.torch_version + " (re-export with this torch)");
    device_ = params.device == "cpu" ? "cpu" : "cuda:" + std::to_string(params.device_id);
    package_ = package->file;
    const std::int64_t threads = params.device == "cpu" ? params.threads : 0;
    handle_ = api.open(bundle.path_of(package->file).c_str(), device_.c_str(), threads, err_, sizeof(err_));
    NF_CHECK(handle_ != nullptr, "device_loop: could not load " + package->file + " on " + device_ + ": " + err_);
    if (kv_package != nullptr) {
        kv_handle_ = api.open(bundle.path_of(kv_package->file).c_str(), device_.c_str(), threads, err_, sizeof(err_));
        if (kv_handle_ == nullptr) {
            api.close(handle_);
            throw RuntimeError("device_loop: could not load " + kv_package->file + " on " + device_ + ": " + err_);
        }
    }

    const FrameInfo& f = bundle.frame;
    numel_ = f.channels * f.height * f.width;
    n_actions_ = bundle.n_actions;
    no_action_ = bundle.no_action;
    context_noise_ = float(bundle.sampler.context_noise);
    cuda_graph_ = params.device == "cuda" && params.cuda_graph && api.loop_cuda_graphs() != 0;
    const std::int64_t shape[4] = {k_, f.channels, f.height, f.width};
    loop_ = api.loop_open(handle_, int(step.roles.size()), step.roles.data(), step.backs.data(), prediction,
                          velocity ? 1 : 0, shape, no_action_, bundle.sampler.times.data(), int(bundle.sampler.times.size()),
                          f.palette.empty() ? nullptr : f.palette.data(), int(f.palette.size() / 3), context_noise_,
                          cuda_graph_ ? 1 : 0, err_, sizeof(err_));
    int rc = loop_ == nullptr ? 1 : 0;
    if (rc == 0 && cache) {
        const KvCacheLayout& c = bundle.kv_cache;
        const std::int64_t layout[6] = {c.n_layers, c.n_heads, c.n_slots, c.window, c.tokens_per_frame, c.head_dim};
        rc = api.loop_cache(loop_, kv_handle_, int(kv.roles.size()), kv.roles.data(), kv.backs.data(), k_out, v_out, layout,
                            err_, sizeof(err_));
    }
    if (rc != 0) {
        const std::string why = err_;
        if (loop_ != nullptr) api.loop_close(loop_);
        if (kv_handle_ != nullptr) api.close(kv_handle_);
        api.close(handle_);
        loop_ = kv_handle_ = handle_ = nullptr;
        throw RuntimeError("device_loop: " + why);
    }
    noise_buf_.resize(std::size_t(numel_));
    ctx_noise_buf_.resize(std::size_t(numel_));
}

DeviceLoop::~DeviceLoop() {
    const AotiApi& api = aoti_api();
    if (loop_ != nullptr) api.loop_close(loop_);
    if (kv_handle_ != nullptr) api.close(kv_handle_);
    if (handle_ != nullptr) api.close(handle_);
}

void DeviceLoop::check(int rc, const char* what) const {
    if (rc != 0) throw RuntimeError(std::string("device_loop: ") + what + ": " + err_);
}

void DeviceLoop::reset(const float* frames, std::int64_t n_frames, const std::int64_t* actions) {
    NF_CHECK_ARG(n_frames >= 1, "device_loop: reset needs at least one frame");
    check_frames_in_range(frames, n_frames, numel_, "device_loop");
    for (std::int64_t i = 0; i < n_frames; ++i)
        NF_CHECK_ARG(actions[i] >= 0 && actions[i] <= no_action_,
                     "device_loop: action " + std::to_string(actions[i]) + " outside 0.." + std::to_string(no_action_));
    // the seeded stream's order (frame_loop.h): per context frame its context noise, drawn only at a level > 0
    std::vector<float> ctx;
    if (context_noise_ > 0.0f) {
        ctx.resize(std::size_t(n_frames * numel_));
        noise_.fill(ctx.data(), n_frames * numel_);
    }
    check(aoti_api().loop_reset(loop_, frames, n_frames, actions, ctx.empty() ? nullptr : ctx.data(), err_, sizeof(err_)),
          "reset failed");
    has_context_ = true;
    has_frame_ = false;
}

void DeviceLoop::step(std::int64_t action, float* out) {
    NF_CHECK_ARG(has_context_, "device_loop: step before reset (no context frame)");
    NF_CHECK_ARG(action >= 0 && action < n_actions_,
                 "device_loop: action " + std::to_string(action) + " outside 0.." + std::to_string(n_actions_ - 1));
    noise_.fill(noise_buf_.data(), numel_);
    const float* ctx = nullptr;
    if (context_noise_ > 0.0f) {
        noise_.fill(ctx_noise_buf_.data(), numel_);
        ctx = ctx_noise_buf_.data();
    }
    check(aoti_api().loop_step(loop_, action, noise_buf_.data(), ctx, out, err_, sizeof(err_)), "step failed");
    has_frame_ = true;
}

void DeviceLoop::frame(float* out) {
    NF_CHECK_ARG(has_frame_, "device_loop: no frame generated since reset");
    check(aoti_api().loop_frame(loop_, out, err_, sizeof(err_)), "frame copy failed");
}

std::int64_t DeviceLoop::graph_replays() const { return aoti_api().loop_replays(loop_); }

}  // namespace nf
