// What each graph input and output is, declared by the manifest ("role", and "back" for context roles), so
// the exporter, the C++ frame loop and the Python reference bind by role from one declaration instead of
// each keeping a list of names. A graph written before roles existed gets them from its names (legacy_*).
//
// Inputs:  noisy_frame [1,C,H,W]       the frame being denoised (for a cache write: the finished frame)
//          noise_level [1]             its flow time t (1 = pure noise)
//          action [1] i64              the action that leads to the frame being generated
//          context_frame [1,C,H,W]     the frame `back` frames back, as cached (frame_history.h)
//          context_frames [1,K,C,H,W]  the last K frames, oldest first
//          context_action [1] i64      the action that led to the frame `back` frames back
//          context_actions [1,K] i64   the actions that led to the last K frames, oldest first
//          context_noise_level [1]     the level the cached frames were noised to
//          cache_k, cache_v, cache_ages  the K/V ring (kv_cache.h)
// Outputs: prediction (named "denoised" or "velocity" as the sampler kind says), k_new, v_new.
//
// The frame graph (export/frame_graph.py: a bundle's whole next-frame step, for device-resident loops) reads the step
// graph's context roles (context_frames / context_actions, or context_frame / context_action by `back`), its cache
// roles where it has a K/V ring, and action as above, plus
//          frame_noise [1,C,H,W]       the noise the frame starts from (t = 1)
//          push_noise [1,C,H,W]        the context noise of the finished frame (only where context_noise > 0)
// and writes frame [1,C,H,W] (clamped, snapped), for each context input its value one frame on
// (next_context_frames, next_context_actions, next_context_frame / next_context_action by `back`), with a ring the
// finished frame's k_new and v_new (the caller writes them into the ring's slot), and non_finite [1] i64 (values
// that were NaN or infinite before the clamp).
#pragma once

#include <cstdint>
#include <string>

namespace nf {

enum class Role {
    NoisyFrame,
    NoiseLevel,
    Action,
    ContextFrame,
    ContextFrames,
    ContextAction,
    ContextActions,
    ContextNoiseLevel,
    CacheK,
    CacheV,
    CacheAges,
    Prediction,
    KNew,
    VNew,
    FrameNoise,
    PushNoise,
    Frame,
    NextContextFrames,
    NextContextActions,
    NextContextFrame,
    NextContextAction,
    NonFinite,
};

struct RoleSpec {
    Role role = Role::NoisyFrame;
    std::int64_t back = 0;  // ContextFrame / ContextAction and their Next*: frames back (1 = the newest); else 0
};

constexpr std::int64_t kMaxContext = 64;  // a bound on `back` and K, so a manifest cannot ask for huge rings

const char* role_name(Role role);
// nf::InvalidArgument "unknown role" for a name outside the list above.
Role parse_role(const std::string& name, bool input);
bool is_context_role(Role role);  // the roles read from the frame history
bool is_cache_role(Role role);
bool is_frame_graph_role(Role role);  // frame_noise .. non_finite: the frame graph's own roles
bool has_back(Role role);             // context_frame, context_action and their next_*: declared with `back`
// The frame graph output that carries a context input one frame on (context_frames -> next_context_frames, ...);
// nf::InvalidArgument for a role that is not a context role.
Role next_context_role(Role context_role);
// The role of a graph io named before roles were declared (x, t, action, prev, prev2, prev_action, cache_k,
// cache_v, ages; denoised, velocity, k_new, v_new). false when the name is not one of them.
bool legacy_role(const std::string& name, bool input, RoleSpec* out);

}  // namespace nf
