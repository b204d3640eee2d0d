// Noise providers of the frame loop. Noise is injected, never re-derived: the loop draws standard normal
// values from a NoiseSource in a fixed order (per generated frame: the initial noise, then the context noise
// of its push; per context frame: its context noise), so a test can feed C++ and the PyTorch reference
// the same values and compare rollouts frame by frame.
#pragma once

#include <cstdint>
#include <random>
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

// std::mt19937_64 seeded with seed, std::normal_distribution<float>(0, 1). The same seed gives the same
// sequence on every libstdc++ build (mt19937_64 is fully specified; the distribution is libstdc++'s).
class SeededNoise final : public NoiseSource {
public:
    explicit SeededNoise(std::uint64_t seed) : gen_(seed) {}
    void fill(float* out, std::int64_t n) override;
    std::int64_t n_available() const override { return -1; }

private:
    std::mt19937_64 gen_;
    std::normal_distribution<float> dist_{0.0f, 1.0f};
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
