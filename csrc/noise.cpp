#include "noise.h"

#include <cmath>
#include <cstring>
#include <string>

#include "common.h"

namespace nf {

namespace {

std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

std::uint64_t splitmix64(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

}  // namespace

SeededNoise::SeededNoise(std::uint64_t seed) {
    for (auto& s : s_) s = splitmix64(seed);
}

std::uint64_t SeededNoise::next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
}

void SeededNoise::fill(float* out, std::int64_t n) {
    std::int64_t i = 0;
    if (has_spare_ && n > 0) {
        out[i++] = spare_;
        has_spare_ = false;
    }
    constexpr float kTwoPi = 6.28318530717958647692f;
    for (; i < n; i += 2) {
        const std::uint64_t r = next();
        // two 24-bit uniforms: u1 in (0, 1] (log stays finite), u2 in [0, 1)
        const float u1 = float((r >> 40) + 1) * (1.0f / 16777216.0f);
        const float u2 = float((r >> 16) & 0xFFFFFFu) * (1.0f / 16777216.0f);
        const float radius = std::sqrt(-2.0f * std::log(u1));
        const float angle = kTwoPi * u2;
        out[i] = radius * std::cos(angle);
        const float second = radius * std::sin(angle);
        if (i + 1 < n) {
            out[i + 1] = second;
        } else {
            spare_ = second;
            has_spare_ = true;
        }
    }
}

void FedNoise::feed(const float* values, std::int64_t n) {
    NF_CHECK_ARG(n >= 0, "noise: cannot feed a negative count (got " + std::to_string(n) + ")");
    if (head_ > 0 && head_ >= queue_.size() / 2) {  // drop what was read before growing
        queue_.erase(queue_.begin(), queue_.begin() + std::ptrdiff_t(head_));
        head_ = 0;
    }
    queue_.insert(queue_.end(), values, values + n);
}

void FedNoise::clear() {
    queue_.clear();
    head_ = 0;
}

void FedNoise::fill(float* out, std::int64_t n) {
    NF_CHECK_ARG(n <= n_available(), "noise: fed noise exhausted (need " + std::to_string(n) + " values, " +
                                         std::to_string(n_available()) + " queued); call feed_noise first");
    std::memcpy(out, queue_.data() + head_, sizeof(float) * std::size_t(n));
    head_ += std::size_t(n);
}

}  // namespace nf
