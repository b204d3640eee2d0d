#include "bundle.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <initializer_list>
#include <sstream>

#include <climits>
#include <cstdlib>
#include <sys/stat.h>

#include "common.h"
#include "interrupt.h"
#include "manifest_reader.h"
#include "sampler.h"
#include "sha256.h"

namespace nf {

namespace {

using Reader = ManifestReader;

constexpr std::int64_t kMaxSide = 8192;                  // pixels per frame side
constexpr std::int64_t kMaxFrameValues = 1LL << 26;      // floats per frame (256 MiB)
constexpr std::int64_t kMaxCacheValues = 1LL << 32;      // floats in the K/V ring (16 GiB)

// A graph's inputs or outputs: name, dtype, shape and role (declared, or from a legacy name).
std::vector<TensorSpec> parse_specs(const Reader& graph, const std::string& key, std::vector<RoleSpec>* roles,
                                    const std::string& graph_name) {
    const bool input = key == "inputs";
    std::vector<TensorSpec> specs;
    const auto& items = graph.array(key);
    for (std::size_t i = 0; i < items.size(); ++i) {
        const std::string where = key + "[" + std::to_string(i) + "]";
        NF_CHECK_ARG(items[i].is_object(), "bundle: manifest key '" + graph.name(where) + "' must be an object");
        const Reader r(items[i], graph.name(where));
        TensorSpec s;
        s.name = r.string("name");
        try {
            s.dtype = parse_dtype(r.string("dtype"));
        } catch (const InvalidArgument& e) {
            throw InvalidArgument("bundle: manifest key '" + r.name("dtype") + "': " + e.what());
        }
        for (const auto& d : r.array("shape")) {
            NF_CHECK_ARG(d.is_int() && d.as_int() > 0,
                         "bundle: manifest key '" + r.name("shape") + "' must hold positive integers");
            s.shape.push_back(d.as_int());
        }
        RoleSpec role;
        if (r.find("role") != nullptr) {
            try {
                role.role = parse_role(r.string("role"), input);
            } catch (const InvalidArgument& e) {
                throw InvalidArgument("bundle: " + graph_name + " graph " + (input ? "input" : "output") + " '" + s.name +
                                      "': " + e.what());
            }
            if (has_back(role.role)) {
                role.back = r.integer("back");
                NF_CHECK_ARG(role.back >= 1 && role.back <= kMaxContext,
                             "bundle: " + graph_name + " graph " + (input ? "input" : "output") + " '" + s.name + "' back " + std::to_string(role.back) +
                                 " out of range (expected 1.." + std::to_string(kMaxContext) + ")");
            }
        } else {
            NF_CHECK_ARG(legacy_role(s.name, input, &role),
                         "bundle: " + graph_name + " graph " + (input ? "input" : "output") + " '" + s.name +
                             "' not known to the runtime");
        }
        specs.push_back(std::move(s));
        roles->push_back(role);
    }
    return specs;
}

// graphs.<name>: file (not empty), opset, inputs and outputs with their roles. Returns its reader.
Reader parse_graph(const Reader& graphs, const std::string& name, GraphInfo* g) {
    const Reader r = graphs.object(name);
    g->file = r.string("file");
    NF_CHECK_ARG(!g->file.empty(), "bundle: manifest key 'graphs." + name + ".file' is empty");
    g->opset = r.positive("opset");
    g->inputs = parse_specs(r, "inputs", &g->input_roles, name);
    g->outputs = parse_specs(r, "outputs", &g->output_roles, name);
    return r;
}

// Each io of a graph against what its role implies: dtype, and shape from the frame section, the kv_cache
// section or the context size. Each role at most once (context_frame / context_action once per `back`);
// noisy_frame, noise_level, action and the prediction are required, and the cache roles come all together,
// with k_new and v_new out (kv_only: the kv graph, whose only outputs are those two).
void check_graph_io(const Bundle& b, const GraphInfo& g, const std::string& graph, bool kv_only) {
    const auto& f = b.frame;
    const auto& kv = b.kv_cache;
    const Shape frame = {1, f.channels, f.height, f.width};
    const std::string where = "bundle: " + graph + " graph ";
    auto expect = [&](const TensorSpec& s, const char* kind, DType dtype, const Shape& shape, const std::string& source) {
        NF_CHECK_ARG(s.dtype == dtype, where + kind + " '" + s.name + "' dtype " + dtype_name(s.dtype) + " (expected " +
                                           dtype_name(dtype) + ")");
        NF_CHECK_ARG(s.shape == shape, where + kind + " '" + s.name + "' shape " + shape_str(s.shape) + " does not match " +
                                           source + " (expected " + shape_str(shape) + ")");
    };
    auto context_size = [&](const TensorSpec& s) {
        const std::int64_t k = s.shape.size() >= 2 ? s.shape[1] : 0;
        NF_CHECK_ARG(k >= 1 && k <= kMaxContext, where + "input '" + s.name + "' holds " + std::to_string(k) +
                                                     " context frames (expected 1.." + std::to_string(kMaxContext) + ")");
        return k;
    };
    std::vector<std::pair<Role, std::int64_t>> seen;
    for (std::size_t i = 0; i < g.inputs.size(); ++i) {
        const TensorSpec& s = g.inputs[i];
        const RoleSpec& r = g.input_roles[i];
        NF_CHECK_ARG(!is_frame_graph_role(r.role), where + "input '" + s.name + "' has role " + role_name(r.role) +
                                                       ", which only the frame graph reads");
        for (const auto& p : seen)
            NF_CHECK_ARG(!(p.first == r.role && p.second == r.back), where + "input '" + s.name + "': role " +
                                                                       role_name(r.role) + " listed twice");
        seen.emplace_back(r.role, r.back);
        NF_CHECK_ARG(!is_cache_role(r.role) || kv.n_slots > 0,
                     where + "input '" + s.name + "' reads the K/V cache but the manifest has no kv_cache section");
        switch (r.role) {
            case Role::NoisyFrame:
            case Role::ContextFrame: expect(s, "input", DType::F32, frame, "frame"); break;
            case Role::NoiseLevel:
            case Role::ContextNoiseLevel: expect(s, "input", DType::F32, {1}, "a scalar time"); break;
            case Role::Action:
            case Role::ContextAction: expect(s, "input", DType::I64, {1}, "a single action"); break;
            case Role::ContextFrames: {
                const std::int64_t k = context_size(s);
                expect(s, "input", DType::F32, {1, k, f.channels, f.height, f.width}, "frame");
                break;
            }
            case Role::ContextActions: expect(s, "input", DType::I64, {1, context_size(s)}, "context actions"); break;
            case Role::CacheK:
            case Role::CacheV: expect(s, "input", DType::F32, kv.cache_shape(), "kv_cache"); break;
            case Role::CacheAges: expect(s, "input", DType::I64, {kv.n_slots}, "kv_cache.n_slots"); break;
            default: NF_CHECK_ARG(false, where + "input '" + s.name + "' has an output role");
        }
    }
    auto has = [&](Role role) {
        for (const auto& p : seen)
            if (p.first == role) return true;
        return false;
    };
    for (Role required : {Role::NoisyFrame, Role::NoiseLevel, Role::Action})
        NF_CHECK_ARG(has(required), where + "has no " + role_name(required) + " input");
    const bool cache = has(Role::CacheK) || has(Role::CacheV) || has(Role::CacheAges);
    NF_CHECK_ARG(!cache || (has(Role::CacheK) && has(Role::CacheV) && has(Role::CacheAges)),
                 where + "needs all of cache_k, cache_v and cache_ages, or none");
    const std::string prediction = prediction_output_name(prediction_of_kind(b.sampler.kind));
    std::vector<Role> outs;
    for (std::size_t i = 0; i < g.outputs.size(); ++i) {
        const TensorSpec& s = g.outputs[i];
        const Role role = g.output_roles[i].role;
        NF_CHECK_ARG(!is_frame_graph_role(role), where + "output '" + s.name + "' has role " + role_name(role) +
                                                     ", which only the frame graph writes");
        for (Role o : outs) NF_CHECK_ARG(o != role, where + "output '" + s.name + "': role " + role_name(role) + " listed twice");
        outs.push_back(role);
        if (role == Role::Prediction) {
            NF_CHECK_ARG(s.name == prediction, where + "output '" + s.name + "' not known to the runtime (sampler kind " +
                                                   b.sampler.kind + ")");
            expect(s, "output", DType::F32, frame, "frame");
        } else {
            NF_CHECK_ARG(cache, where + "output '" + s.name + "' (" + role_name(role) + ") but the graph reads no cache");
            expect(s, "output", DType::F32, kv.frame_kv_shape(), "kv_cache");
        }
    }
    auto out = [&](Role role) { return std::find(outs.begin(), outs.end(), role) != outs.end(); };
    if (!kv_only) NF_CHECK_ARG(out(Role::Prediction), where + "output '" + prediction + "' missing");
    if (cache) {
        NF_CHECK_ARG(out(Role::KNew), where + "output 'k_new' missing");
        NF_CHECK_ARG(out(Role::VNew), where + "output 'v_new' missing");
    }
    for (std::size_t i = 0; i < g.inputs.size(); ++i)
        for (std::size_t j = i + 1; j < g.inputs.size(); ++j)
            NF_CHECK_ARG(g.inputs[i].name != g.inputs[j].name, where + "input '" + g.inputs[i].name + "' listed twice");
}

// The kv graph is fed the very buffers of the step graph, so its inputs must be the step graph's, and its
// outputs exactly the step graph's k_new and v_new.
void check_kv_io(const Bundle& b) {
    NF_CHECK_ARG(b.kv.inputs.size() == b.step.inputs.size(), "bundle: kv graph inputs differ from the step graph's");
    for (std::size_t i = 0; i < b.kv.inputs.size(); ++i) {
        const TensorSpec& k = b.kv.inputs[i];
        const TensorSpec* s = b.find_step_input(k.name);
        const RoleSpec* r = b.step.role_of_input(k.name);
        NF_CHECK_ARG(s != nullptr && s->dtype == k.dtype && s->shape == k.shape && r->role == b.kv.input_roles[i].role &&
                         r->back == b.kv.input_roles[i].back,
                     "bundle: kv graph input '" + k.name + "' differs from the step graph's");
    }
    for (const auto& si : b.step.inputs) {
        const bool found = std::any_of(b.kv.inputs.begin(), b.kv.inputs.end(), [&](const TensorSpec& k) { return k.name == si.name; });
        NF_CHECK_ARG(found, "bundle: kv graph lacks the step graph's input '" + si.name + "'");
    }
    NF_CHECK_ARG(b.kv.outputs.size() == 2, "bundle: kv graph must have exactly the outputs k_new and v_new");
    for (const auto& o : b.kv.outputs) {
        const TensorSpec* s = nullptr;
        for (const auto& so : b.step.outputs)
            if (so.name == o.name) s = &so;
        NF_CHECK_ARG((o.name == "k_new" || o.name == "v_new") && s != nullptr && s->dtype == o.dtype && s->shape == o.shape,
                     "bundle: kv graph output '" + o.name + "' is not the step graph's k_new or v_new");
    }
    NF_CHECK_ARG(b.kv.outputs[0].name != b.kv.outputs[1].name, "bundle: kv graph output '" + b.kv.outputs[0].name + "' listed twice");
}

// The frame graph (graph_roles.h): a bundle's whole step, so its io follows from the step graph's: each of the step
// graph's context and cache inputs once (same role, back, dtype and shape), action, frame_noise, push_noise exactly
// where the sampler noises its context; out the frame, each context input one frame on, k_new and v_new where there
// is a ring, non_finite; in any order. Its schedule is the sampler's (the graph bakes it in).
void check_frame_graph_io(const Bundle& b) {
    const GraphInfo& g = b.frame_graph;
    const std::string where = "bundle: frame graph ";
    const auto& f = b.frame;
    const Shape frame = {1, f.channels, f.height, f.width};
    struct Want {
        Role role;
        std::int64_t back;
        DType dtype;
        Shape shape;
    };
    std::vector<Want> inputs, outputs = {{Role::Frame, 0, DType::F32, frame}};
    bool context = false;
    for (std::size_t i = 0; i < b.step.inputs.size(); ++i) {
        const RoleSpec& r = b.step.input_roles[i];
        const TensorSpec& s = b.step.inputs[i];
        if (is_cache_role(r.role)) inputs.push_back({r.role, 0, s.dtype, s.shape});
        if (!is_context_role(r.role)) continue;
        context = true;
        inputs.push_back({r.role, r.back, s.dtype, s.shape});
        outputs.push_back({next_context_role(r.role), r.back, s.dtype, s.shape});
    }
    NF_CHECK_ARG(context, where + "needs a step graph that reads its context (context_frame or context_frames)");
    inputs.push_back({Role::Action, 0, DType::I64, {1}});
    inputs.push_back({Role::FrameNoise, 0, DType::F32, frame});
    if (b.sampler.context_noise > 0.0) inputs.push_back({Role::PushNoise, 0, DType::F32, frame});
    if (b.uses_cache())
        for (Role r : {Role::KNew, Role::VNew}) outputs.push_back({r, 0, DType::F32, b.kv_cache.frame_kv_shape()});
    outputs.push_back({Role::NonFinite, 0, DType::I64, {1}});
    auto check = [&](const std::vector<TensorSpec>& specs, const std::vector<RoleSpec>& roles, const std::vector<Want>& want,
                     const char* kind) {
        NF_CHECK_ARG(specs.size() == want.size(), where + "has " + std::to_string(specs.size()) + " " + kind +
                                                      "s (expected " + std::to_string(want.size()) + ")");
        for (const Want& w : want) {
            const std::string what = std::string(role_name(w.role)) + (w.back ? " back " + std::to_string(w.back) : "");
            std::size_t n = 0;
            for (std::size_t i = 0; i < specs.size(); ++i) {
                if (roles[i].role != w.role || roles[i].back != w.back) continue;
                ++n;
                NF_CHECK_ARG(specs[i].dtype == w.dtype && specs[i].shape == w.shape,
                             where + kind + " '" + specs[i].name + "' is " + dtype_name(specs[i].dtype) +
                                 shape_str(specs[i].shape) + " (expected " + dtype_name(w.dtype) + shape_str(w.shape) + ")");
            }
            NF_CHECK_ARG(n == 1, where + "needs one " + kind + " of role " + what + " (has " + std::to_string(n) + ")");
        }
    };
    check(g.inputs, g.input_roles, inputs, "input");
    check(g.outputs, g.output_roles, outputs, "output");
    NF_CHECK_ARG(b.frame_graph_times == b.sampler.times,
                 where + "bakes in a schedule other than sampler.times (re-export the bundle)");
}

bool is_hex64(const std::string& s) {
    if (s.size() != 64) return false;
    for (const char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

// "sm_" followed by digits, e.g. "sm_89", "sm_120".
bool is_sm_name(const std::string& s) {
    if (s.size() < 4 || s.compare(0, 3, "sm_") != 0) return false;
    for (std::size_t i = 3; i < s.size(); ++i)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

// A file the manifest names elsewhere (a graph, a step group, a package): inside the bundle and listed in files,
// so open() checks its size and sha256 like every other. what names it in the error.
const FileEntry& check_in_files(const Bundle& b, const std::string& file, const std::string& what) {
    NF_CHECK_ARG(!path_escapes(file), "bundle: file path '" + file + "' escapes the bundle");
    const auto listed = std::find_if(b.files.begin(), b.files.end(), [&](const FileEntry& f) { return f.path == file; });
    NF_CHECK_ARG(listed != b.files.end(), "bundle: " + what + " '" + file + "' not listed in files");
    return *listed;
}

// The optional "tensorrt" section: {"engines": [{[graph,] file, precision, compute_capability, trt_version, key,
// sha256, bytes[, gpu]}]}; graph "step" (the default) or "kv" (only where the bundle has a kv graph). Each engine file must stay inside the bundle and be listed in files with the same
// sha256 and size (verify_files() then checks the file itself).
void parse_tensorrt(Bundle& b, const Json& section) {
    NF_CHECK_ARG(section.is_object(), "bundle: manifest key 'tensorrt' must be an object (got " +
                                          std::string(Json::kind_name(section.kind())) + ")");
    const Reader trt(section, "tensorrt");
    const auto& items = trt.array("engines");
    for (std::size_t i = 0; i < items.size(); ++i) {
        const std::string where = trt.name("engines[" + std::to_string(i) + "]");
        NF_CHECK_ARG(items[i].is_object(), "bundle: manifest key '" + where + "' must be an object");
        const Reader r(items[i], where);
        TrtEngineEntry e;
        if (r.find("graph") != nullptr) e.graph = r.string("graph");
        NF_CHECK_ARG(e.graph == "step" || (e.graph == "kv" && b.has_kv_graph()) || (e.graph == "frame" && b.has_frame_graph()),
                     "bundle: " + where + ".graph '" + e.graph + "' (expected step" + (b.has_kv_graph() ? " or kv" : "") +
                         (b.has_frame_graph() ? " or frame" : "") + ")");
        e.file = r.string("file");
        const FileEntry& listed = check_in_files(b, e.file, "tensorrt engine file");
        e.precision = r.string("precision");
        NF_CHECK_ARG(e.precision == "fp32" || e.precision == "fp16" || e.precision == "bf16" || e.precision == "fp8" ||
                         e.precision == "int8",
                     "bundle: " + where + ".precision '" + e.precision + "' not supported (expected fp32, fp16, bf16, fp8, int8)");
        e.compute_capability = r.string("compute_capability");
        NF_CHECK_ARG(is_sm_name(e.compute_capability),
                     "bundle: " + where + ".compute_capability '" + e.compute_capability + "' (expected sm_<digits>, e.g. sm_89)");
        e.trt_version = r.string("trt_version");
        NF_CHECK_ARG(!e.trt_version.empty() && e.trt_version[0] >= '0' && e.trt_version[0] <= '9',
                     "bundle: " + where + ".trt_version '" + e.trt_version + "' (expected a version such as 10.16.0.72)");
        e.key = r.string("key");
        NF_CHECK_ARG(is_hex64(e.key), "bundle: " + where + ".key is not 64 lower-case hex digits");
        e.sha256 = r.string("sha256");
        NF_CHECK_ARG(is_hex64(e.sha256), "bundle: " + where + ".sha256 is not 64 lower-case hex digits");
        const std::int64_t n = r.integer("bytes");
        NF_CHECK_ARG(n >= 0, "bundle: " + where + ".bytes is negative");
        e.bytes = std::uint64_t(n);
        if (const Json* g = r.find("gpu"); g != nullptr && g->is_string()) e.gpu = g->as_string();
        NF_CHECK_ARG(listed.sha256 == e.sha256 && listed.bytes == e.bytes,
                     "bundle: " + where + " sha256/bytes disagree with files." + e.file);
        for (const auto& other : b.trt_engines)
            NF_CHECK_ARG(other.file != e.file, "bundle: tensorrt engine file '" + e.file + "' listed twice");
        b.trt_engines.push_back(std::move(e));
    }
}

// The optional "aoti" section: {"packages": [{graph, file, device, torch}]}; each file listed in files.
void parse_aoti(Bundle& b, const Json& section) {
    NF_CHECK_ARG(section.is_object(), "bundle: manifest key 'aoti' must be an object (got " +
                                          std::string(Json::kind_name(section.kind())) + ")");
    const Reader aoti(section, "aoti");
    const auto& items = aoti.array("packages");
    for (std::size_t i = 0; i < items.size(); ++i) {
        const std::string where = aoti.name("packages[" + std::to_string(i) + "]");
        NF_CHECK_ARG(items[i].is_object(), "bundle: manifest key '" + where + "' must be an object");
        const Reader r(items[i], where);
        AotiPackage p;
        p.graph = r.string("graph");
        NF_CHECK_ARG(p.graph == "step" || (p.graph == "kv" && b.has_kv_graph()),
                     "bundle: " + where + ".graph '" + p.graph + "' (expected step" + (b.has_kv_graph() ? " or kv)" : ")"));
        p.file = r.string("file");
        check_in_files(b, p.file, "aoti package file");
        p.device = r.string("device");
        NF_CHECK_ARG(p.device == "cpu" || p.device == "cuda",
                     "bundle: " + where + ".device '" + p.device + "' (expected cpu or cuda)");
        p.torch_version = r.string("torch");
        NF_CHECK_ARG(b.find_aoti_package(p.graph, p.device) == nullptr,
                     "bundle: two aoti packages of the " + p.graph + " graph for " + p.device);
        b.aoti_packages.push_back(std::move(p));
    }
}

}  // namespace

const AotiPackage* Bundle::find_aoti_package(const std::string& graph, const std::string& device) const {
    for (const auto& p : aoti_packages)
        if (p.graph == graph && p.device == device) return &p;
    return nullptr;
}

bool path_escapes(const std::string& relative) {
    if (relative.empty() || relative[0] == '/' || relative[0] == '\\') return true;
    std::size_t start = 0;
    for (;;) {
        const std::size_t end = relative.find_first_of("/\\", start);
        const std::string part = relative.substr(start, end == std::string::npos ? std::string::npos : end - start);
        if (part == "..") return true;
        if (end == std::string::npos) return false;
        start = end + 1;
    }
}

const TensorSpec* Bundle::find_step_input(const std::string& name) const {
    for (const auto& s : step.inputs)
        if (s.name == name) return &s;
    return nullptr;
}

const RoleSpec* GraphInfo::role_of_input(const std::string& name) const {
    for (std::size_t i = 0; i < inputs.size(); ++i)
        if (inputs[i].name == name) return &input_roles[i];
    return nullptr;
}

const RoleSpec* GraphInfo::role_of_output(const std::string& name) const {
    for (std::size_t i = 0; i < outputs.size(); ++i)
        if (outputs[i].name == name) return &output_roles[i];
    return nullptr;
}

GraphInfo Bundle::step_group_graph(std::size_t i) const {
    NF_CHECK_ARG(i < step_groups.size(), "bundle: no step group " + std::to_string(i));
    GraphInfo g = step;
    g.file = step_groups[i].file;
    return g;
}

const TensorSpec& GraphInfo::spec_with_role(Role role, bool input) const {
    const auto& specs = input ? inputs : outputs;
    const auto& roles = input ? input_roles : output_roles;
    for (std::size_t i = 0; i < specs.size(); ++i)
        if (roles[i].role == role) return specs[i];
    throw InvalidArgument("bundle: " + file + " has no " + (input ? "input" : "output") + " of role " + role_name(role));
}

std::int64_t GraphInfo::context_reach(std::size_t i) const {
    const Role r = input_roles[i].role;
    if (r == Role::ContextFrame || r == Role::ContextAction) return input_roles[i].back;
    if (r == Role::ContextFrames || r == Role::ContextActions) return inputs[i].shape[1];
    return 0;
}

const TensorSpec& GraphInfo::next_of(const RoleSpec& context) const {
    for (std::size_t o = 0; o < outputs.size(); ++o)
        if (output_roles[o].role == next_context_role(context.role) && output_roles[o].back == context.back) return outputs[o];
    throw InvalidArgument("bundle: " + file + " has no output carrying its " + role_name(context.role) + " input on");
}

bool GraphInfo::has_input_role(Role role) const {
    for (const auto& r : input_roles)
        if (r.role == role) return true;
    return false;
}

std::int64_t Bundle::history_depth() const {
    std::int64_t depth = 0;
    for (std::size_t i = 0; i < step.inputs.size(); ++i) depth = std::max(depth, step.context_reach(i));
    return depth;
}

Json parse_manifest_json(const std::string& manifest_text) {
    Json j;
    try {
        j = Json::parse(manifest_text);
    } catch (const InvalidArgument& e) {
        throw InvalidArgument(std::string("bundle: manifest.json is not valid JSON (") + e.what() + ")");
    }
    NF_CHECK_ARG(j.is_object(), "bundle: manifest.json must hold an object");
    return j;
}

Bundle Bundle::parse(const std::string& manifest_text, const std::string& dir) {
    Bundle b;
    b.dir = dir;
    b.manifest = parse_manifest_json(manifest_text);
    const Reader root(b.manifest, "");

    const std::string& format = root.string("format");
    NF_CHECK_ARG(format == "nextframe.bundle", "bundle: format '" + format + "' not supported (expected nextframe.bundle)");
    const Json& fv = root.get("format_version");
    NF_CHECK_ARG(fv.is_int(), "bundle: manifest key 'format_version' must be an integer");
    NF_CHECK_ARG(fv.as_int() == kFormatVersion, "bundle: format_version " + std::to_string(fv.as_int()) +
                                                    " not supported (expected " + std::to_string(kFormatVersion) + ")");

    const Reader model = root.object("model");
    b.n_actions = model.bounded("n_actions", 1024);
    if (const Json* g = model.find("game"); g != nullptr && g->is_string()) b.game = g->as_string();
    for (const auto& a : root.array("actions")) {
        NF_CHECK_ARG(a.is_string(), "bundle: manifest key 'actions' must hold strings");
        b.actions.push_back(a.as_string());
    }
    NF_CHECK_ARG(std::int64_t(b.actions.size()) == b.n_actions,
                 "bundle: manifest lists " + std::to_string(b.actions.size()) + " actions (expected model.n_actions " +
                     std::to_string(b.n_actions) + ")");
    b.no_action = root.integer("no_action");
    NF_CHECK_ARG(b.no_action == b.n_actions, "bundle: no_action " + std::to_string(b.no_action) +
                                                 " (expected n_actions " + std::to_string(b.n_actions) + ")");

    const Reader frame = root.object("frame");
    b.frame.channels = frame.bounded("channels", 4);
    b.frame.height = frame.bounded("height", kMaxSide);
    b.frame.width = frame.bounded("width", kMaxSide);
    if (frame.find("native_height") != nullptr) b.frame.native_height = frame.bounded("native_height", kMaxSide);
    if (frame.find("native_width") != nullptr) b.frame.native_width = frame.bounded("native_width", kMaxSide);
    checked_product({b.frame.channels, b.frame.height, b.frame.width}, kMaxFrameValues, "frame channels x height x width");
    if (frame.find("palette") != nullptr) {
        const auto& colours = frame.array("palette");
        NF_CHECK_ARG(b.frame.channels == 3, "bundle: frame.palette needs 3-channel frames (got " +
                                                std::to_string(b.frame.channels) + ")");
        NF_CHECK_ARG(!colours.empty() && colours.size() <= 256,
                     "bundle: frame.palette holds " + std::to_string(colours.size()) + " colours (expected 1..256)");
        for (const auto& c : colours) {
            NF_CHECK_ARG(c.is_array() && c.as_array().size() == 3,
                         "bundle: frame.palette entries must be [r, g, b] triples");
            for (const auto& v : c.as_array()) {
                NF_CHECK_ARG(v.is_int() && v.as_int() >= 0 && v.as_int() <= 255,
                             "bundle: frame.palette values must be integers in 0..255");
                b.frame.palette.push_back(float(v.as_int()) / 127.5f - 1.0f);  // as torch: c / 127.5 - 1 in float32
            }
        }
    }
    if (root.find("native_decoder") != nullptr) {
        const Reader nd = root.object("native_decoder");
        b.native_decoder.kind = nd.string("kind");
        NF_CHECK_ARG(b.native_decoder.kind == "detail_transfer",
                     "bundle: native_decoder kind '" + b.native_decoder.kind + "' not supported (expected detail_transfer)");
        b.native_decoder.agree_threshold = nd.number("agree_threshold");
        NF_CHECK_ARG(std::isfinite(b.native_decoder.agree_threshold) && b.native_decoder.agree_threshold > 0.0,
                     "bundle: native_decoder.agree_threshold " + std::to_string(b.native_decoder.agree_threshold) +
                         " (expected > 0)");
        NF_CHECK_ARG(b.frame.native_height > 0 && b.frame.native_width > 0,
                     "bundle: native_decoder needs frame.native_height and frame.native_width");
    }

    if (root.find("kv_cache") != nullptr) {  // models that attend over past frames' K/V
        const Reader kv = root.object("kv_cache");
        b.kv_cache.n_layers = kv.bounded("n_layers", 1024);
        b.kv_cache.n_heads = kv.bounded("n_heads", 1024);
        b.kv_cache.n_slots = kv.bounded("n_slots", 65536);
        b.kv_cache.window = kv.bounded("window", 65535);
        b.kv_cache.tokens_per_frame = kv.bounded("tokens_per_frame", 1 << 20);
        b.kv_cache.head_dim = kv.bounded("head_dim", 65536);
        const auto& c = b.kv_cache;
        checked_product({2, c.n_layers, c.n_slots, c.n_heads, c.tokens_per_frame, c.head_dim}, kMaxCacheValues,
                        "kv_cache values (2 x layers x slots x heads x tokens x head_dim)");
        NF_CHECK_ARG(b.kv_cache.n_slots > b.kv_cache.window,
                     "bundle: kv_cache.n_slots " + std::to_string(b.kv_cache.n_slots) + " must exceed window (expected >= " +
                         std::to_string(b.kv_cache.window + 1) + ")");
    }

    const Reader sampler = root.object("sampler");
    b.sampler.kind = sampler.string("kind");
    NF_CHECK_ARG(b.sampler.kind == "flow_euler" || b.sampler.kind == "flow_euler_x0",
                 "bundle: sampler kind '" + b.sampler.kind + "' not supported (expected flow_euler, flow_euler_x0)");
    b.sampler.n_steps = sampler.bounded("n_steps", 1000);
    b.sampler.shift = sampler.number("shift");
    NF_CHECK_ARG(b.sampler.shift > 0 && std::isfinite(b.sampler.shift), "bundle: sampler.shift must be positive");
    b.sampler.context_noise = sampler.number("context_noise");
    NF_CHECK_ARG(b.sampler.context_noise >= 0.0 && b.sampler.context_noise <= 1.0,
                 "bundle: sampler.context_noise " + std::to_string(b.sampler.context_noise) + " (expected 0..1)");
    for (const auto& t : sampler.array("times")) {
        NF_CHECK_ARG(t.is_number(), "bundle: manifest key 'sampler.times' must hold numbers");
        b.sampler.times.push_back(t.as_double());
    }
    NF_CHECK_ARG(std::int64_t(b.sampler.times.size()) == b.sampler.n_steps + 1,
                 "bundle: sampler.times has " + std::to_string(b.sampler.times.size()) + " entries (expected n_steps + 1 = " +
                     std::to_string(b.sampler.n_steps + 1) + ")");
    for (std::size_t i = 0; i < b.sampler.times.size(); ++i) {
        const double t = b.sampler.times[i];
        NF_CHECK_ARG(t >= 0.0 && t <= 1.0, "bundle: sampler.times[" + std::to_string(i) + "] = " + std::to_string(t) +
                                               " (expected 0..1)");
        NF_CHECK_ARG(i == 0 || t <= b.sampler.times[i - 1], "bundle: sampler.times must not increase");
    }

    const Reader graphs = root.object("graphs");
    parse_graph(graphs, "step", &b.step);
    if (graphs.find("kv") != nullptr) parse_graph(graphs, "kv", &b.kv);
    if (graphs.find("frame") != nullptr) {
        const Reader fg = parse_graph(graphs, "frame", &b.frame_graph);
        for (const auto& t : fg.array("times")) {
            NF_CHECK_ARG(t.is_number(), "bundle: manifest key 'graphs.frame.times' must hold numbers");
            b.frame_graph_times.push_back(t.as_double());
        }
    }

    if (const Json* q = root.find("quantization"); q != nullptr) {
        // written by `nextframe quantize`; a precision this core does not know could mean graphs it would
        // run wrongly, so it is refused rather than ignored
        NF_CHECK_ARG(q->is_object(), "bundle: manifest key 'quantization' must be an object");
        const std::string precision = Reader(*q, "quantization").string("precision");
        NF_CHECK_ARG(precision == "int8" || precision == "fp8" || precision == "w4a8",
                     "bundle: quantization.precision '" + precision + "' unknown (expected int8, fp8 or w4a8)");
    }
    if (const Json* groups = root.find("step_groups"); groups != nullptr) {
        NF_CHECK_ARG(groups->is_array(), "bundle: manifest key 'step_groups' must be an array");
        for (std::size_t i = 0; i < groups->as_array().size(); ++i) {
            const std::string key = "step_groups[" + std::to_string(i) + "]";
            const Json& g = groups->as_array()[i];
            NF_CHECK_ARG(g.is_object(), "bundle: manifest key '" + key + "' must be an object");
            const Reader r(g, key);
            StepGroup sg;
            sg.file = r.string("file");
            sg.t_min = r.number("t_min");
            sg.t_max = r.number("t_max");
            NF_CHECK_ARG(!sg.file.empty() && sg.file != b.step.file,
                         "bundle: " + key + ".file must name a graph other than the step graph");
            NF_CHECK_ARG(sg.t_min >= 0.0 && sg.t_min < sg.t_max && sg.t_max <= 1.0,
                         "bundle: " + key + " needs 0 <= t_min < t_max <= 1 (got " + std::to_string(sg.t_min) +
                             ", " + std::to_string(sg.t_max) + ")");
            for (const auto& other : b.step_groups)
                NF_CHECK_ARG(sg.t_max <= other.t_min || sg.t_min >= other.t_max,
                             "bundle: " + key + " overlaps another step group's noise levels");
            b.step_groups.push_back(std::move(sg));
        }
    }

    b.files = parse_file_entries(root.get("files"));
    for (const GraphInfo* g : {&b.step, &b.kv, &b.frame_graph})
        if (!g->file.empty()) check_in_files(b, g->file, "graph file");
    for (const auto& g : b.step_groups) check_in_files(b, g.file, "step group graph");
    if (const Json* trt = root.find("tensorrt"); trt != nullptr) parse_tensorrt(b, *trt);

    check_graph_io(b, b.step, "step", false);
    if (b.has_kv_graph()) {
        NF_CHECK_ARG(b.uses_cache(), "bundle: a kv graph but the step graph reads no cache");
        check_kv_io(b);
        check_graph_io(b, b.kv, "kv", true);
    }
    if (b.has_frame_graph()) check_frame_graph_io(b);
    if (const Json* aoti = root.find("aoti"); aoti != nullptr) parse_aoti(b, *aoti);
    return b;
}

namespace {

std::string real_path(const std::string& p) {
    char buf[PATH_MAX];
    return ::realpath(p.c_str(), buf) != nullptr ? std::string(buf) : std::string();
}

// A bundle is untrusted input: every file it names must be a regular file (a FIFO or device would block or
// never end a read, a symbolic link could point anywhere) whose real path stays inside the bundle.
// Returns the file's size.
std::uint64_t check_regular_file(const std::string& dir_real, const std::string& rel, const std::string& p) {
    struct stat st{};
    NF_CHECK_ARG(::lstat(p.c_str(), &st) == 0, "bundle: file '" + rel + "' is missing (" + p + ")");
    NF_CHECK_ARG(!S_ISLNK(st.st_mode), "bundle: file '" + rel + "' is a symbolic link (bundle files must be regular files)");
    NF_CHECK_ARG(S_ISREG(st.st_mode), "bundle: file '" + rel + "' is not a regular file");
    const std::string real = real_path(p);
    NF_CHECK_ARG(!real.empty() && real.compare(0, dir_real.size() + 1, dir_real + "/") == 0,
                 "bundle: file '" + rel + "' resolves outside the bundle (" + real + ")");
    return std::uint64_t(st.st_size);
}

// A listed file's regular-file checks and its size against the manifest, before any of it is read or hashed
// (a 2 GB file listed as 1 byte is refused at once). note ends the size message.
void check_listed_file(const std::string& dir_real, const FileEntry& f, const std::string& p, const std::string& note) {
    const std::uint64_t size = check_regular_file(dir_real, f.path, p);
    NF_CHECK_ARG(size == f.bytes, "bundle: file '" + f.path + "' has " + std::to_string(size) + " bytes (expected " +
                                      std::to_string(f.bytes) + ")" + note);
}

}  // namespace

void verify_listed_files(const std::string& dir, const std::vector<FileEntry>& files) {
    const std::string dir_real = real_path(dir);
    NF_CHECK_ARG(!dir_real.empty(), "bundle: directory '" + dir + "' cannot be resolved");
    for (const auto& f : files) {
        const std::string p = dir + "/" + f.path;
        check_listed_file(dir_real, f, p, "");
        std::uint64_t n = 0;
        const std::string got = sha256_file_hex(p, &n);
        NF_CHECK_ARG(n == f.bytes, "bundle: file '" + f.path + "' has " + std::to_string(n) + " bytes (expected " +
                                       std::to_string(f.bytes) + ")");
        NF_CHECK_ARG(got == f.sha256, "bundle: file '" + f.path + "' sha256 mismatch (got " + got + ", expected " +
                                          f.sha256 + ")");
    }
}

void Bundle::verify_files() const { verify_listed_files(dir, files); }

std::vector<char> read_listed_file(const std::string& dir, const std::vector<FileEntry>& files, const std::string& relative) {
    const auto it = std::find_if(files.begin(), files.end(), [&](const FileEntry& f) { return f.path == relative; });
    NF_CHECK_ARG(it != files.end(), "bundle: file '" + relative + "' is not listed in files");
    const std::string dir_real = real_path(dir);
    NF_CHECK_ARG(!dir_real.empty(), "bundle: directory '" + dir + "' cannot be resolved");
    const std::string p = dir + "/" + relative;
    check_listed_file(dir_real, *it, p, "; it changed after the bundle was opened");
    std::vector<char> data(std::size_t(it->bytes));
    std::ifstream in(p, std::ios::binary);
    NF_CHECK_ARG(in.good(), "bundle: file '" + relative + "' cannot be read");
    constexpr std::size_t kChunk = std::size_t(1) << 20;
    for (std::size_t at = 0; at < data.size(); at += kChunk) {
        check_interrupt();
        in.read(data.data() + at, std::streamsize(std::min(kChunk, data.size() - at)));
        NF_CHECK_ARG(in.good(), "bundle: file '" + relative + "' is shorter than listed");
    }
    const std::string got = sha256_hex(data.data(), data.size());
    NF_CHECK_ARG(got == it->sha256, "bundle: file '" + relative + "' sha256 mismatch (got " + got + ", expected " +
                                        it->sha256 + "); it changed after the bundle was opened");
    return data;
}

std::vector<char> Bundle::read_verified(const std::string& relative) const { return read_listed_file(dir, files, relative); }

std::string read_manifest_text(const std::string& dir, std::int64_t max_bytes) {
    const std::string manifest_path = dir + "/manifest.json";
    struct stat st{};
    NF_CHECK_ARG(::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode), "bundle: '" + dir + "' is not a directory");
    NF_CHECK_ARG(::lstat(manifest_path.c_str(), &st) == 0, "bundle: no manifest.json in '" + dir + "'");
    NF_CHECK_ARG(S_ISREG(st.st_mode), "bundle: manifest.json in '" + dir + "' is not a regular file");
    NF_CHECK_ARG(st.st_size <= max_bytes, "bundle: manifest.json is " + std::to_string(st.st_size) +
                                              " bytes (at most " + std::to_string(max_bytes) + ")");
    std::ifstream in(manifest_path, std::ios::binary);
    NF_CHECK_ARG(in.good(), "bundle: no manifest.json in '" + dir + "'");
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

std::vector<FileEntry> parse_file_entries(const Json& files) {
    std::vector<FileEntry> out;
    NF_CHECK_ARG(files.is_object(), "bundle: manifest key 'files' must be an object");
    for (const auto& m : files.as_object()) {
        NF_CHECK_ARG(!path_escapes(m.first), "bundle: file path '" + m.first + "' escapes the bundle");
        NF_CHECK_ARG(m.second.is_object(), "bundle: manifest key 'files." + m.first + "' must be an object");
        const ManifestReader r(m.second, "files." + m.first);
        FileEntry e;
        e.path = m.first;
        e.sha256 = r.string("sha256");
        NF_CHECK_ARG(is_hex64(e.sha256), "bundle: files." + m.first + ".sha256 is not 64 lower-case hex digits");
        const std::int64_t n = r.integer("bytes");
        NF_CHECK_ARG(n >= 0, "bundle: files." + m.first + ".bytes is negative");
        e.bytes = std::uint64_t(n);
        out.push_back(std::move(e));
    }
    return out;
}

Bundle Bundle::open(const std::string& dir) {
    Bundle b = parse(read_manifest_text(dir, kMaxManifestBytes), dir);
    b.verify_files();
    return b;
}

}  // namespace nf
