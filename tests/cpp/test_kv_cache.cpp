// Pins the K/V ring: slot of each pos, slot_pos and ages after 10 pushes into 4 slots (window 3), where
// push() copies a frame's K/V inside the [L, 1, heads, S, N, hd] layout, rewind(1) restoring the slot it
// overwrote, and rewind errors past what the spare slots allow. Expected values are worked out by hand.
#include <vector>

#include "common.h"
#include "kv_cache.h"
#include "nf_test.h"

namespace {

nf::KvCacheLayout layout(std::int64_t n_slots, std::int64_t window) {
    nf::KvCacheLayout l;
    l.n_layers = 2;
    l.n_heads = 1;
    l.n_slots = n_slots;
    l.window = window;
    l.tokens_per_frame = 1;
    l.head_dim = 2;
    return l;
}

void push_value(nf::KvCache& c, float value) {
    const std::vector<float> k(4, value), v(4, -value);  // [L=2, 1, 1, N=1, hd=2]
    c.push(k.data(), v.data());
}

std::vector<std::int64_t> ages(const nf::KvCache& c) {
    std::vector<std::int64_t> a(std::size_t(c.layout().n_slots));
    c.ages(a.data());
    return a;
}

}  // namespace

NF_TEST(kv_cache_ring_after_ten_pushes) {
    nf::KvCache c(layout(4, 3));
    CHECK(ages(c) == std::vector<std::int64_t>({0, 0, 0, 0}));
    for (int p = 0; p < 10; ++p) push_value(c, float(p));
    // frames 8, 9 in slots 0, 1; frames 6, 7 in slots 2, 3; the next frame is pos 10
    CHECK_EQ(c.pos(), std::int64_t(10));
    CHECK(c.slot_pos() == std::vector<std::int64_t>({8, 9, 6, 7}));
    CHECK(ages(c) == std::vector<std::int64_t>({2, 1, 4, 3}));  // age 4 > window 3: ignored by the graph
    CHECK_EQ(c.slot_of(10), std::int64_t(2));
    // slot 1 of layer 1 holds frame 9: offset ((l=1 * S=4) + s=1) * N*hd=2
    CHECK(c.k().data<float>()[(1 * 4 + 1) * 2] == 9.0f);
    CHECK(c.v().data<float>()[(0 * 4 + 3) * 2 + 1] == -7.0f);
}

NF_TEST(kv_cache_rewind_restores_slot) {
    nf::KvCache c(layout(4, 3));  // one spare slot: one push can be undone
    for (int p = 0; p < 10; ++p) push_value(c, float(p));
    CHECK_EQ(c.n_rewindable(), std::int64_t(1));
    push_value(c, 10.0f);  // pos 10 -> slot 2, overwrites frame 6
    CHECK(c.slot_pos() == std::vector<std::int64_t>({8, 9, 10, 7}));
    c.rewind(1);
    CHECK_EQ(c.pos(), std::int64_t(10));
    CHECK(c.slot_pos() == std::vector<std::int64_t>({8, 9, 6, 7}));
    CHECK(ages(c) == std::vector<std::int64_t>({2, 1, 4, 3}));  // as before the push: frame 6 is out of window
    CHECK_EQ(c.n_rewindable(), std::int64_t(0));
    push_value(c, 11.0f);
    CHECK(c.slot_pos() == std::vector<std::int64_t>({8, 9, 10, 7}));
}

NF_TEST(kv_cache_rewind_two_spare_slots) {
    nf::KvCache c(layout(5, 3));
    for (int p = 0; p < 7; ++p) push_value(c, float(p));
    CHECK(c.slot_pos() == std::vector<std::int64_t>({5, 6, 2, 3, 4}));
    c.rewind(2);
    CHECK_EQ(c.pos(), std::int64_t(5));
    CHECK(c.slot_pos() == std::vector<std::int64_t>({0, 1, 2, 3, 4}));
    CHECK(ages(c) == std::vector<std::int64_t>({5, 4, 3, 2, 1}));
}

NF_TEST(kv_cache_errors) {
    using nf::InvalidArgument;
    nf::KvCache c(layout(4, 3));
    CHECK_THROWS(InvalidArgument, c.rewind(1), "kv_cache: cannot rewind 1 frames (expected 0..0");
    push_value(c, 1.0f);
    push_value(c, 2.0f);
    CHECK_THROWS(InvalidArgument, c.rewind(2), "kv_cache: cannot rewind 2 frames (expected 0..1");
    CHECK_THROWS(InvalidArgument, c.rewind(-1), "kv_cache: cannot rewind -1 frames");
    c.clear();
    CHECK_EQ(c.pos(), std::int64_t(0));
    CHECK_THROWS(InvalidArgument, c.rewind(1), "kv_cache: cannot rewind 1 frames (expected 0..0");
    CHECK_THROWS(InvalidArgument, nf::KvCache(layout(3, 3)), "kv_cache: n_slots 3 must exceed window (expected >= 4)");
    CHECK_THROWS(InvalidArgument, nf::KvCache(layout(0, 3)), "kv_cache: n_slots must be positive (got 0)");
    CHECK_THROWS(InvalidArgument, c.slot_of(-1), "kv_cache: pos must be non-negative (got -1)");
}

// A ring whose memory lives elsewhere (a device loop's): advance() keeps the same books as push(), push() is refused.
NF_TEST(kv_cache_bookkeeping_only) {
    nf::KvCache books(layout(4, 3), false), full(layout(4, 3));
    CHECK_EQ(books.k().numel(), std::int64_t(0));
    for (int p = 0; p < 10; ++p) {
        CHECK_EQ(books.slot_of(books.pos()), full.slot_of(full.pos()));
        books.advance();
        push_value(full, float(p));
        CHECK(books.slot_pos() == full.slot_pos());
        CHECK(ages(books) == ages(full));
    }
    books.rewind(1);
    full.rewind(1);
    CHECK(ages(books) == std::vector<std::int64_t>({1, 4, 3, 2}));  // pos 9: slot 1 holds frame 5 again
    CHECK(ages(books) == ages(full));
    CHECK_THROWS(nf::RuntimeError, push_value(books, 1.0f), "kv_cache: push on a ring that holds no K/V");
}
