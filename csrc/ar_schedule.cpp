#include "ar_schedule.h"

#include <algorithm>
#include <cmath>

#include "common.h"

namespace nf {

namespace {
// floor() of a product that is mathematically an integer must not depend on cos()'s last ulp (mar_schedules.py)
constexpr double kFloorEps = 1e-9;
constexpr double kPi = 3.14159265358979323846;
}  // namespace

std::vector<std::int64_t> ar_tokens_per_step(std::int64_t n_ar_steps, std::int64_t n_tokens) {
    NF_CHECK_ARG(n_tokens >= 1 && n_ar_steps >= 1 && n_ar_steps <= n_tokens,
                 "ar schedule: AR steps must be in 1.." + std::to_string(n_tokens) + " (the token count), got " +
                     std::to_string(n_ar_steps));
    std::vector<std::int64_t> out;
    std::int64_t prev = n_tokens;
    for (std::int64_t k = 0; k < n_ar_steps; ++k) {
        std::int64_t m = std::int64_t(std::floor(double(n_tokens) * std::cos(kPi / 2 * double(k + 1) / double(n_ar_steps)) + kFloorEps));
        m = k == n_ar_steps - 1 ? 0 : std::max<std::int64_t>(0, std::min(prev - 1, m));
        out.push_back(prev - m);
        prev = m;
    }
    return out;
}

void HeadSchedule::validate() const {
    NF_CHECK_ARG(kind == "constant" || kind == "linear" || kind == "cosine" || kind == "two_stage",
                 "ar schedule: unknown head schedule '" + kind + "' (expected constant, linear, cosine or two_stage)");
    NF_CHECK_ARG(1 <= t_lo && t_lo <= t_hi && t_hi <= 10000,
                 "ar schedule: need 1 <= t_lo <= t_hi <= 10000 (got t_lo " + std::to_string(t_lo) + ", t_hi " +
                     std::to_string(t_hi) + ")");
    NF_CHECK_ARG(split >= 0.0 && split <= 1.0, "ar schedule: split must be in [0, 1] (got " + std::to_string(split) + ")");
}

std::vector<std::int64_t> HeadSchedule::steps(std::int64_t n_ar_steps) const {
    validate();
    NF_CHECK_ARG(n_ar_steps >= 1, "ar schedule: AR steps must be positive");
    const std::int64_t K = n_ar_steps;
    std::vector<std::int64_t> out;
    if (kind == "constant") return std::vector<std::int64_t>(std::size_t(K), t_hi);
    if (kind == "two_stage") {
        const auto k0 = std::int64_t(std::ceil(split * double(K) - kFloorEps));
        for (std::int64_t k = 0; k < K; ++k) out.push_back(k < k0 ? t_hi : t_lo);
        return out;
    }
    for (std::int64_t k = 0; k < K; ++k) {
        const double f = K == 1 ? 1.0 : double(k) / double(K - 1);
        const double w = kind == "linear" ? 1.0 - f : (1.0 + std::cos(kPi * f)) / 2.0;
        out.push_back(t_lo + std::int64_t(std::floor(w * double(t_hi - t_lo) + kFloorEps)));
    }
    return out;
}

std::int64_t ar_head_evaluations(const std::vector<std::int64_t>& steps, std::int64_t n_ar_steps, std::int64_t n_tokens) {
    const auto per = ar_tokens_per_step(n_ar_steps, n_tokens);
    NF_CHECK_ARG(steps.size() == per.size(), "ar schedule: " + std::to_string(steps.size()) + " head step counts for " +
                                                 std::to_string(per.size()) + " AR steps");
    std::int64_t n = 0;
    for (std::size_t k = 0; k < per.size(); ++k) n += per[k] * steps[k];
    return n;
}

}  // namespace nf
