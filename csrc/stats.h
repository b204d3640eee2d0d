// Frame-loop statistics: per-frame latency (action in -> frame out, ms) with the first n_warmup_frames
// excluded, engine time inside those calls, speculation hits/misses, reallocations. Samples live in a
// ring allocated at construction (the newest `capacity` frames feed the percentiles), so recording a
// frame never allocates. Percentiles interpolate linearly between order statistics (numpy's default).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nf {

// q in [0, 100] of values (any order; sorted internally). Throws nf::InvalidArgument on an empty input
// or q outside [0, 100].
double percentile(std::vector<double> values, double q);

struct StatsSummary {
    std::int64_t n_frames = 0;            // every step() since the loop was built, warm-up included
    std::int64_t n_warmup_frames = 0;     // how many of them are excluded below
    std::int64_t n_measured_frames = 0;
    double latency_mean_ms = 0, latency_p50_ms = 0, latency_p90_ms = 0, latency_p99_ms = 0, latency_max_ms = 0;
    double fps = 0;                        // 1000 / latency_mean_ms: frames per second if nothing else ran
    double step_ms_total = 0;              // sum of measured step() latencies
    double engine_ms_total = 0;            // engine time inside those step() calls
    double engine_fraction = 0;            // engine_ms_total / step_ms_total
    double speculation_engine_ms_total = 0;  // engine time spent in the background (speculation)
    std::int64_t n_engine_runs = 0;
    std::int64_t n_speculation_hits = 0;
    std::int64_t n_speculation_misses = 0;
    std::int64_t n_speculation_skipped = 0;  // not started: fed noise did not cover a whole frame
    std::int64_t n_reallocations = 0;       // buffer or binding rebuilds after construction; 0 by design
};

class Stats {
public:
    explicit Stats(std::int64_t n_warmup_frames, std::size_t capacity = 8192);

    void record_frame(double latency_ms, double engine_ms);
    void record_engine_run() { ++n_engine_runs_; }
    void record_background_engine(double ms) { speculation_engine_ms_ += ms; }
    void record_speculation(bool hit) { ++(hit ? n_hits_ : n_misses_); }
    void record_speculation_skipped() { ++n_skipped_; }
    void set_reallocations(std::int64_t n) { n_reallocations_ = n; }

    StatsSummary summary() const;
    // One JSON object with the StatsSummary fields (null for latencies before any measured frame).
    std::string to_json() const;

private:
    std::int64_t n_warmup_;
    std::vector<double> samples_;  // ring of measured latencies
    std::size_t head_ = 0;
    std::int64_t n_frames_ = 0, n_measured_ = 0;
    double latency_sum_ = 0, latency_max_ = 0, engine_sum_ = 0, speculation_engine_ms_ = 0;
    std::int64_t n_engine_runs_ = 0, n_hits_ = 0, n_misses_ = 0, n_skipped_ = 0, n_reallocations_ = 0;
};

}  // namespace nf
