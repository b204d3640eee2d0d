// DeviceLoop: the next-frame loop kept on the AOTInductor package's device (CUDA, or the CPU where it is tested),
// through the plugin's device loop (csrc/aoti_plugin.cpp, nf_aoti_loop_*). The frame being denoised, the past frames
// the graphs read, a transformer's K/V ring and every graph input live in device tensors bound once; the ring is
// written by slot on the device with the kv package's output; per frame the host sends one frame of noise, the
// action and a few integers (context actions, cache ages, the slot) and gets the frame back only when it asks; on
// CUDA the steady-state step is one CUDA graph replay. Frames equal FrameLoop's on the same packages and seed (same
// arithmetic order, same SeededNoise stream; tests/test_device_loop.py).
//
// What it serves: the frame-stack U-Net (context_frames, context_actions) and the K/V-cache transformer
// (context_frame / context_action by frame back, cache_k, cache_v, cache_ages; its kv graph packaged too), at the
// manifest's schedule, with AOTInductor packages of the graphs for the device. DiSA schedules, step groups,
// speculation and fed noise are FrameLoop's; the constructor says so in one line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bundle.h"
#include "noise.h"

namespace nf {

struct DeviceLoopParams {
    std::string device = "cuda";  // "cuda" or "cpu"
    std::int64_t device_id = 0;
    std::int64_t threads = 2;     // ATen intra-op threads on the CPU
    std::uint64_t seed = 0;
    bool cuda_graph = true;       // capture the steady-state step as a CUDA graph (CUDA builds of the plugin)
};

class DeviceLoop {
public:
    DeviceLoop(const Bundle& bundle, const DeviceLoopParams& params);
    ~DeviceLoop();
    DeviceLoop(const DeviceLoop&) = delete;
    DeviceLoop& operator=(const DeviceLoop&) = delete;

    // frames [n, C, H, W] in [-1, 1]; actions [n] in 0..no_action (the action that led to each frame).
    void reset(const float* frames, std::int64_t n_frames, const std::int64_t* actions);
    // The next frame for action (0..n_actions-1), kept on the device; copied into out [C, H, W] unless out is null.
    void step(std::int64_t action, float* out);
    // The last generated frame into out [C, H, W].
    void frame(float* out);

    std::int64_t frame_numel() const { return numel_; }
    std::int64_t n_actions() const { return n_actions_; }
    std::int64_t no_action() const { return no_action_; }
    std::int64_t context_depth() const { return k_; }
    const std::string& device() const { return device_; }
    // True when the plugin captures the steady-state step as a CUDA graph (CUDA device, CUDA build, asked for).
    bool cuda_graph() const { return cuda_graph_; }
    // Steps served by replaying the captured graph.
    std::int64_t graph_replays() const;
    const std::string& package() const { return package_; }

private:
    void check(int rc, const char* what) const;

    std::string device_, package_;
    std::int64_t k_ = 0, numel_ = 0, n_actions_ = 0, no_action_ = 0;
    float context_noise_ = 0.0f;
    bool cuda_graph_ = false, has_context_ = false, has_frame_ = false;
    void* handle_ = nullptr;  // the plugin's package
    void* kv_handle_ = nullptr;  // the kv graph's package (K/V-cache bundles)
    void* loop_ = nullptr;    // the plugin's device loop
    SeededNoise noise_;
    std::vector<float> noise_buf_, ctx_noise_buf_;
    mutable char err_[1024] = {0};
};

}  // namespace nf
