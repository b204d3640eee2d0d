#include "utf8.h"

namespace nf {

namespace {

// Length of the well-formed sequence starting at b[i], or 0 when it is malformed (Unicode 15, table 3-7).
std::size_t sequence_length(const unsigned char* b, std::size_t i, std::size_t n) {
    const unsigned c = b[i];
    if (c < 0x80) return 1;
    std::size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (i + len > n || b[i + 1] < lo || b[i + 1] > hi) return 0;
    for (std::size_t k = 2; k < len; ++k) {
        if (b[i + k] < 0x80 || b[i + k] > 0xBF) return 0;
    }
    return len;
}

}  // namespace

std::size_t first_invalid_utf8(std::string_view s) {
    const auto* b = reinterpret_cast<const unsigned char*>(s.data());
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t len = sequence_length(b, i, s.size());
        if (len == 0) return i;
        i += len;
    }
    return s.size();
}

std::string to_valid_utf8(std::string_view s) {
    const auto* b = reinterpret_cast<const unsigned char*>(s.data());
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t len = sequence_length(b, i, s.size());
        if (len == 0) {
            out.push_back('?');
            ++i;
        } else {
            out.append(s.substr(i, len));
            i += len;
        }
    }
    return out;
}

}  // namespace nf
