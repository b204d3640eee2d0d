// Pins the masked-AR schedules (ar_schedule.h) on hand-computed cases: the MaskGIT cosine mask schedule for 64
// tokens in 4 steps (still masked: floor(64 cos(pi/8)) = 59, floor(64 cos(pi/4)) = 45, floor(64 cos(3pi/8)) = 24, 0;
// revealed: 5, 14, 21, 24), the exact-integer case 64 cos(pi/3) = 32 in 3 steps (must not floor to 31), DiSA head
// steps from 50 to 5 over 4 AR steps (linear w = 1, 2/3, 1/3, 0; cosine w = 1, .75, .25, 0; two-stage split .5),
// and the errors.
#include <vector>

#include "ar_schedule.h"
#include "common.h"
#include "nf_test.h"

using V = std::vector<std::int64_t>;

NF_TEST(ar_mask_schedule_values) {
    CHECK(nf::ar_tokens_per_step(4, 64) == V({5, 14, 21, 24}));
    CHECK(nf::ar_tokens_per_step(3, 64) == V({9, 23, 32}));  // masked 55, 32 (64 cos(pi/3) is 32.000000000000004)
    CHECK(nf::ar_tokens_per_step(1, 64) == V({64}));
    CHECK(nf::ar_tokens_per_step(64, 64) == V(64, 1));  // at least one token per step
}

NF_TEST(ar_head_schedule_values) {
    CHECK((nf::HeadSchedule{"constant", 50, 5, 0.5}.steps(4)) == V({50, 50, 50, 50}));
    CHECK((nf::HeadSchedule{"linear", 50, 5, 0.5}.steps(4)) == V({50, 35, 20, 5}));
    CHECK((nf::HeadSchedule{"cosine", 50, 5, 0.5}.steps(4)) == V({50, 38, 16, 5}));  // 5 + floor(45 * .75) = 38
    CHECK((nf::HeadSchedule{"two_stage", 50, 5, 0.5}.steps(4)) == V({50, 50, 5, 5}));
    CHECK_EQ(nf::ar_head_evaluations(V({50, 35, 20, 5}), 4, 64), std::int64_t(5 * 50 + 14 * 35 + 21 * 20 + 24 * 5));
}

NF_TEST(ar_schedule_errors) {
    CHECK_THROWS(nf::InvalidArgument, nf::ar_tokens_per_step(65, 64), "ar schedule: AR steps must be in 1..64");
    const nf::HeadSchedule unknown{"exponential", 50, 5, 0.5}, reversed{"linear", 5, 50, 0.5};
    CHECK_THROWS(nf::InvalidArgument, unknown.steps(4), "ar schedule: unknown head schedule 'exponential'");
    CHECK_THROWS(nf::InvalidArgument, reversed.steps(4), "ar schedule: need 1 <= t_lo <= t_hi");
    CHECK_THROWS(nf::InvalidArgument, nf::ar_head_evaluations(V({1, 2}), 4, 64), "ar schedule: 2 head step counts");
}
