// Minimal test harness for the plain C++ tests (no gtest). Each tests/cpp/test_*.cpp defines
// cases with NF_TEST(name) { ... }; main.cpp runs them all and exits non-zero if any CHECK failed.
// CHECK records a failure and carries on, so one run reports every broken expectation.
#pragma once

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

namespace nf_test {

struct Case {
    const char* name;
    void (*fn)();
};

inline std::vector<Case>& registry() {
    static std::vector<Case> cases;
    return cases;
}

inline int& n_failures() {
    static int n = 0;
    return n;
}

struct Register {
    Register(const char* name, void (*fn)()) { registry().push_back({name, fn}); }
};

inline void fail(const char* file, int line, const std::string& what) {
    ++n_failures();
    std::printf("%s:%d: FAILED: %s\n", file, line, what.c_str());
    std::fflush(stdout);
}

inline bool starts_with(const std::string& s, const std::string& prefix) {
    return s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace nf_test

#define NF_TEST(name)                                               \
    static void name();                                             \
    static ::nf_test::Register nf_test_register_##name(#name, name); \
    static void name()

#define CHECK(cond)                                                  \
    do {                                                             \
        if (!(cond)) ::nf_test::fail(__FILE__, __LINE__, #cond);     \
    } while (0)

#define CHECK_EQ(a, b)                                                              \
    do {                                                                            \
        const auto nf_a_ = (a);                                                     \
        const auto nf_b_ = (b);                                                     \
        if (!(nf_a_ == nf_b_))                                                      \
            ::nf_test::fail(__FILE__, __LINE__,                                     \
                            std::string(#a " == " #b " (got ") +                    \
                                std::to_string(nf_a_) + " vs " +                    \
                                std::to_string(nf_b_) + ")");                       \
    } while (0)

// Checks that expr throws exactly type ExType (or a subclass) with a message starting with prefix.
#define CHECK_THROWS(ExType, expr, prefix)                                              \
    do {                                                                                \
        bool nf_thrown_ = false;                                                        \
        try {                                                                           \
            (void)(expr);                                                               \
        } catch (const ExType& e) {                                                     \
            nf_thrown_ = true;                                                          \
            if (!::nf_test::starts_with(e.what(), prefix))                              \
                ::nf_test::fail(__FILE__, __LINE__,                                     \
                                std::string(#expr ": message \"") + e.what() +          \
                                    "\" does not start with \"" + (prefix) + "\"");     \
        } catch (const std::exception& e) {                                             \
            nf_thrown_ = true;                                                          \
            ::nf_test::fail(__FILE__, __LINE__,                                         \
                            std::string(#expr ": threw another type: ") + e.what());    \
        }                                                                               \
        if (!nf_thrown_)                                                                \
            ::nf_test::fail(__FILE__, __LINE__, std::string(#expr ": did not throw " #ExType)); \
    } while (0)
