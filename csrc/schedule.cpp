#include "schedule.h"

#include <cmath>

#include "common.h"

namespace nf {

std::vector<double> flow_schedule(std::int64_t n_steps, double shift) {
    NF_CHECK_ARG(n_steps >= 1, "schedule: n_steps must be at least 1 (got " + std::to_string(n_steps) + ")");
    NF_CHECK_ARG(shift > 0 && std::isfinite(shift), "schedule: shift must be positive (got " + std::to_string(shift) + ")");
    std::vector<double> ts;
    ts.reserve(std::size_t(n_steps + 1));
    for (std::int64_t i = 0; i <= n_steps; ++i) {
        const double u = 1.0 - double(i) / double(n_steps);
        ts.push_back(shift * u / (1.0 + (shift - 1.0) * u));
    }
    return ts;
}

DisaKind parse_disa_kind(const std::string& s) {
    if (s == "linear") return DisaKind::Linear;
    if (s == "cosine") return DisaKind::Cosine;
    throw InvalidArgument("schedule: disa kind '" + s + "' not supported (expected linear, cosine)");
}

const char* disa_kind_name(DisaKind k) { return k == DisaKind::Linear ? "linear" : "cosine"; }

std::int64_t disa_steps(std::int64_t frame_index, std::int64_t n_max, std::int64_t n_min,
                        std::int64_t n_anneal_frames, DisaKind kind) {
    NF_CHECK_ARG(frame_index >= 0, "schedule: frame_index must be non-negative (got " + std::to_string(frame_index) + ")");
    NF_CHECK_ARG(n_min >= 1 && n_min <= n_max, "schedule: disa needs 1 <= n_min <= n_max (got n_min " +
                                                   std::to_string(n_min) + ", n_max " + std::to_string(n_max) + ")");
    NF_CHECK_ARG(n_anneal_frames >= 0,
                 "schedule: n_anneal_frames must be non-negative (got " + std::to_string(n_anneal_frames) + ")");
    const double frac = (n_anneal_frames == 0 || frame_index >= n_anneal_frames)
                            ? 1.0
                            : double(frame_index) / double(n_anneal_frames);
    const double kPi = 3.14159265358979323846;
    const double w = kind == DisaKind::Linear ? 1.0 - frac : 0.5 * (1.0 + std::cos(kPi * frac));
    return n_min + std::int64_t(std::floor(double(n_max - n_min) * w + 0.5));
}

Schedule::Schedule(std::vector<double> times) {
    NF_CHECK_ARG(times.size() >= 2, "schedule: a schedule needs at least 2 times (got " + std::to_string(times.size()) + ")");
    tables_.push_back(std::move(times));
}

Schedule::Schedule(const DisaParams& disa, double shift) : disa_(disa) {
    disa_.enabled = true;
    (void)disa_steps(0, disa.n_max, disa.n_min, disa.n_anneal_frames, disa.kind);  // validates the params
    for (std::int64_t n = disa.n_min; n <= disa.n_max; ++n) tables_.push_back(flow_schedule(n, shift));
}

std::int64_t Schedule::n_steps_for(std::int64_t frame_index) const {
    if (!disa_.enabled) return std::int64_t(tables_[0].size()) - 1;
    return disa_steps(frame_index, disa_.n_max, disa_.n_min, disa_.n_anneal_frames, disa_.kind);
}

const std::vector<double>& Schedule::times_for(std::int64_t frame_index) const {
    if (!disa_.enabled) return tables_[0];
    return tables_[std::size_t(n_steps_for(frame_index) - disa_.n_min)];
}

std::int64_t Schedule::max_steps() const {
    return disa_.enabled ? disa_.n_max : std::int64_t(tables_[0].size()) - 1;
}

}  // namespace nf
