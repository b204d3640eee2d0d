// Pins percentiles on a 4-value distribution (numpy's linear interpolation: p50 of 1..4 = 2.5, p90 =
// 3.7, p99 = 3.97), warm-up exclusion (two 100 ms frames dropped), and that to_json() is valid JSON with
// the documented keys (parsed back with nf::Json).
#include <cmath>
#include <vector>

#include "common.h"
#include "json.h"
#include "nf_test.h"
#include "stats.h"

namespace {
bool near(double a, double b) { return std::fabs(a - b) < 1e-12; }
}  // namespace

NF_TEST(stats_percentiles) {
    const std::vector<double> v = {4, 1, 3, 2};
    CHECK(near(nf::percentile(v, 50), 2.5));
    CHECK(near(nf::percentile(v, 90), 3.7));
    CHECK(near(nf::percentile(v, 99), 3.97));
    CHECK(near(nf::percentile(v, 0), 1.0));
    CHECK(near(nf::percentile(v, 100), 4.0));
    CHECK_THROWS(nf::InvalidArgument, nf::percentile({}, 50), "stats: percentile of no values");
    CHECK_THROWS(nf::InvalidArgument, nf::percentile(v, 101), "stats: percentile q");
}

NF_TEST(stats_warmup_and_json) {
    nf::Stats s(2);
    const nf::Json empty = nf::Json::parse(s.to_json());
    CHECK(empty.at("latency_p50_ms").is_null());
    for (double ms : {100.0, 100.0, 1.0, 2.0, 3.0, 4.0}) s.record_frame(ms, ms / 2);
    s.record_speculation(true);
    s.record_speculation(false);
    s.record_speculation(false);
    const nf::StatsSummary m = s.summary();
    CHECK_EQ(m.n_frames, std::int64_t(6));
    CHECK_EQ(m.n_measured_frames, std::int64_t(4));
    CHECK(near(m.latency_mean_ms, 2.5));
    CHECK(near(m.latency_p50_ms, 2.5));
    CHECK(near(m.latency_max_ms, 4.0));
    CHECK(near(m.fps, 400.0));
    CHECK(near(m.engine_fraction, 0.5));
    const nf::Json j = nf::Json::parse(s.to_json());
    for (const char* key : {"n_frames", "n_warmup_frames", "latency_mean_ms", "latency_p50_ms", "latency_p90_ms",
                            "latency_p99_ms", "fps", "engine_ms_total", "step_ms_total", "engine_fraction",
                            "n_speculation_hits", "n_speculation_misses", "n_reallocations"})
        CHECK(j.find(key) != nullptr);
    CHECK_EQ(j.at("n_speculation_misses").as_int(), std::int64_t(2));
    CHECK(near(j.at("latency_p90_ms").as_double(), 3.7));
}

NF_TEST(stats_ring_keeps_newest) {
    nf::Stats s(0, 4);
    for (int i = 1; i <= 10; ++i) s.record_frame(double(i), 0);
    const nf::StatsSummary m = s.summary();
    CHECK(near(m.latency_p50_ms, 8.5));  // percentiles over the newest 4: 7, 8, 9, 10
    CHECK(near(m.latency_mean_ms, 5.5));  // the mean covers every measured frame
}
