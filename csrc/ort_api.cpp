#include "ort_api.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "common.h"
#include "engine.h"

namespace nf {

namespace {

struct Loaded {
    std::mutex mu;
    const OrtApi* api = nullptr;
    std::string path;
    std::string version;
};

Loaded& loaded() {
    static Loaded l;
    return l;
}

std::string one_line(std::string s) {
    for (auto& c : s)
        if (c == '\n' || c == '\r') c = ' ';
    while (!s.empty() && (s.back() == ' ' || s.back() == '.')) s.pop_back();
    return s;
}

std::string dl_error() {
    const char* e = dlerror();
    return e ? one_line(e) : std::string("unknown dlopen error");
}

// Never dlclose'd: the API table must stay valid for the life of the process.
void* open_library(const std::string& path, int extra_flags) { return dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | extra_flags); }

}  // namespace

const OrtApi& ort_api(const std::string& lib_path) {
    Loaded& l = loaded();
    std::lock_guard<std::mutex> lock(l.mu);
    if (l.api != nullptr) return *l.api;

    void* handle = nullptr;
    std::string path;
    const char* env = std::getenv("NEXTFRAME_ORT_LIB");
    if (env != nullptr && *env != '\0') {
        path = env;
        handle = open_library(path, 0);
        NF_CHECK(handle != nullptr, "ort_api: cannot load NEXTFRAME_ORT_LIB='" + path + "' (" + dl_error() + ")");
    } else if (!lib_path.empty()) {
        path = lib_path;
        handle = open_library(path, 0);
        NF_CHECK(handle != nullptr, "ort_api: cannot load '" + path + "' (" + dl_error() +
                                        "); set NEXTFRAME_ORT_LIB or pip install onnxruntime");
    } else {
        for (const char* name : {"libonnxruntime.so.1", "libonnxruntime.so"}) {
            handle = open_library(name, RTLD_NOLOAD);
            if (handle == nullptr) handle = open_library(name, 0);
            if (handle != nullptr) {
                path = name;
                break;
            }
        }
        NF_CHECK(handle != nullptr, "ort_api: libonnxruntime not found; set NEXTFRAME_ORT_LIB or pip install onnxruntime");
    }

    using GetApiBase = const OrtApiBase* (*)();
    auto get_base = reinterpret_cast<GetApiBase>(dlsym(handle, "OrtGetApiBase"));
    NF_CHECK(get_base != nullptr, "ort_api: '" + path + "' has no OrtGetApiBase (not an onnxruntime library?)");
    const OrtApiBase* base = get_base();
    NF_CHECK(base != nullptr, "ort_api: OrtGetApiBase returned null in '" + path + "'");
    const std::string version = base->GetVersionString ? base->GetVersionString() : "unknown";
    const OrtApi* api = base->GetApi(ORT_API_VERSION);
    NF_CHECK(api != nullptr, "ort_api: onnxruntime " + version + " at '" + path + "' does not provide API version " +
                                 std::to_string(ORT_API_VERSION) + " (expected onnxruntime >= 1." +
                                 std::to_string(ORT_API_VERSION) + ")");
    Ort::InitApi(api);
    l.api = api;
    l.path = path;
    l.version = version;
    return *api;
}

std::string ort_lib_path() {
    std::lock_guard<std::mutex> lock(loaded().mu);
    return loaded().path;
}

std::string ort_version() {
    std::lock_guard<std::mutex> lock(loaded().mu);
    return loaded().version;
}

void ort_check(OrtStatus* status, const std::string& what) {
    if (status == nullptr) return;
    OrtStatusPtr owned(status);
    const char* msg = Ort::GetApi().GetErrorMessage(status);
    throw RuntimeError(what + ": " + one_line(msg ? msg : "unknown onnxruntime error"));
}

std::vector<std::string> ort_available_providers() {
    const OrtApi& api = ort_api();
    char** names = nullptr;
    int n = 0;
    ort_check(api.GetAvailableProviders(&names, &n), "ort_api: GetAvailableProviders failed");
    std::vector<std::string> out(names, names + n);
    ort_check(api.ReleaseAvailableProviders(names, n), "ort_api: ReleaseAvailableProviders failed");
    return out;
}

OrtLibraryInfo ort_library_info(const std::string& ort_lib) {
    ort_api(ort_lib);
    OrtLibraryInfo info;
    info.path = ort_lib_path();
    info.version = ort_version();
    info.providers = ort_available_providers();
    return info;
}

OrtSharedEnv ort_env(std::int64_t intra_threads) {
    static std::mutex mu;
    static std::weak_ptr<OrtEnv> cached;
    static std::int64_t cached_threads = 0;
    std::lock_guard<std::mutex> lock(mu);
    if (auto env = cached.lock()) return {env, cached_threads};
    const OrtApi& api = ort_api();
    // One intra-op pool for every session of this env: the frame loop alternates between two sessions (the
    // step and kv graphs), and two per-session pools spin against each other on a small CPU (measured on
    // 2 cores: step+kv took 20.9 ms per frame with two pools, 11.3 ms with one shared pool).
    OrtThreadingOptions* raw_tp = nullptr;
    ort_check(api.CreateThreadingOptions(&raw_tp), "ort_api: CreateThreadingOptions failed");
    std::unique_ptr<OrtThreadingOptions, OrtDeleter> tp(raw_tp);
    ort_check(api.SetGlobalIntraOpNumThreads(tp.get(), int(intra_threads)), "ort_api: SetGlobalIntraOpNumThreads failed");
    ort_check(api.SetGlobalInterOpNumThreads(tp.get(), 1), "ort_api: SetGlobalInterOpNumThreads failed");
    OrtEnv* raw = nullptr;
    ort_check(api.CreateEnvWithGlobalThreadPools(ORT_LOGGING_LEVEL_WARNING, "nextframe", tp.get(), &raw),
              "ort_api: CreateEnvWithGlobalThreadPools failed");
    std::shared_ptr<OrtEnv> env(raw, OrtDeleter());
    cached = env;
    cached_threads = intra_threads;
    return {env, intra_threads};
}

}  // namespace nf
