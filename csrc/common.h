// Error types and check macros shared by every csrc concept (STYLE.md section 4).
//
// nf::InvalidArgument reaches Python as ValueError (caller can fix it);
// nf::RuntimeError reaches Python as RuntimeError (environment or execution).
// bindings.cpp maps both through their std base classes, as pybind11 would, making the message valid UTF-8.
// Messages are one line: "<concept>: <what was wrong> (<value>, expected <range>)[; <hint>]",
// with no trailing period.
#pragma once

#include <stdexcept>
#include <string>

namespace nf {

struct InvalidArgument : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

struct RuntimeError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace nf

// msg is a std::string expression; it is evaluated only when cond is false.
#define NF_CHECK_ARG(cond, msg)                    \
    do {                                           \
        if (!(cond)) {                             \
            throw ::nf::InvalidArgument(msg);      \
        }                                          \
    } while (0)

#define NF_CHECK(cond, msg)                        \
    do {                                           \
        if (!(cond)) {                             \
            throw ::nf::RuntimeError(msg);         \
        }                                          \
    } while (0)
