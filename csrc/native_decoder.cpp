#include "native_decoder.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "bundle.h"
#include "common.h"

namespace nf {

DetailTransferDecoder::DetailTransferDecoder(std::int64_t channels, std::int64_t height, std::int64_t width,
                                             std::int64_t native_height, std::int64_t native_width, float agree_threshold)
    : c_(channels), h_(height), w_(width), nh_(native_height), nw_(native_width), threshold_(agree_threshold) {
    NF_CHECK_ARG(c_ > 0 && h_ > 0 && w_ > 0 && nh_ > 0 && nw_ > 0,
                 "native_decoder: sizes must be positive (got " + std::to_string(c_) + "x" + std::to_string(h_) + "x" +
                     std::to_string(w_) + " -> " + std::to_string(nh_) + "x" + std::to_string(nw_) + ")");
    NF_CHECK_ARG(std::isfinite(threshold_) && threshold_ > 0.0f,
                 "native_decoder: agree_threshold " + std::to_string(threshold_) + " (expected > 0)");
    rows_ = taps(h_, nh_);
    cols_ = taps(w_, nw_);
    const auto n = std::size_t(c_ * nh_ * nw_);
    ref_up_.assign(n, 0.0f);
    detail_.assign(n, 0.0f);
    up_.assign(n, 0.0f);
    quantised_.assign(std::size_t(c_ * h_ * w_), 0);
}

DetailTransferDecoder DetailTransferDecoder::from_bundle(const Bundle& b) {
    NF_CHECK_ARG(b.native_decoder.kind == "detail_transfer",
                 "native_decoder: bundle has no native_decoder section (decode at model resolution instead)");
    return DetailTransferDecoder(b.frame.channels, b.frame.height, b.frame.width, b.frame.native_height,
                                 b.frame.native_width, float(b.native_decoder.agree_threshold));
}

// torch's upsample_bilinear2d (align_corners=False, no scale given) in its CPU kernel's float arithmetic:
// src = max(in/out * (dst + 0.5) - 0.5, 0), i0 = floor(src), i1 = i0 + 1 unless at the edge, w1 = src - i0.
std::vector<DetailTransferDecoder::Taps> DetailTransferDecoder::taps(std::int64_t in, std::int64_t out) {
    std::vector<Taps> t(static_cast<std::size_t>(out));
    const float ratio = float(in) / float(out);
    for (std::int64_t o = 0; o < out; ++o) {
        Taps& k = t[std::size_t(o)];
        if (in == out) {
            k = {o, o, 1.0f, 0.0f};
            continue;
        }
        float src = ratio * (float(o) + 0.5f) - 0.5f;
        if (src < 0.0f) src = 0.0f;
        k.i0 = std::min(std::int64_t(std::floor(src)), in - 1);
        k.i1 = k.i0 + (k.i0 < in - 1 ? 1 : 0);
        k.w1 = std::min(std::max(src - float(k.i0), 0.0f), 1.0f);
        k.w0 = 1.0f - k.w1;
    }
    return t;
}

void DetailTransferDecoder::upsample(const std::uint8_t* lowres, float* out) const {
    for (std::int64_t c = 0; c < c_; ++c) {
        const std::uint8_t* src = lowres + c * h_ * w_;
        float* dst = out + c * nh_ * nw_;
        for (std::int64_t y = 0; y < nh_; ++y) {
            const Taps& r = rows_[std::size_t(y)];
            const std::uint8_t* s0 = src + r.i0 * w_;
            const std::uint8_t* s1 = src + r.i1 * w_;
            for (std::int64_t x = 0; x < nw_; ++x) {
                const Taps& k = cols_[std::size_t(x)];
                // same association as torch: rows first within each source row, then across rows
                float t0 = float(s0[k.i0]) * k.w0;
                t0 += float(s0[k.i1]) * k.w1;
                float t1 = float(s1[k.i0]) * k.w0;
                t1 += float(s1[k.i1]) * k.w1;
                float v = t0 * r.w0;
                v += t1 * r.w1;
                dst[y * nw_ + x] = v;
            }
        }
    }
}

void DetailTransferDecoder::set_reference(const std::uint8_t* native_hwc, const std::uint8_t* lowres_chw) {
    upsample(lowres_chw, ref_up_.data());
    const std::int64_t plane = nh_ * nw_;
    for (std::int64_t c = 0; c < c_; ++c)
        for (std::int64_t i = 0; i < plane; ++i)
            detail_[std::size_t(c * plane + i)] = float(native_hwc[i * c_ + c]) - ref_up_[std::size_t(c * plane + i)];
    has_reference_ = true;
}

void DetailTransferDecoder::decode(const std::uint8_t* lowres_chw, std::uint8_t* native_hwc) {
    NF_CHECK_ARG(has_reference_, "native_decoder: no reference frame set (call set_reference first)");
    upsample(lowres_chw, up_.data());
    const std::int64_t plane = nh_ * nw_;
    for (std::int64_t i = 0; i < plane; ++i) {
        float diff = 0.0f;
        for (std::int64_t c = 0; c < c_; ++c) {
            const auto j = std::size_t(c * plane + i);
            diff = std::max(diff, std::fabs(up_[j] - ref_up_[j]));
        }
        const float agree = diff < threshold_ ? 1.0f : 0.0f;
        for (std::int64_t c = 0; c < c_; ++c) {
            const auto j = std::size_t(c * plane + i);
            const float v = std::nearbyint(up_[j] + agree * detail_[j]);  // half to even, as torch.round
            native_hwc[i * c_ + c] = std::uint8_t(v >= 0.0f ? std::min(v, 255.0f) : 0.0f);
        }
    }
}

void DetailTransferDecoder::decode_model_frame(const float* frame_chw, std::uint8_t* native_hwc) {
    for (std::size_t i = 0; i < quantised_.size(); ++i) {
        const float v = std::nearbyint((frame_chw[i] + 1.0f) * 127.5f);
        quantised_[i] = std::uint8_t(v >= 0.0f ? std::min(v, 255.0f) : 0.0f);  // NaN -> 0, never UB
    }
    decode(quantised_.data(), native_hwc);
}

}  // namespace nf
