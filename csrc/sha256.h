// SHA-256 (FIPS 180-4), streaming. Used to verify every file a bundle's manifest lists.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace nf {

class Sha256 {
public:
    Sha256();
    void update(const void* data, std::size_t n);
    // Finishes the digest; the object must not be updated afterwards (reset() starts over).
    std::array<std::uint8_t, 32> finish();
    void reset();

private:
    void compress(const std::uint8_t* block);
    std::array<std::uint32_t, 8> h_;
    std::array<std::uint8_t, 64> buf_;
    std::size_t n_buf_ = 0;
    std::uint64_t n_bytes_ = 0;
};

// Lower-case hex digest (64 characters).
std::string sha256_hex(const void* data, std::size_t n);
std::string to_hex(const std::array<std::uint8_t, 32>& digest);

// Streams the file in 1 MiB chunks; *n_bytes (if not null) receives its size.
// Throws nf::InvalidArgument "sha256: cannot open '<path>'" when it cannot be read.
std::string sha256_file_hex(const std::string& path, std::uint64_t* n_bytes = nullptr);

}  // namespace nf
