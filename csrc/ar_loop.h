// The masked-autoregressive generation loop of an AR image bundle (ar_bundle.h): K AR steps, each one backbone call
// over all tokens and the head's ODE (Euler, uniform times 1 -> 0) for the tokens that step reveals, T(k) head
// calls deep (the schedule: fixed or DiSA, ar_schedule.h); and the Distilled Decoding student, one or two calls from
// the same noise. The reference is models/mar_sampling.py (tests compare tokens and images for the same inputs).
//
// Everything random is an input: noise [B, L, D] (each token's starting noise) and order [B, L] (the token revealed
// i-th). The batch B is fixed at construction; every buffer is allocated then (the head's per count of revealed
// tokens), so generate() allocates nothing on our side.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "ar_bundle.h"
#include "engine.h"
#include "tensor.h"

namespace nf {

struct ArCounters {
    std::int64_t backbone_calls = 0;  // network calls of the last generate / generate_dd
    std::int64_t head_calls = 0;
    std::int64_t head_evaluations = 0;  // tokens x ODE steps (per batch)
};

class ArGenerator {
public:
    ArGenerator(const ArBundle& bundle, const EngineParams& params, std::int64_t batch);

    std::int64_t batch() const { return batch_; }
    const ArBundle& bundle() const { return bundle_; }
    const std::string& backend() const { return backbone_->name(); }
    const ArCounters& counters() const { return counters_; }

    // labels [B] (class indices), noise [B*L*D], order [B*L] (each row a permutation of 0..L-1), head_steps [K]
    // (one count >= 1 per AR step). Writes tokens [B, L, D] (may be null) and images uint8 [B, H, W, C].
    void generate(const std::int64_t* labels, const float* noise, const std::int64_t* order,
                  const std::vector<std::int64_t>& head_steps, float* tokens_out, std::uint8_t* images_out);
    // The Distilled Decoding student: n_calls 1 (noise -> image) or 2 (then again from the trajectory point: the first
    // call's tokens at the first two_step_revealed positions of the distillation order, the noise elsewhere).
    void generate_dd(const std::int64_t* labels, const float* noise, std::int64_t n_calls, float* tokens_out,
                     std::uint8_t* images_out);

    // tokens [B, L, D] -> uint8 [B, H, W, C]: de-normalise, unpatchify, round half to even, clip.
    void tokens_to_images(const float* tokens, std::uint8_t* images) const;

private:
    void check_labels(const std::int64_t* labels) const;
    ArBundle bundle_;
    std::int64_t batch_;
    std::unique_ptr<Engine> backbone_, head_, dd_;
    HostTensor tokens_, unknown_, label_, z_;              // backbone io
    HostTensor dd_state_, dd_tokens_;                      // student io (unknown_ and label_ shared)
    std::vector<std::int64_t> counts_;                     // tokens revealed per AR step
    struct HeadIo { HostTensor x, t, z, v; };
    std::vector<HeadIo> head_io_;                          // one per AR step (sized for its count)
    std::vector<char> order_seen_;                         // scratch of the order check, [L]
    ArCounters counters_;
};

}  // namespace nf
