// The AOTInductor plugin's C ABI (csrc/aoti_plugin.cpp, libnf_aoti.so), as the core sees it after dlopen: the
// engine entry points (engine_aoti.cpp) and the device loop's (device_loop.cpp). Plain pointers only: the
// plugin's libstdc++ ABI (torch's) and the core's need not agree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace nf {

struct AotiApi {
    std::string path, torch_version, error;
    const char* (*version)() = nullptr;
    void* (*open)(const char*, const char*, std::int64_t, char*, std::size_t) = nullptr;
    int (*run)(void*, int, void* const*, const int*, const int*, const std::int64_t* const*, int, void* const*,
               const std::int64_t*, char*, std::size_t) = nullptr;
    void (*close)(void*) = nullptr;
    // device loop; loop_open is null when the plugin predates it (or its K/V ring)
    int (*loop_cuda_graphs)() = nullptr;
    void* (*loop_open)(void*, int, const int*, const std::int64_t*, int, int, const std::int64_t*, std::int64_t,
                       const double*, int, const float*, int, float, int, char*, std::size_t) = nullptr;
    int (*loop_cache)(void*, void*, int, const int*, const std::int64_t*, int, int, const std::int64_t*, char*,
                      std::size_t) = nullptr;
    int (*loop_reset)(void*, const float*, std::int64_t, const std::int64_t*, const float*, char*, std::size_t) = nullptr;
    int (*loop_step)(void*, std::int64_t, const float*, const float*, float*, char*, std::size_t) = nullptr;
    int (*loop_frame)(void*, float*, char*, std::size_t) = nullptr;
    std::int64_t (*loop_replays)(void*) = nullptr;
    void (*loop_close)(void*) = nullptr;
};

// The plugin (loaded on first use: $NEXTFRAME_AOTI_LIB, else libnf_aoti.so beside the core); open is null and
// error says why when it does not load.
const AotiApi& aoti_api();

}  // namespace nf
