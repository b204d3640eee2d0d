// Model resolution -> native resolution: the C++ twin of nextframe.models.native_decoder.DetailTransferDecoder
// (see there for why it exists; measured there: a plain bilinear upsample of real Breakout frames scores
// 23 dB, the detail transfer 37 dB).
//
//   up      = bilinear(lowres)                       (as torch F.interpolate(mode="bilinear", align_corners=False))
//   agree   = max over channels |up - bilinear(ref_lowres)| < agree_threshold
//   native  = round(up + agree * (ref_native - bilinear(ref_lowres)))   clamped to 0..255
//
// so static content (walls, bricks, score) keeps the reference frame's sharp detail and changed content
// comes from the prediction alone. Buffers are sized at construction and decode() allocates nothing; it
// reuses scratch buffers, so calls on one decoder must not overlap (the Python binding holds a lock).
#pragma once

#include <cstdint>
#include <vector>

namespace nf {

struct Bundle;

class DetailTransferDecoder {
public:
    DetailTransferDecoder(std::int64_t channels, std::int64_t height, std::int64_t width, std::int64_t native_height,
                          std::int64_t native_width, float agree_threshold);
    // The bundle's frame sizes and native_decoder section; InvalidArgument when the manifest has none.
    static DetailTransferDecoder from_bundle(const Bundle& bundle);

    // The reference pair: one real frame at native resolution (uint8 HWC) and at model resolution (uint8 CHW,
    // e.g. the last real context frame as the model saw it).
    void set_reference(const std::uint8_t* native_hwc, const std::uint8_t* lowres_chw);
    bool has_reference() const { return has_reference_; }

    // lowres uint8 CHW -> native uint8 HWC.
    void decode(const std::uint8_t* lowres_chw, std::uint8_t* native_hwc);
    // A frame as the runtime produces it (float CHW in [-1, 1]) -> native uint8 HWC. It is quantised to uint8
    // first, exactly as Session.step does, so decode_model_frame(step_raw(a)) == decode(step(a)).
    void decode_model_frame(const float* frame_chw, std::uint8_t* native_hwc);

    std::int64_t channels() const { return c_; }
    std::int64_t height() const { return h_; }
    std::int64_t width() const { return w_; }
    std::int64_t native_height() const { return nh_; }
    std::int64_t native_width() const { return nw_; }
    float agree_threshold() const { return threshold_; }

private:
    struct Taps {  // one output coordinate: two source indices and their weights
        std::int64_t i0, i1;
        float w0, w1;
    };
    static std::vector<Taps> taps(std::int64_t in, std::int64_t out);
    void upsample(const std::uint8_t* lowres_chw, float* out_chw) const;

    std::int64_t c_, h_, w_, nh_, nw_;
    float threshold_;
    std::vector<Taps> rows_, cols_;
    std::vector<float> ref_up_, detail_;  // CHW at native resolution
    std::vector<float> up_;  // scratch
    std::vector<std::uint8_t> quantised_;
    bool has_reference_ = false;
};

}  // namespace nf
