#include "stats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common.h"

namespace nf {

double percentile(std::vector<double> values, double q) {
    NF_CHECK_ARG(!values.empty(), "stats: percentile of no values");
    NF_CHECK_ARG(q >= 0.0 && q <= 100.0, "stats: percentile q " + std::to_string(q) + " (expected 0..100)");
    std::sort(values.begin(), values.end());
    const double pos = q / 100.0 * double(values.size() - 1);
    const std::size_t lo = std::size_t(std::floor(pos));
    const std::size_t hi = std::min(lo + 1, values.size() - 1);
    return values[lo] + (values[hi] - values[lo]) * (pos - double(lo));
}

Stats::Stats(std::int64_t n_warmup_frames, std::size_t capacity) : n_warmup_(n_warmup_frames) {
    NF_CHECK_ARG(n_warmup_frames >= 0, "stats: n_warmup_frames must be non-negative (got " +
                                           std::to_string(n_warmup_frames) + ")");
    NF_CHECK_ARG(capacity > 0, "stats: capacity must be positive");
    samples_.assign(capacity, 0.0);
}

void Stats::record_frame(double latency_ms, double engine_ms) {
    ++n_frames_;
    if (n_frames_ <= n_warmup_) return;
    samples_[head_] = latency_ms;
    head_ = (head_ + 1) % samples_.size();
    ++n_measured_;
    latency_sum_ += latency_ms;
    latency_max_ = std::max(latency_max_, latency_ms);
    engine_sum_ += engine_ms;
}

StatsSummary Stats::summary() const {
    StatsSummary s;
    s.n_frames = n_frames_;
    s.n_warmup_frames = std::min(n_frames_, n_warmup_);
    s.n_measured_frames = n_measured_;
    s.step_ms_total = latency_sum_;
    s.engine_ms_total = engine_sum_;
    s.speculation_engine_ms_total = speculation_engine_ms_;
    s.n_engine_runs = n_engine_runs_;
    s.n_speculation_hits = n_hits_;
    s.n_speculation_misses = n_misses_;
    s.n_speculation_skipped = n_skipped_;
    s.n_reallocations = n_reallocations_;
    if (n_measured_ > 0) {
        const std::size_t n = std::min<std::size_t>(std::size_t(n_measured_), samples_.size());
        std::vector<double> held(samples_.begin(), samples_.begin() + std::ptrdiff_t(n));
        s.latency_mean_ms = latency_sum_ / double(n_measured_);
        s.latency_p50_ms = percentile(held, 50);
        s.latency_p90_ms = percentile(held, 90);
        s.latency_p99_ms = percentile(held, 99);
        s.latency_max_ms = latency_max_;
        s.fps = s.latency_mean_ms > 0 ? 1000.0 / s.latency_mean_ms : 0.0;
        s.engine_fraction = latency_sum_ > 0 ? engine_sum_ / latency_sum_ : 0.0;
    }
    return s;
}

namespace {

std::string num(double v) {
    if (!std::isfinite(v)) return "null";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
}

}  // namespace

std::string Stats::to_json() const {
    const StatsSummary s = summary();
    const bool measured = s.n_measured_frames > 0;
    auto lat = [&](double v) { return measured ? num(v) : std::string("null"); };
    std::string j = "{";
    j += "\"n_frames\": " + std::to_string(s.n_frames);
    j += ", \"n_warmup_frames\": " + std::to_string(s.n_warmup_frames);
    j += ", \"n_measured_frames\": " + std::to_string(s.n_measured_frames);
    j += ", \"latency_mean_ms\": " + lat(s.latency_mean_ms);
    j += ", \"latency_p50_ms\": " + lat(s.latency_p50_ms);
    j += ", \"latency_p90_ms\": " + lat(s.latency_p90_ms);
    j += ", \"latency_p99_ms\": " + lat(s.latency_p99_ms);
    j += ", \"latency_max_ms\": " + lat(s.latency_max_ms);
    j += ", \"fps\": " + lat(s.fps);
    j += ", \"step_ms_total\": " + num(s.step_ms_total);
    j += ", \"engine_ms_total\": " + num(s.engine_ms_total);
    j += ", \"engine_fraction\": " + lat(s.engine_fraction);
    j += ", \"speculation_engine_ms_total\": " + num(s.speculation_engine_ms_total);
    j += ", \"n_engine_runs\": " + std::to_string(s.n_engine_runs);
    j += ", \"n_speculation_hits\": " + std::to_string(s.n_speculation_hits);
    j += ", \"n_speculation_misses\": " + std::to_string(s.n_speculation_misses);
    j += ", \"n_speculation_skipped\": " + std::to_string(s.n_speculation_skipped);
    j += ", \"n_reallocations\": " + std::to_string(s.n_reallocations);
    j += "}";
    return j;
}

}  // namespace nf
