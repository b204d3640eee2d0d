// Time schedules of the flow sampler, built once when a loop is made, never per frame.
//
// flow_schedule(n_steps, shift): t_i = shift*u / (1 + (shift-1)*u), u = 1 - i/n_steps, i = 0..n_steps
// (models/flow.py, computed in double in the same order, so the values are identical to Python's).
//
// DiSA (diffusion step annealing): the number of denoising steps of the k-th generated frame since reset
// (k = 0, 1, ...): w = 1 - min(k / n_anneal_frames, 1) (linear) or w = (1 + cos(pi * min(k / n_anneal_frames,
// 1))) / 2 (cosine); steps = n_min + floor((n_max - n_min) * w + 0.5). So the first frame gets n_max and
// every frame from n_anneal_frames on gets n_min; n_anneal_frames = 0 means n_min from the start.
// runtime/reference.py holds the Python twin; the two agree exactly (integers).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nf {

// Throws nf::InvalidArgument "schedule: ..." for n_steps < 1 or shift <= 0.
std::vector<double> flow_schedule(std::int64_t n_steps, double shift);

enum class DisaKind { Linear, Cosine };

// "linear" | "cosine"; anything else is nf::InvalidArgument.
DisaKind parse_disa_kind(const std::string& s);
const char* disa_kind_name(DisaKind k);

struct DisaParams {
    bool enabled = false;
    std::int64_t n_max = 0;
    std::int64_t n_min = 0;
    std::int64_t n_anneal_frames = 0;
    DisaKind kind = DisaKind::Linear;
};

// Throws nf::InvalidArgument unless frame_index >= 0, 1 <= n_min <= n_max, n_anneal_frames >= 0.
std::int64_t disa_steps(std::int64_t frame_index, std::int64_t n_max, std::int64_t n_min,
                        std::int64_t n_anneal_frames, DisaKind kind);

// Every schedule a loop can use, precomputed: either one fixed schedule (the manifest's times, or
// flow_schedule(n_steps, shift) when n_steps overrides it) or, with DiSA, one per step count n_min..n_max.
class Schedule {
public:
    // fixed: times has n_steps + 1 entries.
    explicit Schedule(std::vector<double> times);
    Schedule(const DisaParams& disa, double shift);

    // Times for the frame_index-th generated frame since reset: n + 1 values from 1 to 0.
    const std::vector<double>& times_for(std::int64_t frame_index) const;
    std::int64_t n_steps_for(std::int64_t frame_index) const;
    std::int64_t max_steps() const;
    bool annealed() const { return disa_.enabled; }

private:
    DisaParams disa_;
    std::vector<std::vector<double>> tables_;  // fixed: one entry; DiSA: index n - n_min
};

}  // namespace nf
