// Noise providers of the frame loop. Noise is injected, never re-derived: the loop draws standard normal
// values from a NoiseSource in a fixed order (per generated frame: the initial noise, then the context noise
// of its push; per context frame: its context noise), so a test can feed C++ and the PyTorch reference
// the same values and compare rollouts frame by frame.
#pragma once

#include <cstdint>
#include <vector>

namespace nf {

class NoiseSource {
public:
    virtual ~NoiseSource() = default;
    // Writes n standard normal values to out.
    virtual void fill(float* out, std::int64_t n) = 0;
    // Values fill() can still deliver; -1 = unbounded.
    virtual std::int64_t n_available() const = 0;
};

// xoshiro256** (state from splitmix64(seed)) and Box-Muller, one 64-bit draw per pair of normals. Fully
// specified here, so a seed gives the same sequence with any standard library (std::normal_distribution's
// algorithm is the library's choice), and 5x faster than mt19937_64 + std::normal_distribution: that pair
// cost ~0.5 ms of a 13 ms frame, most of the runtime's own overhead.
class SeededNoise final : public NoiseSource {
public:
    explicit SeededNoise(std::uint64_t seed);
    void fill(float* out, std::int64_t n) override;
    std::int64_t n_available() const override { return -1; }

private:
    std::uint64_t next();
    std::uint64_t s_[4];
    bool has_spare_ = false;  // the second value of the last pair, when n was odd
    float spare_ = 0.0f;
};

// Values supplied by the caller (feed), consumed in order. fill() beyond what was fed throws
// nf::InvalidArgument "noise: fed noise exhausted ...". feed() may allocate; fill() never does.
class FedNoise final : public NoiseSource {
public:
    void feed(const float* values, std::int64_t n);
    void clear();
    void fill(float* out, std::int64_t n) override;
    std::int64_t n_available() const override { return std::int64_t(queue_.size() - head_); }

private:
    std::vector<float> queue_;
    std::size_t head_ = 0;  // first unread value
};

}  // namespace nf
