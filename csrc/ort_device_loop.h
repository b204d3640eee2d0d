// OrtDeviceLoop: the next-frame loop of a bundle kept in ONNX Runtime's device memory, through the bundle's frame graph
// (graphs.frame, export/frame_graph.py: the whole step, denoising to palette snap to the context moved on by one
// frame, in one graph).
//
// The loop's context state (a frame-stack bundle's last K frames and the actions that led to them; a transformer's
// frames and actions read by `back`) lives in two sets of device tensors bound once through two IoBindings: a run
// reads one set and writes the other, and the next run swaps them (no copy; each binding's addresses never change,
// which CUDA graphs need). A transformer's K/V ring is one pair of device tensors read by both bindings; the frame
// graph returns the finished frame's K/V into fixed buffers, which one strided device copy per tensor writes into the
// frame's slot (kv_cache.h's layout and slot rule; the slot ages go up with the noise). Per frame the host uploads
// one frame of noise (and of context noise, where the bundle noises its context), the action (and the ring's ages),
// and reads back one integer (the graph's count of non-finite values: a broken graph must not pass for a dark frame);
// the frame itself comes back only when asked. reset() writes the given frames' K/V into the ring with the bundle's
// kv graph (the step graph where there is none), bound on the device the same way.
// With the CUDA provider and cuda_graph, ONNX Runtime captures each binding's run as a CUDA graph (run options
// gpu_graph_id 1 and 2) and replays it. On the CPU provider the same code runs over host memory: what the tests check
// (frames equal FrameLoop's, same seed, to the graph kernels' rounding; tests/test_ort_device_loop.py).
//
// What it serves: bundles exported with a frame graph (`nextframe export --frame-graph`), at the manifest's schedule.
// Fed noise, speculation, DiSA and other step counts are FrameLoop's.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bundle.h"
#include "engine.h"
#include "noise.h"

namespace nf {

struct OrtDeviceLoopParams {
    std::string device = "cuda";  // "cuda" (ONNX Runtime's CUDA provider) or "cpu"
    std::int64_t device_id = 0;
    std::int64_t threads = 2;     // ONNX Runtime intra-op threads
    std::uint64_t seed = 0;
    bool cuda_graph = true;       // capture each binding's run as a CUDA graph (CUDA provider only)
    std::string ort_lib;          // as EngineParams::ort_lib
};

class OrtDeviceLoop {
public:
    OrtDeviceLoop(const Bundle& bundle, const OrtDeviceLoopParams& params);
    ~OrtDeviceLoop();
    OrtDeviceLoop(const OrtDeviceLoop&) = delete;
    OrtDeviceLoop& operator=(const OrtDeviceLoop&) = delete;

    // frames [n, C, H, W] in [-1, 1]; actions [n] in 0..no_action (the action that led to each frame).
    void reset(const float* frames, std::int64_t n_frames, const std::int64_t* actions);
    // The next frame for action (0..n_actions-1), kept on the device; copied into out [C, H, W] unless out is null.
    void step(std::int64_t action, float* out);
    // The last generated frame into out [C, H, W].
    void frame(float* out);

    std::int64_t frame_numel() const { return numel_; }
    std::int64_t n_actions() const { return n_actions_; }
    std::int64_t no_action() const { return no_action_; }
    std::int64_t context_depth() const { return depth_; }  // frames of context the graph reads
    const std::string& device() const { return device_; }
    bool cuda_graph() const { return cuda_graph_; }
    std::int64_t steps() const { return steps_; }  // frames generated since construction

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::string device_;
    std::int64_t depth_ = 0, numel_ = 0, n_actions_ = 0, no_action_ = 0, steps_ = 0;
    float context_noise_ = 0.0f;
    bool cuda_graph_ = false, has_context_ = false, has_frame_ = false;
    SeededNoise noise_;
    std::vector<float> noise_buf_, push_noise_buf_;
};

}  // namespace nf
