// The two integer schedules of masked-autoregressive generation, computed exactly as models/mar_schedules.py does
// (tests compare them value by value):
//   mask schedule: after AR step k of K, floor(L cos(pi/2 (k+1)/K)) tokens are still masked, at least one token is
//                  revealed per step, and step K-1 reveals the rest;
//   head schedule: T(k), the diffusion head's ODE steps for the tokens revealed at step k. DiSA anneals it:
//     constant   T(k) = t_hi
//     linear     T(k) = t_lo + floor((1 - k/(K-1)) (t_hi - t_lo))
//     cosine     T(k) = t_lo + floor((1 + cos(pi k/(K-1))) / 2 (t_hi - t_lo))
//     two_stage  T(k) = t_hi for k < ceil(split K), else t_lo
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nf {

// How many tokens each AR step reveals (K values summing to n_tokens); nf::InvalidArgument unless 1 <= K <= n_tokens.
std::vector<std::int64_t> ar_tokens_per_step(std::int64_t n_ar_steps, std::int64_t n_tokens);

struct HeadSchedule {
    std::string kind = "constant";  // constant | linear | cosine | two_stage
    std::int64_t t_hi = 50;
    std::int64_t t_lo = 5;
    double split = 0.5;

    // nf::InvalidArgument for an unknown kind or 1 <= t_lo <= t_hi <= 10000 / 0 <= split <= 1 broken.
    void validate() const;
    std::vector<std::int64_t> steps(std::int64_t n_ar_steps) const;
};

// Head calls per image: sum over k of tokens revealed at k times T(k).
std::int64_t ar_head_evaluations(const std::vector<std::int64_t>& steps, std::int64_t n_ar_steps, std::int64_t n_tokens);

}  // namespace nf
