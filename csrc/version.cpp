#include "version.h"

#include "common.h"

#ifndef NF_VERSION
#define NF_VERSION "0.0.0-dev"
#endif

namespace nf {

const char* version() { return NF_VERSION; }

std::string build_info() {
    std::string compiler;
#if defined(__clang__)
    compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
    compiler = "gcc " __VERSION__;
#elif defined(_MSC_VER)
    compiler = "msvc " + std::to_string(_MSC_VER);
#else
    compiler = "unknown compiler";
#endif
#if defined(_MSVC_LANG)
    const long standard = _MSVC_LANG;
#else
    const long standard = __cplusplus;
#endif
#if defined(NDEBUG)
    const char* build = "release";
#else
    const char* build = "debug";
#endif
    return "nextframe " + std::string(NF_VERSION) + "; " + compiler + "; C++ " +
           std::to_string(standard) + "; " + build;
}

std::int64_t ring_slot(std::int64_t pos, std::int64_t n_slots) {
    NF_CHECK_ARG(n_slots > 0,
                 "kv_cache: n_slots must be positive (got " + std::to_string(n_slots) + ")");
    NF_CHECK_ARG(pos >= 0,
                 "kv_cache: pos must be non-negative (got " + std::to_string(pos) + ")");
    return pos % n_slots;
}

}  // namespace nf
