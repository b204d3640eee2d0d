// Pins the frame ring behind the context roles: which frame and action "k back" reads after 0, 1, 2 and 7
// pushes into depth 3 (+1 spare slot), the first frame standing in before there are k frames, rewind(1)
// after a wrap, and the range errors. Frames are one float each, so every expected value is written out.
#include <vector>

#include "common.h"
#include "frame_history.h"
#include "nf_test.h"

namespace {

constexpr std::int64_t kNoAction = 4;

void push(nf::FrameHistory& h, float value, std::int64_t action) { h.push(&value, action); }

std::vector<float> frames_back(const nf::FrameHistory& h) {
    std::vector<float> out;
    for (std::int64_t k = 1; k <= h.depth(); ++k) out.push_back(*h.frame_back(k));
    return out;
}

std::vector<std::int64_t> actions_back(const nf::FrameHistory& h) {
    std::vector<std::int64_t> out;
    for (std::int64_t k = 1; k <= h.depth(); ++k) out.push_back(h.action_back(k));
    return out;
}

}  // namespace

NF_TEST(frame_history_before_and_after_the_first_frames) {
    nf::FrameHistory h(3, 1, kNoAction);
    CHECK(h.frame_back(1) == nullptr);  // nothing pushed: the loop feeds zeros
    CHECK(h.action_back(3) == kNoAction);
    push(h, 10.f, 1);
    CHECK(frames_back(h) == std::vector<float>({10.f, 10.f, 10.f}));  // the first frame stands in
    CHECK(actions_back(h) == std::vector<std::int64_t>({1, kNoAction, kNoAction}));
    push(h, 11.f, 2);
    CHECK(frames_back(h) == std::vector<float>({11.f, 10.f, 10.f}));
    CHECK(actions_back(h) == std::vector<std::int64_t>({2, 1, kNoAction}));
}

NF_TEST(frame_history_wraps_and_rewinds) {
    nf::FrameHistory h(3, 1, kNoAction);  // 4 slots
    for (int p = 0; p < 7; ++p) push(h, float(p), p % 4);
    CHECK(h.pos() == 7);
    CHECK(frames_back(h) == std::vector<float>({6.f, 5.f, 4.f}));
    CHECK(actions_back(h) == std::vector<std::int64_t>({2, 1, 0}));
    CHECK(h.slot_pos() == std::vector<std::int64_t>({4, 5, 6, 3}));
    CHECK(h.n_rewindable() == 1);
    push(h, 7.f, 3);  // overwrote frame 3 in slot 3
    h.rewind(1);
    CHECK(h.pos() == 7);
    CHECK(frames_back(h) == std::vector<float>({6.f, 5.f, 4.f}));  // all three still readable
    CHECK(h.slot_pos() == std::vector<std::int64_t>({4, 5, 6, -1}));
    CHECK_THROWS(nf::InvalidArgument, h.rewind(1), "frame_history: cannot rewind 1 frames");
    CHECK_THROWS(nf::InvalidArgument, h.frame_back(4), "frame_history: k 4 out of range");
    h.clear();
    CHECK(h.frame_back(1) == nullptr);
}
