// A small valid manifest for C++ tests (no files are read: sha256 and bytes are placeholders), with
// every number a test may want to vary. Used by test_bundle.cpp and test_frame_loop.cpp.
#pragma once

#include <cstdio>
#include <string>

namespace nf_test {

struct TinyManifest {
    int channels = 3, height = 4, width = 4;
    int n_actions = 3;
    int n_layers = 2, n_heads = 2, window = 2, n_slots = 3, tokens_per_frame = 4, head_dim = 2;
    int n_steps = 2;
    double context_noise = 0.1;
    bool with_prev = true;
    bool x0 = false;  // sampler kind flow_euler_x0 with a "denoised" output (else flow_euler, "velocity")
    // a frame-stack graph declared by roles: x, t, action, ctx [1,K,C,H,W], ctx_actions [1,K], ctx_t; no cache
    bool frame_stack = false;
    int context = 3;
    int format_version = 1;
    std::string file = "step.onnx";

    std::string text() const {
        auto i = [](int v) { return std::to_string(v); };
        const std::string frame = "[1," + i(channels) + "," + i(height) + "," + i(width) + "]";
        const std::string cache = "[" + i(n_layers) + ",1," + i(n_heads) + "," + i(n_slots) + "," + i(tokens_per_frame) +
                                  "," + i(head_dim) + "]";
        const std::string kv = "[" + i(n_layers) + ",1," + i(n_heads) + "," + i(tokens_per_frame) + "," + i(head_dim) + "]";
        auto spec = [](const std::string& n, const std::string& d, const std::string& s) {
            return "{\"name\": \"" + n + "\", \"dtype\": \"" + d + "\", \"shape\": " + s + "}";
        };
        std::string times = "[";
        for (int k = 0; k <= n_steps; ++k) {
            char buf[32];
            std::snprintf(buf, sizeof buf, "%.17g", 1.0 - double(k) / n_steps);
            times += (k ? ", " : "") + std::string(buf);
        }
        times += "]";
        std::string actions = "[";
        for (int a = 0; a < n_actions; ++a) actions += (a ? ", \"A" : "\"A") + i(a) + "\"";
        actions += "]";
        std::string inputs = spec("x", "float32", frame) + ", " + spec("t", "float32", "[1]") + ", " +
                             spec("action", "int64", "[1]") + ", ";
        std::string outputs = spec(x0 ? "denoised" : "velocity", "float32", frame) + ", " + spec("k_new", "float32", kv) +
                              ", " + spec("v_new", "float32", kv);
        std::string kv_section = "\"kv_cache\": {\"n_layers\": " + i(n_layers) + ", \"n_heads\": " + i(n_heads) +
                                 ", \"n_slots\": " + i(n_slots) + ", \"window\": " + i(window) +
                                 ", \"tokens_per_frame\": " + i(tokens_per_frame) + ", \"head_dim\": " + i(head_dim) + "},\n";
        if (frame_stack) {
            auto role = [](std::string s, const std::string& r) { return s.substr(0, s.size() - 1) + ", \"role\": \"" + r + "\"}"; };
            const std::string stack = "[1," + i(context) + "," + i(channels) + "," + i(height) + "," + i(width) + "]";
            inputs += role(spec("ctx", "float32", stack), "context_frames") + ", " +
                      role(spec("ctx_actions", "int64", "[1," + i(context) + "]"), "context_actions") + ", " +
                      role(spec("ctx_t", "float32", "[1]"), "context_noise_level");
            outputs = role(spec(x0 ? "denoised" : "velocity", "float32", frame), "prediction");
            kv_section.clear();
        } else {
            if (with_prev) inputs += spec("prev", "float32", frame) + ", ";
            inputs += spec("cache_k", "float32", cache) + ", " + spec("cache_v", "float32", cache) + ", " +
                      spec("ages", "int64", "[" + i(n_slots) + "]");
        }
        char cn[32];
        std::snprintf(cn, sizeof cn, "%.17g", context_noise);
        return std::string("{\n") +
               "\"format\": \"nextframe.bundle\", \"format_version\": " + i(format_version) + ",\n" +
               "\"model\": {\"n_actions\": " + i(n_actions) + ", \"game\": \"Test\"},\n" +
               "\"actions\": " + actions + ", \"no_action\": " + i(n_actions) + ",\n" +
               "\"frame\": {\"channels\": " + i(channels) + ", \"height\": " + i(height) + ", \"width\": " + i(width) +
               ", \"value_range\": [-1.0, 1.0]},\n" +
               kv_section +
               "\"sampler\": {\"kind\": \"" + std::string(x0 ? "flow_euler_x0" : "flow_euler") + "\", \"n_steps\": " + i(n_steps) + ", \"shift\": 1.0, \"times\": " +
               times + ", \"context_noise\": " + cn + "},\n" +
               "\"graphs\": {\"step\": {\"file\": \"" + file + "\", \"opset\": 17, \"inputs\": [" + inputs +
               "], \"outputs\": [" + outputs + "]}},\n" +
               "\"files\": {\"" + file + "\": {\"sha256\": \"" + std::string(64, '0') + "\", \"bytes\": 0}}\n}";
    }
};

}  // namespace nf_test
