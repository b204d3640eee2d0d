// Pins SHA-256 against the FIPS 180-4 / NIST example vectors ("abc", "", the 448-bit two-block message,
// one million 'a'), streaming in odd chunk sizes giving the one-shot digest, and the file helper's size
// and error message.
#include <cstdio>
#include <string>

#include "common.h"
#include "nf_test.h"
#include "sha256.h"

NF_TEST(sha256_standard_vectors) {
    CHECK(nf::sha256_hex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(nf::sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    CHECK(nf::sha256_hex(two_blocks.data(), two_blocks.size()) ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const std::string million(1000000, 'a');
    CHECK(nf::sha256_hex(million.data(), million.size()) ==
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

NF_TEST(sha256_streaming_equals_one_shot) {
    std::string msg;
    for (int i = 0; i < 1000; ++i) msg += char('a' + i % 26);
    for (std::size_t chunk : {1u, 3u, 55u, 56u, 63u, 64u, 65u, 200u}) {
        nf::Sha256 h;
        for (std::size_t off = 0; off < msg.size(); off += chunk)
            h.update(msg.data() + off, std::min(chunk, msg.size() - off));
        CHECK(nf::to_hex(h.finish()) == nf::sha256_hex(msg.data(), msg.size()));
    }
}

NF_TEST(sha256_file) {
    char path[] = "/tmp/nf_sha256_XXXXXX";
    const int fd = mkstemp(path);
    CHECK(fd >= 0);
    std::FILE* f = fdopen(fd, "wb");
    std::fwrite("abc", 1, 3, f);
    std::fclose(f);
    std::uint64_t n = 0;
    CHECK(nf::sha256_file_hex(path, &n) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK_EQ(n, std::uint64_t(3));
    std::remove(path);
    CHECK_THROWS(nf::InvalidArgument, nf::sha256_file_hex(path), "sha256: cannot open '/tmp/nf_sha256_");
}
