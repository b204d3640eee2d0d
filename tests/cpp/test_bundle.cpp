// Pins bundle validation: a valid manifest parses into the expected sections, and each error class
// (format, format_version, an escaping file path, an unlisted graph file, step io inconsistent with
// kv_cache/frame, bad times) and each file check (missing, wrong size, wrong sha256) throws
// nf::InvalidArgument with its "bundle: ..." prefix. Files live in a mkdtemp dir removed at the end.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "bundle.h"
#include "common.h"
#include "nf_test.h"
#include "sha256.h"
#include "tiny_manifest.h"

using nf::Bundle;
using nf::InvalidArgument;

namespace {

std::string replace(std::string s, const std::string& from, const std::string& to) {
    const auto at = s.find(from);
    if (at != std::string::npos) s.replace(at, from.size(), to);
    return s;
}

void write_file(const std::string& path, const std::string& data) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    std::fwrite(data.data(), 1, data.size(), f);
    std::fclose(f);
}

}  // namespace

NF_TEST(bundle_parse_valid) {
    const Bundle b = Bundle::parse(nf_test::TinyManifest().text(), "/b");
    CHECK_EQ(b.n_actions, std::int64_t(3));
    CHECK_EQ(b.no_action, std::int64_t(3));
    CHECK(b.actions.size() == 3 && b.actions[2] == "A2");
    CHECK_EQ(b.kv_cache.n_slots, std::int64_t(3));
    CHECK_EQ(b.sampler.times.size(), std::size_t(3));
    CHECK(b.sampler.times[1] == 0.5);
    CHECK(b.step_graph_path() == "/b/step.onnx");
    CHECK(b.find_step_input("prev") != nullptr);
    CHECK(b.step.inputs.size() == 7);
    CHECK(!b.has_kv_graph());  // optional; its checks run through the core in tests/test_runtime_errors.py
    nf_test::TinyManifest no_prev;
    no_prev.with_prev = false;
    CHECK(Bundle::parse(no_prev.text(), "/b").find_step_input("prev") == nullptr);
}

NF_TEST(bundle_manifest_errors) {
    const std::string good = nf_test::TinyManifest().text();
    nf_test::TinyManifest v3;
    v3.format_version = 3;
    CHECK_THROWS(InvalidArgument, Bundle::parse(v3.text(), "/b"), "bundle: format_version 3 not supported (expected 1)");
    CHECK_THROWS(InvalidArgument, Bundle::parse(replace(good, "nextframe.bundle", "other"), "/b"),
                 "bundle: format 'other' not supported (expected nextframe.bundle)");
    CHECK_THROWS(InvalidArgument, Bundle::parse("{\"format\": ", "/b"), "bundle: manifest.json is not valid JSON (json: ");
    CHECK_THROWS(InvalidArgument, Bundle::parse(replace(good, "\"no_action\": 3", "\"no_action\": 0"), "/b"),
                 "bundle: no_action 0 (expected n_actions 3)");
    CHECK_THROWS(InvalidArgument, Bundle::parse(replace(good, "\"window\": 2", "\"window\": \"2\""), "/b"),
                 "bundle: manifest key 'kv_cache.window' must be an integer (got string)");
    CHECK_THROWS(InvalidArgument, Bundle::parse(replace(good, "\"head_dim\": 2", "\"head_dim_\": 2"), "/b"),
                 "bundle: manifest key 'kv_cache.head_dim' missing");
    CHECK_THROWS(InvalidArgument, Bundle::parse(replace(good, "\"window\": 2", "\"window\": 3"), "/b"),
                 "bundle: kv_cache.n_slots 3 must exceed window (expected >= 4)");
    CHECK_THROWS(InvalidArgument, Bundle::parse(replace(good, "\"n_steps\": 2", "\"n_steps\": 3"), "/b"),
                 "bundle: sampler.times has 3 entries (expected n_steps + 1 = 4)");
    CHECK_THROWS(InvalidArgument, Bundle::parse(replace(good, "flow_euler", "ddim"), "/b"),
                 "bundle: sampler kind 'ddim' not supported (expected flow_euler, flow_euler_x0)");
    nf_test::TinyManifest x0;
    x0.x0 = true;
    CHECK(Bundle::parse(x0.text(), "/b").sampler.kind == "flow_euler_x0");
    CHECK_THROWS(InvalidArgument, Bundle::parse(replace(x0.text(), "\"denoised\"", "\"velocity\""), "/b"),
                 "bundle: step graph output 'velocity' not known to the runtime (sampler kind flow_euler_x0)");
}

NF_TEST(bundle_path_errors) {
    nf_test::TinyManifest up;
    up.file = "../x";
    CHECK_THROWS(InvalidArgument, Bundle::parse(up.text(), "/b"), "bundle: file path '../x' escapes the bundle");
    nf_test::TinyManifest abs;
    abs.file = "/etc/passwd";
    CHECK_THROWS(InvalidArgument, Bundle::parse(abs.text(), "/b"), "bundle: file path '/etc/passwd' escapes the bundle");
    nf_test::TinyManifest inner;
    inner.file = "graphs/../../x";
    CHECK_THROWS(InvalidArgument, Bundle::parse(inner.text(), "/b"), "bundle: file path 'graphs/../../x' escapes the bundle");
    CHECK(!nf::path_escapes("graphs/step.onnx"));
    CHECK(!nf::path_escapes("a..b/c"));  // ".." only as a whole component
    const std::string good = nf_test::TinyManifest().text();
    CHECK_THROWS(InvalidArgument, Bundle::parse(replace(good, "\"file\": \"step.onnx\"", "\"file\": \"other.onnx\""), "/b"),
                 "bundle: graph file 'other.onnx' not listed in files");
}

NF_TEST(bundle_step_io_errors) {
    const std::string good = nf_test::TinyManifest().text();
    CHECK_THROWS(InvalidArgument, Bundle::parse(replace(good, "\"shape\": [3]}", "\"shape\": [4]}"), "/b"),
                 "bundle: step graph input 'ages' shape [4] does not match kv_cache.n_slots (expected [3])");
    CHECK_THROWS(InvalidArgument, Bundle::parse(replace(good, "\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [1,3,4,4]",
                                                          "\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [1,3,8,4]"), "/b"),
                 "bundle: step graph input 'x' shape [1,3,8,4] does not match frame (expected [1,3,4,4])");
    CHECK_THROWS(InvalidArgument, Bundle::parse(replace(good, "\"name\": \"action\", \"dtype\": \"int64\"",
                                                          "\"name\": \"action\", \"dtype\": \"float32\""), "/b"),
                 "bundle: step graph input 'action' dtype float32 (expected int64)");
    CHECK_THROWS(InvalidArgument, Bundle::parse(replace(good, "\"name\": \"k_new\"", "\"name\": \"k_next\""), "/b"),
                 "bundle: step graph output 'k_next' not known to the runtime");
    CHECK_THROWS(InvalidArgument, Bundle::parse(replace(good, "\"dtype\": \"int64\", \"shape\": [1]", "\"dtype\": \"int8\", \"shape\": [1]"), "/b"),
                 "bundle: manifest key 'graphs.step.inputs[2].dtype': tensor: dtype 'int8' not supported");
}

NF_TEST(bundle_file_checks) {
    char tmpl[] = "/tmp/nf_bundle_XXXXXX";
    const std::string dir = mkdtemp(tmpl);
    const std::string graph = "not really onnx";
    const std::string sha = nf::sha256_hex(graph.data(), graph.size());
    const std::string base = nf_test::TinyManifest().text();
    const std::string listed = replace(replace(base, std::string(64, '0'), sha), "\"bytes\": 0", "\"bytes\": 15");

    write_file(dir + "/manifest.json", listed);
    CHECK_THROWS(InvalidArgument, Bundle::open(dir), "bundle: file 'step.onnx' is missing");
    write_file(dir + "/step.onnx", graph);
    CHECK(Bundle::open(dir).step.file == "step.onnx");  // size and sha256 agree

    write_file(dir + "/step.onnx", "not really onnX");  // same size, other content
    CHECK_THROWS(InvalidArgument, Bundle::open(dir), "bundle: file 'step.onnx' sha256 mismatch (got ");
    write_file(dir + "/step.onnx", "short");
    CHECK_THROWS(InvalidArgument, Bundle::open(dir), "bundle: file 'step.onnx' has 5 bytes (expected 15)");

    std::remove((dir + "/manifest.json").c_str());
    CHECK_THROWS(InvalidArgument, Bundle::open(dir), "bundle: no manifest.json in '");
    std::remove((dir + "/step.onnx").c_str());
    rmdir(dir.c_str());
}
