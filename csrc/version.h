// Build identity of the C++ core, plus ring_slot, the smallest real function that
// proves the error mapping end to end (C++ throw -> ctest, pybind11 -> ValueError).
#pragma once

#include <cstdint>
#include <string>

namespace nf {

// The project version baked in at compile time (SKBUILD_PROJECT_VERSION), never null.
const char* version();

// One line: compiler id and version, C++ standard, build type.
std::string build_info();

// Slot of logical frame index pos in a ring of n_slots slots: pos mod n_slots, in [0, n_slots).
// Throws nf::InvalidArgument when n_slots <= 0 or pos < 0.
std::int64_t ring_slot(std::int64_t pos, std::int64_t n_slots);

}  // namespace nf
