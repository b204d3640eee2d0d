// The detail-transfer decoder: torch's bilinear taps worked out by hand, the reference frame returned
// exactly where nothing changed, changed pixels taken from the prediction alone, and its errors.
#include <cstdint>
#include <vector>

#include "common.h"
#include "native_decoder.h"
#include "nf_test.h"

NF_TEST(native_decoder_bilinear_matches_hand_worked_taps) {
    // 1 channel, 1x2 -> 1x4: torch gives [a, 0.75a + 0.25b, 0.25a + 0.75b, b] (align_corners=False, edge clamp)
    nf::DetailTransferDecoder d(1, 1, 2, 1, 4, 20.0f);
    const std::vector<std::uint8_t> ref_native = {0, 0, 0, 0}, ref_low = {0, 0};
    d.set_reference(ref_native.data(), ref_low.data());
    const std::vector<std::uint8_t> low = {100, 200};
    std::vector<std::uint8_t> out(4, 0);
    d.decode(low.data(), out.data());
    CHECK(out == (std::vector<std::uint8_t>{100, 125, 175, 200}));
}

NF_TEST(native_decoder_keeps_reference_detail_where_unchanged) {
    const std::int64_t c = 3, h = 4, w = 4, nh = 10, nw = 8;
    nf::DetailTransferDecoder d(c, h, w, nh, nw, 20.0f);
    std::vector<std::uint8_t> native(std::size_t(nh * nw * c)), low(std::size_t(c * h * w));
    for (std::size_t i = 0; i < native.size(); ++i) native[i] = std::uint8_t((i * 37) % 256);  // sharp detail
    for (std::size_t i = 0; i < low.size(); ++i) low[i] = std::uint8_t(60 + (i * 13) % 40);
    d.set_reference(native.data(), low.data());
    std::vector<std::uint8_t> out(native.size(), 0);
    d.decode(low.data(), out.data());
    CHECK(out == native);  // the prediction equals the reference: the reference comes back bit for bit

    // a bright object in the low-res top-left pixel: those native pixels differ by > threshold and take the
    // upsampled prediction (no reference detail), the far corner keeps the reference exactly
    std::vector<std::uint8_t> moved = low;
    for (std::int64_t ch = 0; ch < c; ++ch) moved[std::size_t(ch * h * w)] = 255;
    d.decode(moved.data(), out.data());
    for (std::int64_t ch = 0; ch < c; ++ch) CHECK_EQ(int(out[std::size_t(ch)]), 255);
    const std::size_t last = std::size_t((nh * nw - 1) * c);
    CHECK(out[last] == native[last] && out[last + 1] == native[last + 1] && out[last + 2] == native[last + 2]);
}

NF_TEST(native_decoder_quantises_model_frames_like_the_session) {
    nf::DetailTransferDecoder d(1, 1, 2, 1, 2, 20.0f);
    const std::vector<std::uint8_t> zeros = {0, 0};
    d.set_reference(zeros.data(), zeros.data());
    const std::vector<float> frame = {-1.0f, 1.0f};
    std::vector<std::uint8_t> out(2, 7);
    d.decode_model_frame(frame.data(), out.data());
    CHECK(out == (std::vector<std::uint8_t>{0, 255}));
}

NF_TEST(native_decoder_errors) {
    nf::DetailTransferDecoder d(3, 4, 4, 8, 8, 20.0f);
    std::vector<std::uint8_t> low(48, 0), out(192, 0);
    CHECK_THROWS(nf::InvalidArgument, d.decode(low.data(), out.data()), "native_decoder: no reference frame set");
    CHECK_THROWS(nf::InvalidArgument, nf::DetailTransferDecoder(3, 0, 4, 8, 8, 20.0f), "native_decoder: sizes must be positive");
    CHECK_THROWS(nf::InvalidArgument, nf::DetailTransferDecoder(3, 4, 4, 8, 8, 0.0f), "native_decoder: agree_threshold");
}
