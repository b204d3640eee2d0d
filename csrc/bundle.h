// A bundle: a directory with manifest.json and the ONNX graphs it lists, each with sha256 and size.
//
// Bundle::open(dir) parses the manifest, validates it (format, format_version, the sections the runtime
// reads, the step graph's io specs against the frame and kv_cache sections, file paths that stay inside
// the bundle, the optional "tensorrt" section of prebuilt engines, each of them listed in files) and then
// checks every listed file's size and sha256. All problems are nf::InvalidArgument
// ("bundle: ..."): a bad bundle is something the caller can fix by re-exporting it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "graph_roles.h"
#include "json.h"
#include "kv_cache.h"
#include "tensor.h"

namespace nf {

struct FrameInfo {
    std::int64_t channels = 0;
    std::int64_t height = 0;
    std::int64_t width = 0;
    std::int64_t native_height = 0;  // 0 when the manifest does not say
    std::int64_t native_width = 0;
    // The game's colours (optional "palette", RGB 0-255, stored here in the frame's [-1, 1] units, 3 per colour):
    // every generated frame is snapped to them before it is kept or returned (frame_loop.cpp).
    std::vector<float> palette;
};

// The optional "native_decoder" section: how frames go back to native resolution (native_decoder.h).
struct NativeDecoderInfo {
    std::string kind;  // "detail_transfer"; empty when the manifest has no section
    double agree_threshold = 0.0;
};

struct SamplerInfo {
    std::string kind;          // "flow_euler"
    std::int64_t n_steps = 0;
    double shift = 1.0;
    std::vector<double> times;  // n_steps + 1 values, 1 -> 0
    double context_noise = 0.0;
};

struct GraphInfo {
    std::string file;  // relative to the bundle dir, listed in files
    std::int64_t opset = 0;
    std::vector<TensorSpec> inputs;
    std::vector<TensorSpec> outputs;
    std::vector<RoleSpec> input_roles;   // parallel to inputs (graph_roles.h)
    std::vector<RoleSpec> output_roles;  // parallel to outputs
    const RoleSpec* role_of_input(const std::string& name) const;
    const RoleSpec* role_of_output(const std::string& name) const;
    bool has_input_role(Role role) const;
    // The input (or output) of that role; nf::InvalidArgument "<graph file> has no <kind> of role <role>" when none.
    const TensorSpec& spec_with_role(Role role, bool input) const;
    // How far back input i reads: its back (context_frame / context_action), the frames it holds (context_frames /
    // context_actions), 0 for any other role.
    std::int64_t context_reach(std::size_t i) const;
    // The output that carries context input `context` on to the next frame (a frame graph's next_context_* of the
    // same back); InvalidArgument when none.
    const TensorSpec& next_of(const RoleSpec& context) const;
};

// A graph serving part of the noise-level range, from the manifest's optional "step_groups" (quantized
// bundles with activation scales per group of denoising steps, quant/ort_int8.py): the step graph's inputs
// and outputs in another file. The frame loop runs it for t_min < t <= t_max; the step graph runs every
// level no group claims.
struct StepGroup {
    std::string file;
    double t_min = 0.0;
    double t_max = 0.0;
};

struct FileEntry {
    std::string path;  // relative, never absolute, no ".." component
    std::string sha256;
    std::uint64_t bytes = 0;
};

// One prebuilt TensorRT engine (a plan file) of the step or the kv graph, from the manifest's optional "tensorrt"
// section (written by nextframe.export.tensorrt). Its file is also listed in files, so open() checks its
// size and sha256 like every other file; sha256 and bytes here must equal that files entry.
struct TrtEngineEntry {
    std::string graph = "step";      // "step" | "kv" (the manifest's "graph"; absent in older bundles: step)
    std::string file;                // relative to the bundle dir, e.g. "engines/step_fp16_sm89_trt10.16.0_<key16>.plan"
    std::string precision;           // fp32 | fp16 | bf16 | fp8 | int8
    std::string compute_capability;  // "sm_89": the GPU the plan was built for
    std::string trt_version;         // the TensorRT that built it, e.g. "10.16.0.72"
    std::string gpu;                 // device name it was built on ("" when the manifest does not say)
    std::string key;                 // engine cache key: 64 hex digits
    std::string sha256;
    std::uint64_t bytes = 0;
};

// One AOTInductor package (torch._inductor.aoti_compile_and_package) of a graph, from the manifest's optional
// "aoti" section (written by `nextframe export --aoti`): the same inputs and outputs as the ONNX graph, compiled for
// one device by one torch version. Its file is listed in files and verified like every other.
struct AotiPackage {
    std::string graph;          // "step" | "kv"
    std::string file;           // relative to the bundle dir, e.g. "aoti/step_cpu.pt2"
    std::string device;         // "cpu" | "cuda"
    std::string torch_version;  // the torch that compiled it, e.g. "2.13.0+cpu"
};

struct Bundle {
    static constexpr std::int64_t kFormatVersion = 1;
    static constexpr std::int64_t kMaxManifestBytes = 4 << 20;  // a real one is a few kB

    // Parse, validate and verify every file. dir must contain manifest.json.
    static Bundle open(const std::string& dir);
    // Parse and validate manifest text only; no file is read (verify_files() does that).
    static Bundle parse(const std::string& manifest_text, const std::string& dir);
    // Size, then sha256, of every listed file.
    void verify_files() const;
    // A listed file's bytes, read once and checked against its size and sha256 in memory: what a backend
    // loads is exactly what was hashed, even if the file is replaced after open().
    std::vector<char> read_verified(const std::string& relative) const;

    std::string path_of(const std::string& relative) const { return dir + "/" + relative; }
    std::string step_graph_path() const { return path_of(step.file); }
    // The optional kv graph: the step graph's inputs, only k_new/v_new out (the cache write of a finished frame).
    bool has_kv_graph() const { return !kv.file.empty(); }
    const TensorSpec* find_step_input(const std::string& name) const;
    // The step graph reads a K/V ring (cache roles); then the manifest has a kv_cache section.
    bool uses_cache() const { return step.has_input_role(Role::CacheK); }
    // How many past frames the context roles of the step graph read (0: none; frame_history.h).
    std::int64_t history_depth() const;

    std::string dir;
    Json manifest;  // the whole document, for fields the runtime does not interpret
    std::string game;
    std::int64_t n_actions = 0;
    std::int64_t no_action = 0;  // == n_actions: the action of a frame with no preceding action
    std::vector<std::string> actions;
    FrameInfo frame;
    NativeDecoderInfo native_decoder;
    KvCacheLayout kv_cache;  // all zero when the manifest has no kv_cache section (models without a cache)
    SamplerInfo sampler;
    GraphInfo step;
    GraphInfo kv;  // file empty when the manifest has no "graphs.kv"
    // The optional frame graph ("graphs.frame", export/frame_graph.py): the whole next-frame step of a frame-stack
    // bundle at frame_graph_times (== sampler.times), for device-resident loops (ort_device_loop.h).
    GraphInfo frame_graph;  // file empty when the manifest has none
    std::vector<double> frame_graph_times;
    bool has_frame_graph() const { return !frame_graph.file.empty(); }
    std::vector<StepGroup> step_groups;  // empty when the manifest has no "step_groups"
    // The step graph with another file: what an engine for a step group loads.
    GraphInfo step_group_graph(std::size_t i) const;
    std::vector<FileEntry> files;
    std::vector<TrtEngineEntry> trt_engines;  // empty when the manifest has no "tensorrt" section
    std::vector<AotiPackage> aoti_packages;   // empty when the manifest has no "aoti" section
    const AotiPackage* find_aoti_package(const std::string& graph, const std::string& device) const;
};

// True when the relative path would leave the bundle dir (absolute, or a ".." component).
bool path_escapes(const std::string& relative);

// The pieces every bundle kind shares (this one and ar_bundle.h): dir/manifest.json as text (a regular file of at
// most max_bytes), the "files" section, and the size + sha256 checks of the files it lists.
std::string read_manifest_text(const std::string& dir, std::int64_t max_bytes);
// The manifest's JSON, which must be an object ("bundle: manifest.json is not valid JSON (...)" otherwise).
Json parse_manifest_json(const std::string& manifest_text);
std::vector<FileEntry> parse_file_entries(const Json& files);
void verify_listed_files(const std::string& dir, const std::vector<FileEntry>& files);
// A listed file's bytes, checked against its size and sha256 in memory (what a backend loads is what was hashed).
std::vector<char> read_listed_file(const std::string& dir, const std::vector<FileEntry>& files, const std::string& relative);

}  // namespace nf
