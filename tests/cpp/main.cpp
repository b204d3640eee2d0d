// Runs every NF_TEST case linked into nf_tests; exit status is the number of failed checks (capped).
#include <cstdio>
#include <exception>

#include "nf_test.h"

int main() {
    int n_cases_failed = 0;
    for (const auto& c : nf_test::registry()) {
        const int before = nf_test::n_failures();
        try {
            c.fn();
        } catch (const std::exception& e) {
            nf_test::fail(__FILE__, __LINE__, std::string(c.name) + ": uncaught exception: " + e.what());
        }
        const bool ok = nf_test::n_failures() == before;
        if (!ok) ++n_cases_failed;
        std::printf("[%s] %s\n", ok ? "  OK  " : " FAIL ", c.name);
    }
    std::printf("%zu cases, %d failed, %d failed checks\n", nf_test::registry().size(),
                n_cases_failed, nf_test::n_failures());
    return nf_test::n_failures() == 0 ? 0 : 1;
}
