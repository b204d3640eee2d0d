// Pins nf::ring_slot (logical frame pos -> ring slot) on cases worked out by hand, the exact
// nf::InvalidArgument type and message prefix of its two error paths, and that nf::version()
// and nf::build_info() are non-empty single lines.
#include <cstring>
#include <stdexcept>
#include <string>

#include "common.h"
#include "nf_test.h"
#include "version.h"

NF_TEST(ring_slot_values) {
    CHECK_EQ(nf::ring_slot(0, 4), 0);
    CHECK_EQ(nf::ring_slot(3, 4), 3);
    CHECK_EQ(nf::ring_slot(4, 4), 0);
    CHECK_EQ(nf::ring_slot(10, 4), 2);  // 10 = 2*4 + 2
    CHECK_EQ(nf::ring_slot(7, 1), 0);
    CHECK_EQ(nf::ring_slot(5, 7), 5);
    CHECK_EQ(nf::ring_slot(int64_t{1} << 40, 3), 1);  // 2^40 = 1 mod 3
}

NF_TEST(ring_slot_errors) {
    CHECK_THROWS(nf::InvalidArgument, nf::ring_slot(1, 0), "kv_cache: n_slots must be positive (got 0)");
    CHECK_THROWS(nf::InvalidArgument, nf::ring_slot(1, -3), "kv_cache: n_slots must be positive (got -3)");
    CHECK_THROWS(nf::InvalidArgument, nf::ring_slot(-1, 4), "kv_cache: pos must be non-negative (got -1)");
    // InvalidArgument is a std::invalid_argument, which pybind11 maps to ValueError.
    CHECK_THROWS(std::invalid_argument, nf::ring_slot(0, 0), "kv_cache: ");
}

NF_TEST(error_messages_are_one_line) {
    try {
        nf::ring_slot(-5, 4);
        CHECK(false);
    } catch (const nf::InvalidArgument& e) {
        const std::string msg = e.what();
        CHECK(msg == "kv_cache: pos must be non-negative (got -5)");
        CHECK(msg.find('\n') == std::string::npos);
        CHECK(msg.back() != '.');
    }
}

NF_TEST(version_and_build_info) {
    CHECK(std::strlen(nf::version()) > 0);
    const std::string info = nf::build_info();
    CHECK(!info.empty());
    CHECK(info.find('\n') == std::string::npos);
    CHECK(info.find("C++ ") != std::string::npos);
}
