#include "frame_loop.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>

#include "common.h"

namespace nf {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

Schedule make_schedule(const Bundle& b, const FrameLoopParams& p) {
    if (p.disa.enabled) return Schedule(p.disa, b.sampler.shift);
    NF_CHECK_ARG(p.n_steps >= 0, "frame_loop: n_steps must be non-negative (got " + std::to_string(p.n_steps) + ")");
    if (p.n_steps == 0 || p.n_steps == b.sampler.n_steps) return Schedule(b.sampler.times);
    return Schedule(flow_schedule(p.n_steps, b.sampler.shift));
}

}  // namespace

// The sampler's view of the engine: copy x into the graph input, set t, run, return the prediction.
class FrameLoop::Model final : public ModelFn {
public:
    explicit Model(FrameLoop& loop) : loop_(loop) {}
    const float* predict(const float* x, double t) override {
        float* xin = loop_.x_in_.data<float>();
        if (x != xin) std::memcpy(xin, x, sizeof(float) * std::size_t(loop_.numel_));
        loop_.t_in_.data<float>()[0] = float(t);
        loop_.run_engine();
        return loop_.prediction_.data<float>();
    }

private:
    FrameLoop& loop_;
};

FrameLoop::FrameLoop(const Bundle& bundle, std::unique_ptr<Engine> engine, const FrameLoopParams& params,
                     std::unique_ptr<Engine> kv_engine, std::vector<std::unique_ptr<Engine>> group_engines)
    : channels_(bundle.frame.channels),
      height_(bundle.frame.height),
      width_(bundle.frame.width),
      numel_(channels_ * height_ * width_),
      n_actions_(bundle.n_actions),
      no_action_(bundle.no_action),
      context_noise_(float(bundle.sampler.context_noise)),
      palette_(bundle.frame.palette),
      engine_(std::move(engine)),
      kv_engine_(std::move(kv_engine)),
      kv_(bundle.uses_cache() ? std::make_unique<KvCache>(bundle.kv_cache) : nullptr),
      history_(bundle.history_depth(), channels_ * height_ * width_, bundle.no_action),
      schedule_(make_schedule(bundle, params)),
      sampler_(params.sampler, prediction_of_kind(bundle.sampler.kind), numel_),
      stats_(params.n_warmup_frames),
      params_(params),
      seeded_(params.seed) {
    NF_CHECK_ARG(engine_ != nullptr, "frame_loop: no engine");
    // squared distance below which a pixel's colour needs no search (snap_to_palette): 0.2 = 0.447^2 of the smallest
    // squared distance between two colours; 0 (never) with duplicate colours or a single one
    const std::size_t n_colours = palette_.size() / 3;
    float closest = std::numeric_limits<float>::infinity();
    for (std::size_t a = 0; a < n_colours; ++a) {
        for (std::size_t c = a + 1; c < n_colours; ++c) {
            float d = 0.0f;
            for (int k = 0; k < 3; ++k) d += (palette_[3 * a + k] - palette_[3 * c + k]) * (palette_[3 * a + k] - palette_[3 * c + k]);
            closest = std::min(closest, d);
        }
    }
    palette_accept_ = n_colours > 1 ? 0.2f * closest : 0.0f;
    NF_CHECK_ARG(kv_engine_ == nullptr || kv_ != nullptr, "frame_loop: a kv engine for a bundle without a cache");
    const Shape frame = {1, channels_, height_, width_};
    x_in_ = HostTensor(DType::F32, frame);
    t_in_ = HostTensor(DType::F32, {1});
    action_in_ = HostTensor(DType::I64, {1});
    context_noise_in_ = HostTensor(DType::F32, {1});
    context_noise_in_.data<float>()[0] = context_noise_;
    for (std::size_t i = 0; i < bundle.step.inputs.size(); ++i) {
        const RoleSpec& r = bundle.step.input_roles[i];
        if (!is_context_role(r.role)) continue;
        ContextInput c;
        c.role = r;
        const Shape& shape = bundle.step.inputs[i].shape;
        if (r.role == Role::ContextFrames || r.role == Role::ContextActions) c.n_frames = shape[1];
        c.tensor = HostTensor(r.role == Role::ContextFrame || r.role == Role::ContextFrames ? DType::F32 : DType::I64, shape);
        context_inputs_.push_back(std::move(c));
    }
    if (kv_) {
        ages_in_ = HostTensor(DType::I64, {kv_->layout().n_slots});
        k_new_ = HostTensor(DType::F32, kv_->layout().frame_kv_shape());
        v_new_ = HostTensor(DType::F32, kv_->layout().frame_kv_shape());
    }
    prediction_ = HostTensor(DType::F32, frame);
    x_state_ = HostTensor(DType::F32, {numel_});
    carry_ = HostTensor(DType::F32, {kCarry, numel_});
    spec_frame_ = HostTensor(DType::F32, {numel_});
    spec_noise_ = HostTensor(DType::F32, {2, numel_});

    bindings_ = bind_io(*engine_, bundle.step, "step", false);
    if (kv_engine_) kv_bindings_ = bind_io(*kv_engine_, bundle.kv, "kv", true);
    NF_CHECK_ARG(group_engines.empty() || group_engines.size() == bundle.step_groups.size(),
                 "frame_loop: " + std::to_string(group_engines.size()) + " step-group engines for " +
                     std::to_string(bundle.step_groups.size()) + " step groups");
    for (std::size_t i = 0; i < group_engines.size(); ++i) {
        NF_CHECK_ARG(group_engines[i] != nullptr, "frame_loop: no engine for step group " + std::to_string(i));
        Group g{bundle.step_groups[i].t_min, bundle.step_groups[i].t_max, std::move(group_engines[i]), {}, 0};
        g.bindings = bind_io(*g.engine, bundle.step, "step group " + std::to_string(i), false);
        groups_.push_back(std::move(g));
    }
    refresh_context();
    model_fn_ = std::make_unique<Model>(*this);
    if (params_.speculate) worker_ = std::thread([this] { worker_main(); });
}

// Each engine input and output is bound to the loop's buffer for its manifest role; the engine's own io
// list (what the loaded graph really has) must match the manifest's by name.
Bindings FrameLoop::bind_io(const Engine& engine, const GraphInfo& graph, const std::string& name, bool kv_only) {
    Bindings b;
    for (const auto& s : engine.inputs()) {
        const RoleSpec* r = graph.role_of_input(s.name);
        NF_CHECK_ARG(r != nullptr, "frame_loop: " + name + " graph input '" + s.name + "' not in the manifest");
        HostTensor* t = nullptr;
        switch (r->role) {
            case Role::NoisyFrame: t = &x_in_; break;
            case Role::NoiseLevel: t = &t_in_; break;
            case Role::Action: t = &action_in_; break;
            case Role::ContextNoiseLevel: t = &context_noise_in_; break;
            case Role::CacheK: t = kv_ ? &kv_->k() : nullptr; break;
            case Role::CacheV: t = kv_ ? &kv_->v() : nullptr; break;
            case Role::CacheAges: t = kv_ ? &ages_in_ : nullptr; break;
            default:
                for (auto& c : context_inputs_)
                    if (c.role.role == r->role && c.role.back == r->back) t = &c.tensor;
        }
        NF_CHECK_ARG(t != nullptr, "frame_loop: " + name + " graph input '" + s.name + "' (" + role_name(r->role) +
                                       ") has no buffer");
        b.inputs.push_back(t);
    }
    bool has_prediction = false, has_k = false, has_v = false;
    for (const auto& s : engine.outputs()) {
        const RoleSpec* r = graph.role_of_output(s.name);
        NF_CHECK_ARG(r != nullptr, "frame_loop: " + name + " graph output '" + s.name + "' not in the manifest");
        HostTensor* t = nullptr;
        if (r->role == Role::Prediction && !kv_only) t = &prediction_, has_prediction = true;
        else if (r->role == Role::KNew && kv_) t = &k_new_, has_k = true;
        else if (r->role == Role::VNew && kv_) t = &v_new_, has_v = true;
        NF_CHECK_ARG(t != nullptr, "frame_loop: " + name + " graph output '" + s.name + "' not understood");
        b.outputs.push_back(t);
    }
    NF_CHECK_ARG(engine.inputs().size() == graph.inputs.size(),
                 "frame_loop: " + name + " graph has " + std::to_string(engine.inputs().size()) + " inputs (manifest: " +
                     std::to_string(graph.inputs.size()) + ")");
    NF_CHECK_ARG(kv_only || has_prediction, "frame_loop: " + name + " graph has no prediction output");
    NF_CHECK_ARG(!kv_ || (has_k && has_v), "frame_loop: " + name + " graph has no output 'k_new' or 'v_new'");
    return b;
}

void FrameLoop::refresh_context() {
    for (auto& c : context_inputs_)
        read_context(history_, c.role.role, has_back(c.role.role) ? c.role.back : c.n_frames, c.tensor.raw());
}

FrameLoop::~FrameLoop() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
}

// ---- worker ------------------------------------------------------------------------------------------

void FrameLoop::worker_main() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
        cv_.wait(lock, [this] { return stop_ || worker_busy_; });
        if (stop_) return;
        const std::int64_t action = task_action_;
        lock.unlock();
        std::exception_ptr error;
        try {
            speculate(action);
        } catch (...) {
            error = std::current_exception();
        }
        lock.lock();
        worker_error_ = error;
        worker_busy_ = false;
        cv_.notify_all();
    }
}

void FrameLoop::wait_worker_locked() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return !worker_busy_; });
    if (worker_error_) {
        std::exception_ptr e = worker_error_;
        worker_error_ = nullptr;
        std::rethrow_exception(e);
    }
}

void FrameLoop::speculate(std::int64_t action) {
    engine_ms_accum_ = 0;
    float* noise = spec_noise_.data<float>();
    draw(noise);
    draw_context(noise + numel_);
    try {
        std::memcpy(spec_frame_.raw(), noise, sizeof(float) * std::size_t(numel_));
        compute_frame(action, spec_frame_.data<float>(), noise + numel_);
    } catch (...) {
        // compute_frame pushes last, so the ring is untouched; give the noise back for the next draws.
        if (context_from_stream()) unread(noise + numel_);
        unread(noise);
        throw;
    }
    spec_action_ = action;
    spec_pending_ = true;
    stats_.record_background_engine(engine_ms_accum_);
}

// ---- noise -------------------------------------------------------------------------------------------

void FrameLoop::draw(float* dst) {
    if (n_carried_ > 0) {
        std::memcpy(dst, carry_.data<float>() + carry_head_ * numel_, sizeof(float) * std::size_t(numel_));
        carry_head_ = (carry_head_ + 1) % kCarry;
        --n_carried_;
        return;
    }
    if (fed_mode_) fed_.fill(dst, numel_);
    else seeded_.fill(dst, numel_);
}

// Context noise is scaled by the context-noise level before it reaches the graph. At level 0 the seeded
// stream has no context draws at all (their Box-Muller was half the runtime's own per-frame work), so they
// are neither drawn nor carried back on a rollback; fed noise is always consumed, in the documented order.
bool FrameLoop::context_from_stream() const { return fed_mode_ || context_noise_ != 0.0f; }

void FrameLoop::draw_context(float* dst) {
    if (!context_from_stream()) {
        std::memset(dst, 0, sizeof(float) * std::size_t(numel_));
        return;
    }
    draw(dst);
}

void FrameLoop::unread(const float* chunk) {
    NF_CHECK(n_carried_ < kCarry, "frame_loop: internal error: noise carry full");
    carry_head_ = (carry_head_ - 1 + kCarry) % kCarry;
    std::memcpy(carry_.data<float>() + carry_head_ * numel_, chunk, sizeof(float) * std::size_t(numel_));
    ++n_carried_;
}

bool FrameLoop::noise_available(std::int64_t n_draws) const {
    if (!fed_mode_) return true;
    return n_carried_ * numel_ + fed_.n_available() >= n_draws * numel_;
}

void FrameLoop::require_noise(std::int64_t n_draws) const {
    NF_CHECK_ARG(noise_available(n_draws), "noise: fed noise exhausted (need " + std::to_string(n_draws * numel_) +
                                               " values, " + std::to_string(n_carried_ * numel_ + fed_.n_available()) +
                                               " queued); call feed_noise first");
}

// ---- frame computation -------------------------------------------------------------------------------

void FrameLoop::run_timed(Engine& engine, const Bindings& bindings) {
    const auto t0 = Clock::now();
    engine.run(bindings);
    engine_ms_accum_ += ms_since(t0);
    stats_.record_engine_run();
}

void FrameLoop::run_engine() {
    const double t = t_in_.data<float>()[0];
    for (auto& g : groups_) {
        if (t > g.t_min && t <= g.t_max) {
            ++g.runs;
            run_timed(*g.engine, g.bindings);
            return;
        }
    }
    ++step_runs_;
    run_timed(*engine_, bindings_);
}

std::vector<std::int64_t> FrameLoop::group_runs() {
    std::lock_guard<std::mutex> api(api_mu_);
    wait_worker_locked();
    std::vector<std::int64_t> out{step_runs_};
    for (const auto& g : groups_) out.push_back(g.runs);
    return out;
}

void FrameLoop::run_kv_engine() {
    if (kv_engine_) run_timed(*kv_engine_, kv_bindings_);
    else run_engine();
}

void FrameLoop::compute_ages() {
    if (kv_) kv_->ages(ages_in_.data<std::int64_t>());
}

void FrameLoop::push_locked(const float* frame, std::int64_t action, const float* ctx_noise) {
    float* x = x_in_.data<float>();
    const float cn = context_noise_;
    noised_frame(frame, ctx_noise, cn, numel_, x);
    t_in_.data<float>()[0] = cn;
    action_in_.data<std::int64_t>()[0] = action;
    if (kv_) {  // the cache write reads the context as it was before this frame
        compute_ages();
        run_kv_engine();
        kv_->push(k_new_.data<float>(), v_new_.data<float>());
    }
    history_.push(x, action);
    refresh_context();
}

void FrameLoop::compute_frame(std::int64_t action, float* x, const float* ctx_noise) {
    action_in_.data<std::int64_t>()[0] = action;
    compute_ages();
    sampler_.run(x, schedule_.times_for(n_generated_), *model_fn_);
    // A NaN would clamp to -1 (black) and an infinity to +-1: a broken graph would pass for a dark frame.
    std::int64_t bad = 0;
    for (std::int64_t i = 0; i < numel_; ++i) {
        if (!std::isfinite(x[i])) ++bad;
        x[i] = std::min(1.0f, std::max(-1.0f, x[i]));
    }
    NF_CHECK(bad == 0, "frame_loop: the model produced " + std::to_string(bad) + " non-finite values (NaN/inf) of " +
                           std::to_string(numel_) + " in frame " + std::to_string(n_generated_) +
                           "; the frame was not kept (a broken or mis-quantized graph?)");
    snap_to_palette(x);
    push_locked(x, action, ctx_noise);
    ++n_generated_;
}

// Every pixel to the nearest of the game's colours (squared distance, the first colour on a tie; mirrored by
// runtime/reference.py and models/unet_sampling.py). The frame the model sees next is then one the game could
// show: small colour errors cannot accumulate over an open loop (a one-step U-Net's 300-frame rollout: PSNR
// 22.4 dB without, 29.1 with, against 27.8 for copying the last frame).
void FrameLoop::snap_to_palette(float* x) const {
    if (palette_.empty()) return;
    const std::int64_t hw = height_ * width_;
    const std::size_t n_colours = palette_.size() / 3;
    float* r = x;
    float* g = x + hw;
    float* b = x + 2 * hw;
    const auto distance = [&](std::int64_t i, std::size_t c) {
        const float dr = r[i] - palette_[3 * c], dg = g[i] - palette_[3 * c + 1], db = b[i] - palette_[3 * c + 2];
        return dr * dr + dg * dg + db * db;
    };
    std::size_t best = 0;
    for (std::int64_t i = 0; i < hw; ++i) {
        // Most pixels are the colour of the pixel before them. Closer to it than 0.447 of the smallest distance
        // between two colours, it is strictly the nearest (every other colour is at least 0.553 of that away), so
        // the full search would pick it too: same frame, about one distance per pixel instead of n_colours.
        if (distance(i, best) >= palette_accept_) {
            float best_d = 0.0f;
            for (std::size_t c = 0; c < n_colours; ++c) {
                const float d = distance(i, c);
                if (c == 0 || d < best_d) {
                    best = c;
                    best_d = d;
                }
            }
        }
        r[i] = palette_[3 * best];
        g[i] = palette_[3 * best + 1];
        b[i] = palette_[3 * best + 2];
    }
}

void FrameLoop::roll_back_speculation(bool keep_noise) {
    if (!spec_pending_) return;
    spec_pending_ = false;
    if (kv_) kv_->rewind(1);
    history_.rewind(1);
    refresh_context();
    --n_generated_;
    if (keep_noise) {
        const float* noise = spec_noise_.data<float>();
        if (context_from_stream()) unread(noise + numel_);
        unread(noise);
    }
}

// ---- public ------------------------------------------------------------------------------------------

void FrameLoop::validate_action(std::int64_t action, bool allow_no_action, const char* what) const {
    const std::int64_t hi = allow_no_action ? no_action_ : n_actions_ - 1;
    NF_CHECK_ARG(action >= 0 && action <= hi, std::string("frame_loop: ") + what + " " + std::to_string(action) +
                                                  " out of range (expected 0.." + std::to_string(hi) + ")");
}

void FrameLoop::reset(const float* frames, std::int64_t n_frames, const std::int64_t* actions) {
    std::lock_guard<std::mutex> api(api_mu_);
    // everything is checked before anything changes: a refused reset leaves the session as it was
    NF_CHECK_ARG(n_frames >= 0, "frame_loop: n_frames must be non-negative (got " + std::to_string(n_frames) + ")");
    for (std::int64_t i = 0; i < n_frames; ++i) validate_action(actions[i], true, "context action");
    check_frames_in_range(frames, n_frames, numel_, "frame_loop");
    wait_worker_locked();
    // dropping a pending speculative frame changes nothing a caller sees (its noise goes back to the stream, and
    // the next step computes the same frame), so the noise check may follow it
    roll_back_speculation(true);
    require_noise(n_frames);
    if (kv_) kv_->clear();
    history_.clear();
    refresh_context();
    n_generated_ = 0;
    for (std::int64_t i = 0; i < n_frames; ++i) {
        float* noise = spec_noise_.data<float>();  // free while no speculation is pending
        draw_context(noise);
        push_locked(frames + i * numel_, actions[i], noise);
    }
}

void check_frames_in_range(const float* frames, std::int64_t n_frames, std::int64_t numel, const char* who) {
    const std::int64_t n = n_frames * numel;
    for (std::int64_t i = 0; i < n; ++i) {
        const float v = frames[i];
        NF_CHECK_ARG(v >= -1.0f && v <= 1.0f,  // false for NaN too
                     std::string(who) + ": frame " + std::to_string(i / numel) + " has a value outside [-1, 1] (" +
                         std::to_string(v) + ")");
    }
}

void FrameLoop::push_frame(const float* frame, std::int64_t action) {
    std::lock_guard<std::mutex> api(api_mu_);
    validate_action(action, true, "action");
    check_frames_in_range(frame, 1, numel_, "frame_loop");
    wait_worker_locked();
    roll_back_speculation(true);
    require_noise(1);
    float* noise = spec_noise_.data<float>();
    draw_context(noise);
    push_locked(frame, action, noise);
}

void FrameLoop::step(std::int64_t action, float* out) {
    const auto t0 = Clock::now();
    std::lock_guard<std::mutex> api(api_mu_);
    validate_action(action, false, "action");
    wait_worker_locked();
    engine_ms_accum_ = 0;
    bool hit = false;
    if (spec_pending_) {
        hit = action == spec_action_;
        stats_.record_speculation(hit);
        if (hit) {
            spec_pending_ = false;
            std::memcpy(out, spec_frame_.raw(), sizeof(float) * std::size_t(numel_));
        } else {
            roll_back_speculation(true);
        }
    }
    if (!hit) {
        require_noise(2);
        float* x = x_state_.data<float>();
        float* ctx = spec_noise_.data<float>() + numel_;  // free: no speculation is pending now
        draw(x);
        draw_context(ctx);
        compute_frame(action, x, ctx);
        std::memcpy(out, x, sizeof(float) * std::size_t(numel_));
    }
    // Recorded before the worker starts: from here on it owns the loop state (stats_ included).
    stats_.record_frame(ms_since(t0), engine_ms_accum_);
    if (params_.speculate) {
        if (noise_available(2)) {
            std::lock_guard<std::mutex> lock(mu_);
            task_action_ = action;
            worker_busy_ = true;
            cv_.notify_all();
        } else {
            stats_.record_speculation_skipped();
        }
    }
}

void FrameLoop::feed_noise(const float* values, std::int64_t n) {
    std::lock_guard<std::mutex> api(api_mu_);
    wait_worker_locked();
    if (!fed_mode_) {
        // Drawn-ahead noise came from the seeded stream: drop it with the speculation that drew it.
        roll_back_speculation(false);
        n_carried_ = 0;
        carry_head_ = 0;
        fed_mode_ = true;
    }
    fed_.feed(values, n);
}

std::int64_t FrameLoop::n_noise_queued() {
    std::lock_guard<std::mutex> api(api_mu_);
    wait_worker_locked();
    return fed_mode_ ? fed_.n_available() + n_carried_ * numel_ : 0;
}

std::int64_t FrameLoop::pos() {
    std::lock_guard<std::mutex> api(api_mu_);
    wait_worker_locked();
    return history_.pos();
}

std::vector<std::int64_t> FrameLoop::slot_pos() {
    std::lock_guard<std::mutex> api(api_mu_);
    wait_worker_locked();
    return kv_ ? kv_->slot_pos() : history_.slot_pos();
}

bool FrameLoop::speculation_pending() {
    std::lock_guard<std::mutex> api(api_mu_);
    wait_worker_locked();
    return spec_pending_;
}

StatsSummary FrameLoop::stats() {
    std::lock_guard<std::mutex> api(api_mu_);
    wait_worker_locked();
    stats_.set_reallocations(engine_->n_binds() > 0 ? engine_->n_binds() - 1 : 0);
    return stats_.summary();
}

std::string FrameLoop::stats_json() {
    std::lock_guard<std::mutex> api(api_mu_);
    wait_worker_locked();
    stats_.set_reallocations(engine_->n_binds() > 0 ? engine_->n_binds() - 1 : 0);
    return stats_.to_json();
}

}  // namespace nf
