#include "ar_bundle.h"

#include <algorithm>
#include <cctype>

#include "common.h"
#include "manifest_reader.h"

namespace nf {

namespace {

std::string lower(std::string s) {
    for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// One graph's io: exactly the names, dtypes and shapes the runtime binds (-1: the dynamic batch dim).
std::vector<TensorSpec> parse_io(const ManifestReader& graph, const std::string& key, const std::vector<TensorSpec>& want,
                                 const std::string& graph_name) {
    const auto& items = graph.array(key);
    NF_CHECK_ARG(items.size() == want.size(), "bundle: " + graph_name + " graph lists " + std::to_string(items.size()) +
                                                  " " + key + " (expected " + std::to_string(want.size()) + ")");
    std::vector<TensorSpec> out;
    for (std::size_t i = 0; i < items.size(); ++i) {
        const std::string where = key + "[" + std::to_string(i) + "]";
        NF_CHECK_ARG(items[i].is_object(), "bundle: manifest key '" + graph.name(where) + "' must be an object");
        const ManifestReader r(items[i], graph.name(where));
        TensorSpec s;
        s.name = r.string("name");
        s.dtype = parse_dtype(r.string("dtype"));
        for (const auto& d : r.array("shape")) {
            NF_CHECK_ARG(d.is_int() && (d.as_int() > 0 || d.as_int() == -1),
                         "bundle: manifest key '" + r.name("shape") + "' must hold positive integers or -1");
            s.shape.push_back(d.as_int());
        }
        const TensorSpec& w = want[i];
        NF_CHECK_ARG(s.name == w.name && s.dtype == w.dtype && s.shape == w.shape,
                     "bundle: " + graph_name + " graph " + key + "[" + std::to_string(i) + "] is '" + s.name + "' " +
                         dtype_name(s.dtype) + shape_str(s.shape) + " (expected '" + w.name + "' " + dtype_name(w.dtype) +
                         shape_str(w.shape) + ")");
        out.push_back(std::move(s));
    }
    return out;
}

GraphInfo parse_graph(const ManifestReader& graphs, const std::string& name, const std::vector<TensorSpec>& inputs,
                      const std::vector<TensorSpec>& outputs, const std::vector<FileEntry>& files) {
    const ManifestReader g = graphs.object(name);
    GraphInfo info;
    info.file = g.string("file");
    NF_CHECK_ARG(!path_escapes(info.file), "bundle: " + name + " graph file '" + info.file + "' escapes the bundle");
    NF_CHECK_ARG(std::any_of(files.begin(), files.end(), [&](const FileEntry& f) { return f.path == info.file; }),
                 "bundle: " + name + " graph file '" + info.file + "' is not listed in files");
    info.inputs = parse_io(g, "inputs", inputs, name);
    info.outputs = parse_io(g, "outputs", outputs, name);
    return info;
}

TensorSpec spec(const char* name, DType dtype, Shape shape) { return TensorSpec{name, dtype, std::move(shape)}; }

}  // namespace

std::int64_t ArBundle::class_index(const std::string& name) const {
    std::string known;
    for (std::size_t i = 0; i < classes.size(); ++i) {
        if (lower(classes[i]) == lower(name)) return std::int64_t(i);
        known += (i ? ", " : "") + classes[i];
    }
    throw InvalidArgument("ar bundle: unknown class '" + name + "' (this model knows " + known + ")");
}

const HeadSchedule& ArBundle::schedule(const std::string& name) const {
    std::string known;
    for (const auto& s : schedules) {
        if (s.first == name) return s.second;
        known += (known.empty() ? "" : ", ") + s.first;
    }
    throw InvalidArgument("ar bundle: unknown schedule '" + name + "' (the bundle has " + known + ")");
}

ArBundle ArBundle::parse(const std::string& manifest_text, const std::string& dir) {
    ArBundle b;
    b.dir = dir;
    b.manifest = parse_manifest_json(manifest_text);
    const ManifestReader root(b.manifest, "");
    const std::string& format = root.string("format");
    NF_CHECK_ARG(format == "nextframe.ar_bundle",
                 "bundle: format '" + format + "' is not an AR image bundle (expected nextframe.ar_bundle)");
    const std::int64_t version = root.integer("format_version");
    NF_CHECK_ARG(version == kFormatVersion, "bundle: format_version " + std::to_string(version) + " not supported (expected " +
                                                std::to_string(kFormatVersion) + ")");

    const ManifestReader model = root.object("model");
    for (const auto& c : model.array("classes")) {
        NF_CHECK_ARG(c.is_string() && !c.as_string().empty(), "bundle: manifest key 'model.classes' must hold names");
        b.classes.push_back(c.as_string());
    }
    NF_CHECK_ARG(!b.classes.empty() && b.classes.size() <= 4096, "bundle: model.classes must list 1..4096 names");
    b.height = model.bounded("height", 4096);
    b.width = model.bounded("width", 4096);
    b.channels = model.bounded("channels", 4);
    b.patch = model.bounded("patch", 256);
    NF_CHECK_ARG(b.height % b.patch == 0 && b.width % b.patch == 0,
                 "bundle: model size " + std::to_string(b.height) + "x" + std::to_string(b.width) + " not divisible by patch " +
                     std::to_string(b.patch));
    b.n_tokens = model.bounded("n_tokens", 1 << 16);
    NF_CHECK_ARG(b.n_tokens == (b.height / b.patch) * (b.width / b.patch),
                 "bundle: model.n_tokens " + std::to_string(b.n_tokens) + " does not match the size and patch");
    b.token_dim = model.bounded("token_dim", 1 << 16);
    NF_CHECK_ARG(b.token_dim == b.channels * b.patch * b.patch, "bundle: model.token_dim does not match channels and patch");
    b.cond_dim = model.bounded("cond_dim", 1 << 16);
    b.token_mean = model.number("token_mean");
    b.token_std = model.number("token_std");
    NF_CHECK_ARG(b.token_std > 0.0, "bundle: model.token_std must be positive");

    const ManifestReader sampler = root.object("sampler");
    b.n_ar_steps = sampler.bounded("n_ar_steps", b.n_tokens);
    const Json& scheds = sampler.get("schedules");
    NF_CHECK_ARG(scheds.is_object() && !scheds.as_object().empty(), "bundle: manifest key 'sampler.schedules' must be a non-empty object");
    for (const auto& m : scheds.as_object()) {
        NF_CHECK_ARG(m.second.is_object(), "bundle: manifest key 'sampler.schedules." + m.first + "' must be an object");
        const ManifestReader r(m.second, "sampler.schedules." + m.first);
        HeadSchedule s;
        s.kind = r.string("kind");
        s.t_hi = r.integer("t_hi");
        s.t_lo = r.integer("t_lo");
        s.split = r.number("split");
        try {
            s.validate();
        } catch (const InvalidArgument& e) {
            throw InvalidArgument("bundle: schedule '" + m.first + "': " + e.what());
        }
        std::vector<std::int64_t> listed;
        for (const auto& v : r.array("steps")) {
            NF_CHECK_ARG(v.is_int(), "bundle: manifest key 'sampler.schedules." + m.first + ".steps' must hold integers");
            listed.push_back(v.as_int());
        }
        NF_CHECK_ARG(listed == s.steps(b.n_ar_steps), "bundle: schedule '" + m.first +
                                                          "' lists steps its kind and parameters do not give (stale manifest?)");
        b.schedules.emplace_back(m.first, s);
    }
    b.default_schedule = sampler.string("default_schedule");
    b.schedule(b.default_schedule);  // must name one of them

    b.files = parse_file_entries(root.get("files"));
    const ManifestReader graphs = root.object("graphs");
    const std::int64_t L = b.n_tokens, D = b.token_dim, C = b.cond_dim;
    b.backbone = parse_graph(graphs, "backbone",
                             {spec("tokens", DType::F32, {-1, L, D}), spec("unknown", DType::F32, {-1, L}), spec("label", DType::I64, {-1})},
                             {spec("z", DType::F32, {-1, L, C})}, b.files);
    b.head = parse_graph(graphs, "head", {spec("x", DType::F32, {-1, D}), spec("t", DType::F32, {-1}), spec("z", DType::F32, {-1, C})},
                         {spec("velocity", DType::F32, {-1, D})}, b.files);
    if (graphs.find("dd") != nullptr) {
        b.dd = parse_graph(graphs, "dd",
                           {spec("state", DType::F32, {-1, L, D}), spec("unknown", DType::F32, {-1, L}), spec("label", DType::I64, {-1})},
                           {spec("tokens", DType::F32, {-1, L, D})}, b.files);
        const ManifestReader dd = root.object("distilled_decoding");
        std::vector<bool> seen(std::size_t(L), false);
        for (const auto& v : dd.array("order")) {
            NF_CHECK_ARG(v.is_int() && v.as_int() >= 0 && v.as_int() < L && !seen[std::size_t(v.as_int())],
                         "bundle: distilled_decoding.order must be a permutation of 0.." + std::to_string(L - 1));
            seen[std::size_t(v.as_int())] = true;
            b.dd_order.push_back(v.as_int());
        }
        NF_CHECK_ARG(std::int64_t(b.dd_order.size()) == L, "bundle: distilled_decoding.order must list all " + std::to_string(L) + " tokens");
        b.dd_two_step_revealed = dd.integer("two_step_revealed");
        NF_CHECK_ARG(b.dd_two_step_revealed >= 1 && b.dd_two_step_revealed < L,
                     "bundle: distilled_decoding.two_step_revealed must be in 1.." + std::to_string(L - 1));
    }
    return b;
}

ArBundle ArBundle::open(const std::string& dir) {
    ArBundle b = parse(read_manifest_text(dir, Bundle::kMaxManifestBytes), dir);
    verify_listed_files(b.dir, b.files);
    return b;
}

}  // namespace nf
