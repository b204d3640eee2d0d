// TrtDeviceLoop: OrtDeviceLoop's twin on TensorRT (ort_device_loop.h says the design): the bundle's frame graph built
// into a TensorRT plan (`nextframe export --frame-graph --trt`, "graph": "frame" in the manifest's tensorrt section),
// the loop's state in two sets of device buffers, two execution contexts whose tensor addresses are set once (one
// reads set A and writes set B, the other the reverse), swapped per frame. A transformer's K/V ring stays on the device:
// after each run the frame engine's k_new / v_new go into the frame's slot (one strided copy each, on the stream),
// the slot ages are staged in pinned memory with the noise; reset() writes the context's K/V with the kv engine. Per frame: the noise and the action are
// staged in pinned memory and copied in, enqueueV3, the non-finite count copied back, all on one stream; after a
// context's first run that sequence is captured as a CUDA graph (one per context) and launched from then on. The frame
// comes back only when asked.
//
// Compiled only with TensorRT (NF_HAVE_TENSORRT); elsewhere the constructor says it was not built. Never run: no GPU
// where it was written (compile-checked against TensorRT 10.x / 11.1 headers by tools/check_trt_compile.sh).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "bundle.h"

namespace nf {

struct TrtDeviceLoopParams {
    std::int64_t device_id = 0;
    std::uint64_t seed = 0;
    bool cuda_graph = true;     // capture each context's run as a CUDA graph ($NEXTFRAME_TRT_CUDA_GRAPH=0: off)
    std::string precision;      // the frame engine's precision; empty: the first that fits this GPU and TensorRT
};

class TrtDeviceLoop {
public:
    TrtDeviceLoop(const Bundle& bundle, const TrtDeviceLoopParams& params);
    ~TrtDeviceLoop();
    TrtDeviceLoop(const TrtDeviceLoop&) = delete;
    TrtDeviceLoop& operator=(const TrtDeviceLoop&) = delete;

    // As OrtDeviceLoop's.
    void reset(const float* frames, std::int64_t n_frames, const std::int64_t* actions);
    void step(std::int64_t action, float* out);
    void frame(float* out);

    std::int64_t frame_numel() const;
    std::int64_t n_actions() const;
    std::int64_t no_action() const;
    std::int64_t context_depth() const;
    const std::string& device() const;
    bool cuda_graph() const;  // both contexts' runs captured
    std::int64_t steps() const;
    const std::string& engine_file() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace nf
