// Pins the flow schedule (values equal to models/flow.py's, bit for bit, for a 3-step and a shifted
// 2-step case worked out by hand), DiSA step counts for linear and cosine annealing from 8 to 2 steps over
// 4 frames (hand-computed: w = 1, .75, .5, .25, 0 and (1 + cos(pi k/4))/2), the precomputed Schedule
// tables, and the "schedule: ..." errors.
#include <vector>

#include "common.h"
#include "nf_test.h"
#include "schedule.h"

NF_TEST(flow_schedule_values) {
    const std::vector<double> t3 = nf::flow_schedule(3, 1.0);
    CHECK(t3 == std::vector<double>({1.0, 1.0 - 1.0 / 3.0, 1.0 - 2.0 / 3.0, 0.0}));
    CHECK(nf::flow_schedule(2, 3.0) == std::vector<double>({1.0, 0.75, 0.0}));  // 3*.5 / (1 + 2*.5)
    CHECK(nf::flow_schedule(1, 1.0) == std::vector<double>({1.0, 0.0}));
}

NF_TEST(disa_linear_and_cosine) {
    using nf::DisaKind;
    std::vector<std::int64_t> lin, cos;
    for (int k = 0; k < 7; ++k) {
        lin.push_back(nf::disa_steps(k, 8, 2, 4, DisaKind::Linear));
        cos.push_back(nf::disa_steps(k, 8, 2, 4, DisaKind::Cosine));
    }
    // linear: 2 + floor(6w + .5) with w = 1, .75, .5, .25, 0, 0, 0
    CHECK(lin == std::vector<std::int64_t>({8, 7, 5, 4, 2, 2, 2}));
    // cosine: w = 1, .8536, .5, .1464, 0 -> 6w + .5 = 6.5, 5.62, 3.5, 1.38, .5
    CHECK(cos == std::vector<std::int64_t>({8, 7, 5, 3, 2, 2, 2}));
    CHECK_EQ(nf::disa_steps(0, 4, 4, 10, DisaKind::Linear), std::int64_t(4));
    CHECK_EQ(nf::disa_steps(0, 8, 2, 0, DisaKind::Linear), std::int64_t(2));  // no annealing window: n_min at once
    CHECK_EQ(nf::disa_steps(1000000, 8, 2, 4, DisaKind::Cosine), std::int64_t(2));
}

NF_TEST(schedule_tables) {
    nf::DisaParams d;
    d.n_max = 4;
    d.n_min = 1;
    d.n_anneal_frames = 3;
    const nf::Schedule s(d, 1.0);
    CHECK(s.annealed());
    CHECK_EQ(s.max_steps(), std::int64_t(4));
    CHECK_EQ(s.n_steps_for(0), std::int64_t(4));
    CHECK_EQ(s.times_for(0).size(), std::size_t(5));
    CHECK(s.times_for(10) == std::vector<double>({1.0, 0.0}));
    const nf::Schedule fixed(std::vector<double>{1.0, 0.5, 0.0});
    CHECK(!fixed.annealed());
    CHECK_EQ(fixed.n_steps_for(7), std::int64_t(2));
}

NF_TEST(schedule_errors) {
    using nf::InvalidArgument;
    CHECK_THROWS(InvalidArgument, nf::flow_schedule(0, 1.0), "schedule: n_steps must be at least 1 (got 0)");
    CHECK_THROWS(InvalidArgument, nf::flow_schedule(2, 0.0), "schedule: shift must be positive");
    CHECK_THROWS(InvalidArgument, nf::disa_steps(-1, 8, 2, 4, nf::DisaKind::Linear), "schedule: frame_index must be non-negative");
    CHECK_THROWS(InvalidArgument, nf::disa_steps(0, 2, 3, 4, nf::DisaKind::Linear), "schedule: disa needs 1 <= n_min <= n_max");
    CHECK_THROWS(InvalidArgument, nf::disa_steps(0, 2, 0, 4, nf::DisaKind::Linear), "schedule: disa needs 1 <= n_min <= n_max");
    CHECK_THROWS(InvalidArgument, nf::disa_steps(0, 8, 2, -1, nf::DisaKind::Linear), "schedule: n_anneal_frames must be non-negative");
    CHECK_THROWS(InvalidArgument, nf::parse_disa_kind("step"), "schedule: disa kind 'step' not supported (expected linear, cosine)");
    CHECK_THROWS(InvalidArgument, nf::Schedule(std::vector<double>{1.0}), "schedule: a schedule needs at least 2 times");
}
