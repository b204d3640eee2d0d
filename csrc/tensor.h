// DType, TensorSpec (name, dtype, shape as a manifest or a graph declares it) and HostTensor (owning,
// 64-byte aligned host buffer). HostTensors are allocated when a loop or engine is built and never
// resized: a new shape means a new tensor, so "nothing is allocated per frame" is checkable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <memory>
#include <type_traits>
#include <string>
#include <vector>

#include "common.h"

namespace nf {

enum class DType { F32, I64 };

inline std::size_t dtype_size(DType d) { return d == DType::F32 ? 4 : 8; }
inline const char* dtype_name(DType d) { return d == DType::F32 ? "float32" : "int64"; }

// Accepts the manifest spellings "float32" and "int64"; anything else is nf::InvalidArgument.
inline DType parse_dtype(const std::string& s) {
    if (s == "float32") return DType::F32;
    if (s == "int64") return DType::I64;
    throw InvalidArgument("tensor: dtype '" + s + "' not supported (expected float32, int64)");
}

using Shape = std::vector<std::int64_t>;

inline std::int64_t shape_numel(const Shape& s) {
    std::int64_t n = 1;
    for (const auto d : s) n *= d;
    return n;
}

// "[1,3,16,16]"
inline std::string shape_str(const Shape& s) {
    std::string out = "[";
    for (std::size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
    return out + "]";
}

struct TensorSpec {
    std::string name;
    DType dtype = DType::F32;
    Shape shape;
};

class HostTensor {
public:
    static constexpr std::size_t kAlignment = 64;

    HostTensor() = default;
    // Zero-filled. Every dim must be positive (nf::InvalidArgument otherwise).
    HostTensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
        for (const auto d : shape_)
            NF_CHECK_ARG(d > 0, "tensor: shape " + shape_str(shape_) + " has a non-positive dim");
        numel_ = shape_numel(shape_);
        const std::size_t n = nbytes();
        const std::size_t padded = (n + kAlignment - 1) / kAlignment * kAlignment;
        data_.reset(std::aligned_alloc(kAlignment, padded));
        NF_CHECK(data_ != nullptr, "tensor: out of memory allocating " + std::to_string(padded) + " bytes");
        n_allocated_.fetch_add(1, std::memory_order_relaxed);
        std::memset(data_.get(), 0, padded);
    }

    HostTensor(HostTensor&&) noexcept = default;
    HostTensor& operator=(HostTensor&&) noexcept = default;
    HostTensor(const HostTensor&) = delete;
    HostTensor& operator=(const HostTensor&) = delete;

    DType dtype() const { return dtype_; }
    const Shape& shape() const { return shape_; }
    std::int64_t numel() const { return numel_; }
    std::size_t nbytes() const { return std::size_t(numel_) * dtype_size(dtype_); }
    bool empty() const { return data_ == nullptr; }

    void* raw() { return data_.get(); }
    const void* raw() const { return data_.get(); }

    // Typed access; the dtype must match (nf::InvalidArgument otherwise).
    template <typename T>
    T* data() {
        check_type<T>();
        return static_cast<T*>(data_.get());
    }
    template <typename T>
    const T* data() const {
        check_type<T>();
        return static_cast<const T*>(data_.get());
    }

    // HostTensor allocations in this process so far (tests assert a frame loop adds none per frame).
    static std::int64_t n_allocated() { return n_allocated_.load(std::memory_order_relaxed); }

    void zero() {
        if (data_) std::memset(data_.get(), 0, nbytes());
    }

private:
    struct Free {
        void operator()(void* p) const { std::free(p); }
    };

    template <typename T>
    void check_type() const {
        constexpr DType want = std::is_same<T, float>::value ? DType::F32 : DType::I64;
        static_assert(std::is_same<T, float>::value || std::is_same<T, std::int64_t>::value,
                      "HostTensor holds float or int64_t");
        NF_CHECK_ARG(dtype_ == want, std::string("tensor: dtype is ") + dtype_name(dtype_) + " (expected " +
                                         dtype_name(want) + ")");
    }

    DType dtype_ = DType::F32;
    Shape shape_;
    std::int64_t numel_ = 0;
    std::unique_ptr<void, Free> data_;
    static inline std::atomic<std::int64_t> n_allocated_{0};
};

}  // namespace nf
