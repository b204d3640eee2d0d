// The frame loop: step(action) -> frame, from schedule x sampler x engine x (frame history, K/V ring). It
// mirrors nextframe.models.sampling.CachedSampler (transformer bundles) and
// nextframe.models.unet_sampling.FrameStackSampler (frame-stack bundles) exactly (same arithmetic order,
// same noise order). Graph inputs are bound by the roles the manifest declares (graph_roles.h):
//
//   push_frame(frame, a): e ~ N(0,1); x = (1 - cn) frame + cn e (cn = sampler.context_noise; at cn = 0 the
//       seeded stream draws no e, fed noise still supplies one);
//       graphs with a K/V cache: run the kv graph (or the step graph) on noisy_frame = x, noise_level = cn,
//       action = a and the context as it was, and write k_new/v_new into slot pos % n_slots;
//       then x and a go into the frame history, and every context input is refreshed from it (the frame
//       k back, the last K frames, the actions that led to them; frame_history.h).
//   reset(frames, actions): clear the ring and the history (context inputs read zeros), push each frame.
//   step(a): x = e ~ N(0,1); integrate with the sampler over the frame's schedule (each evaluation runs the
//       graph with the ring's current ages; the graph predicts the velocity or the clean frame, as the
//       manifest's sampler kind says, see sampler.h); clamp to [-1, 1]; push_frame(x, a); return x.
//
// Speculation (params.speculate): after step(a) returns, a background worker computes the next frame for
// a (the predicted action) including its push. The next step(a2) returns it at once if a2 == a; otherwise
// the ring and the history are rewound by one (the slots they overwrote held frames outside the window,
// see kv_cache.h and frame_history.h), the context inputs refreshed, and the frame recomputed. The speculative frame's noise is taken back on a rollback and
// drawn again by the recomputation, so frames equal, bit for bit, those of the plain loop for the same
// noise and actions, hit or miss.
//
// Buffers are sized at construction; step/reset/push_frame allocate nothing. Every public method may be
// called from any thread (calls are serialized); each first waits for a running speculation and rethrows
// its error, if it failed.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bundle.h"
#include "engine.h"
#include "frame_history.h"
#include "kv_cache.h"
#include "noise.h"
#include "sampler.h"
#include "schedule.h"
#include "stats.h"

namespace nf {

struct FrameLoopParams {
    std::int64_t n_steps = 0;  // 0: the manifest's sampler (its n_steps and exact times); else flow_schedule
    SamplerKind sampler = SamplerKind::Euler;
    DisaParams disa;           // enabled: per-frame step count annealed n_max -> n_min (n_steps is then unused)
    std::uint64_t seed = 0;    // SeededNoise until feed_noise() switches to fed noise
    bool speculate = false;
    std::int64_t n_warmup_frames = 2;  // steps left out of the latency statistics
};

// n_frames frames of numel values each must be finite and in [-1, 1]; else nf::InvalidArgument "<who>: frame i has a
// value outside [-1, 1] (v)". The frame loops check what callers push (FrameLoop, DeviceLoop).
void check_frames_in_range(const float* frames, std::int64_t n_frames, std::int64_t numel, const char* who);

class FrameLoop {
public:
    // The engine must run bundle's step graph (its inputs and outputs are bound by their manifest roles);
    // kv_engine (optional, make_kv_engine) its kv graph, which then writes the cache instead of the step graph.
    // group_engines (optional, make_group_engines): one per bundle.step_groups entry, each run for the noise
    // levels of its group; empty: the step graph runs every level.
    FrameLoop(const Bundle& bundle, std::unique_ptr<Engine> engine, const FrameLoopParams& params,
              std::unique_ptr<Engine> kv_engine = nullptr,
              std::vector<std::unique_ptr<Engine>> group_engines = {});
    ~FrameLoop();  // stops and joins the speculation worker
    FrameLoop(const FrameLoop&) = delete;
    FrameLoop& operator=(const FrameLoop&) = delete;

    // frames [n, C, H, W] in [-1, 1]; actions [n], each in 0..no_action (the action that led to the frame).
    void reset(const float* frames, std::int64_t n_frames, const std::int64_t* actions);
    // Pushes one real frame [C, H, W] (action in 0..no_action) after the current ones, without generating.
    void push_frame(const float* frame, std::int64_t action);
    // Generates the next frame for action (0..n_actions-1) into out [C, H, W].
    void step(std::int64_t action, float* out);
    // Switches to fed noise (the first call drops the seeded stream and any drawn-ahead noise) and appends
    // n values, consumed in order by later draws.
    void feed_noise(const float* values, std::int64_t n);

    std::int64_t frame_numel() const { return numel_; }
    std::int64_t n_actions() const { return n_actions_; }
    std::int64_t no_action() const { return no_action_; }
    std::int64_t n_noise_queued();
    bool fed_noise() const { return fed_mode_; }
    // The ring as it is: a pending speculative frame (speculation_pending()) is included.
    std::int64_t pos();
    std::vector<std::int64_t> slot_pos();
    bool speculation_pending();
    const Engine& engine() const { return *engine_; }
    bool uses_kv_graph() const { return kv_engine_ != nullptr; }
    std::int64_t n_step_groups() const { return std::int64_t(groups_.size()); }
    // Graph runs per group since construction: [0] the step graph, [1 + i] step_groups[i].
    std::vector<std::int64_t> group_runs();
    bool uses_cache() const { return kv_ != nullptr; }
    StatsSummary stats();
    std::string stats_json();

private:
    class Model;
    friend class Model;

    // Callers hold api_mu_ and the worker is idle.
    void wait_worker_locked();
    void snap_to_palette(float* x) const;
    void validate_action(std::int64_t action, bool allow_no_action, const char* what) const;
    void draw(float* dst);
    void draw_context(float* dst);  // a context-noise draw: zeros from the seeded stream at level 0
    bool context_from_stream() const;
    void unread(const float* chunk);  // puts one frame of noise back in front of the stream
    Bindings bind_io(const Engine& engine, const GraphInfo& graph, const std::string& name, bool kv_only);
    void refresh_context();  // context inputs from the history (after every push, rewind and reset)
    void run_timed(Engine& engine, const Bindings& bindings);  // counted as engine time in the stats
    void run_engine();  // the graph for the noise level in t_in_: a step group's, else the step graph
    void run_kv_engine();  // the cache write: the kv graph if there is one, else the step graph
    void compute_ages();
    void push_locked(const float* frame, std::int64_t action, const float* ctx_noise);
    void compute_frame(std::int64_t action, float* x, const float* ctx_noise);
    void roll_back_speculation(bool keep_noise);
    bool noise_available(std::int64_t n_draws) const;  // n_draws frames of noise
    void require_noise(std::int64_t n_draws) const;
    void speculate(std::int64_t action);  // worker thread
    void worker_main();

    // shape
    std::int64_t channels_, height_, width_, numel_;
    std::int64_t n_actions_, no_action_;
    float context_noise_;
    std::vector<float> palette_;  // the bundle's colours in [-1, 1], 3 per colour; empty: frames are not snapped
    float palette_accept_ = 0.0f;

    std::unique_ptr<Engine> engine_;
    std::unique_ptr<Engine> kv_engine_;  // may be null
    struct Group {
        double t_min, t_max;
        std::unique_ptr<Engine> engine;
        Bindings bindings;
        std::int64_t runs = 0;
    };
    std::vector<Group> groups_;  // step groups, each claiming t_min < t <= t_max
    std::int64_t step_runs_ = 0;
    std::unique_ptr<KvCache> kv_;        // null for graphs without cache roles
    FrameHistory history_;
    Schedule schedule_;
    Sampler sampler_;
    Stats stats_;
    FrameLoopParams params_;

    // engine io (bound once)
    HostTensor x_in_, t_in_, action_in_, ages_in_, context_noise_in_;
    struct ContextInput {
        RoleSpec role;
        std::int64_t n_frames = 1;  // K for context_frames / context_actions
        HostTensor tensor;
    };
    std::vector<ContextInput> context_inputs_;  // one per context role of the step graph
    HostTensor prediction_, k_new_, v_new_;  // prediction_: the "velocity" or "denoised" output
    Bindings bindings_, kv_bindings_;
    std::unique_ptr<Model> model_fn_;

    // loop state
    HostTensor x_state_;           // frame being denoised by the foreground step
    std::int64_t n_generated_ = 0;  // frames generated since reset (DiSA's frame index)
    SeededNoise seeded_;
    FedNoise fed_;
    bool fed_mode_ = false;
    HostTensor carry_;             // [kCarry, numel] FIFO of drawn-ahead noise, consumed before the source
    static constexpr std::int64_t kCarry = 4;
    std::int64_t carry_head_ = 0, n_carried_ = 0;

    // speculation (touched by the worker only while worker_busy_)
    HostTensor spec_frame_, spec_noise_;
    bool spec_pending_ = false;
    std::int64_t spec_action_ = -1;
    double engine_ms_accum_ = 0;  // engine time since the current step()/speculation began

    std::mutex api_mu_;  // serializes public calls
    std::mutex mu_;      // guards the worker hand-off below
    std::condition_variable cv_;
    bool stop_ = false, worker_busy_ = false;
    std::int64_t task_action_ = -1;
    std::exception_ptr worker_error_;
    std::thread worker_;
};

}  // namespace nf
