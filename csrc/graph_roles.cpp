#include "graph_roles.h"

#include "common.h"

namespace nf {

namespace {

struct Named {
    const char* name;
    Role role;
    bool input;
};

constexpr Named kRoles[] = {
    {"noisy_frame", Role::NoisyFrame, true},         {"noise_level", Role::NoiseLevel, true},
    {"action", Role::Action, true},                  {"context_frame", Role::ContextFrame, true},
    {"context_frames", Role::ContextFrames, true},   {"context_action", Role::ContextAction, true},
    {"context_actions", Role::ContextActions, true}, {"context_noise_level", Role::ContextNoiseLevel, true},
    {"cache_k", Role::CacheK, true},                 {"cache_v", Role::CacheV, true},
    {"cache_ages", Role::CacheAges, true},           {"prediction", Role::Prediction, false},
    {"k_new", Role::KNew, false},                    {"v_new", Role::VNew, false},
    {"frame_noise", Role::FrameNoise, true},         {"push_noise", Role::PushNoise, true},
    {"frame", Role::Frame, false},                   {"next_context_frames", Role::NextContextFrames, false},
    {"next_context_actions", Role::NextContextActions, false}, {"next_context_frame", Role::NextContextFrame, false},
    {"next_context_action", Role::NextContextAction, false},   {"non_finite", Role::NonFinite, false},
};

}  // namespace

const char* role_name(Role role) {
    for (const auto& r : kRoles)
        if (r.role == role) return r.name;
    return "?";
}

Role parse_role(const std::string& name, bool input) {
    std::string known;
    for (const auto& r : kRoles) {
        if (r.input != input) continue;
        if (name == r.name) return r.role;
        known += known.empty() ? r.name : std::string(", ") + r.name;
    }
    throw InvalidArgument(std::string("unknown ") + (input ? "input" : "output") + " role '" + name + "' (expected " +
                          known + ")");
}

bool is_context_role(Role role) {
    return role == Role::ContextFrame || role == Role::ContextFrames || role == Role::ContextAction ||
           role == Role::ContextActions;
}

bool is_cache_role(Role role) { return role == Role::CacheK || role == Role::CacheV || role == Role::CacheAges; }

bool is_frame_graph_role(Role role) {
    return role == Role::FrameNoise || role == Role::PushNoise || role == Role::Frame || role == Role::NextContextFrames ||
           role == Role::NextContextActions || role == Role::NextContextFrame || role == Role::NextContextAction ||
           role == Role::NonFinite;
}

bool has_back(Role role) {
    return role == Role::ContextFrame || role == Role::ContextAction || role == Role::NextContextFrame ||
           role == Role::NextContextAction;
}

Role next_context_role(Role r) {
    switch (r) {
        case Role::ContextFrames: return Role::NextContextFrames;
        case Role::ContextActions: return Role::NextContextActions;
        case Role::ContextFrame: return Role::NextContextFrame;
        case Role::ContextAction: return Role::NextContextAction;
        default: throw InvalidArgument(std::string("graph_roles: ") + role_name(r) + " is not a context role");
    }
}

bool legacy_role(const std::string& name, bool input, RoleSpec* out) {
    struct Legacy {
        const char* name;
        Role role;
        std::int64_t back;
        bool input;
    };
    static constexpr Legacy kLegacy[] = {
        {"x", Role::NoisyFrame, 0, true},         {"t", Role::NoiseLevel, 0, true},
        {"action", Role::Action, 0, true},        {"prev", Role::ContextFrame, 1, true},
        {"prev2", Role::ContextFrame, 2, true},   {"prev_action", Role::ContextAction, 1, true},
        {"cache_k", Role::CacheK, 0, true},       {"cache_v", Role::CacheV, 0, true},
        {"ages", Role::CacheAges, 0, true},       {"denoised", Role::Prediction, 0, false},
        {"velocity", Role::Prediction, 0, false}, {"k_new", Role::KNew, 0, false},
        {"v_new", Role::VNew, 0, false},
    };
    for (const auto& l : kLegacy) {
        if (l.input == input && name == l.name) {
            out->role = l.role;
            out->back = l.back;
            return true;
        }
    }
    return false;
}

}  // namespace nf
