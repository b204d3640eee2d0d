#include "noise.h"

#include <cstring>
#include <string>

#include "common.h"

namespace nf {

void SeededNoise::fill(float* out, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) out[i] = dist_(gen_);
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
