// DeviceLoop: the next-frame loop of a frame-stack bundle kept on the AOTInductor package's device (CUDA, or the
// CPU where it is tested), through the plugin's device loop (csrc/aoti_plugin.cpp, nf_aoti_loop_*). The frame
// being denoised, the last K frames and every graph input live in device tensors bound once; per frame the host
// sends one frame of noise and the action and gets the frame back only when it asks; on CUDA the steady-state step
// is one CUDA graph replay. Frames equal FrameLoop's on the same package and seed (same arithmetic order, same
// SeededNoise stream; tests/test_device_loop.py).
//
// What it serves: bundles whose step graph reads the frame history as a stack (roles noisy_frame, noise_level,
// action, context_frames, context_actions, context_noise_level: the frame-stack U-Net), at the manifest's schedule,
// with an AOTInductor package of the step graph for the device. Anything else (a K/V cache, DiSA, speculation,
// fed noise) is FrameLoop's; the constructor says so in one line.
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
    void* loop_ = nullptr;    // the plugin's device loop
    SeededNoise noise_;
    std::vector<float> noise_buf_, ctx_noise_buf_;
    mutable char err_[1024] = {0};
};

}  // namespace nf
