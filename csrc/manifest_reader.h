// Typed, bounded access to an untrusted manifest (bundle.cpp, ar_bundle.cpp): every key read names itself in the
// error ("bundle: manifest key 'a.b' ..."), and sizes are bounded before any product is formed.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "common.h"
#include "json.h"

namespace nf {

// The product of sizes read from a manifest, refused (one line) when it overflows or exceeds limit: a bundle
// must not make the runtime allocate more than any real model needs, nor wrap a size around.
inline std::int64_t checked_product(std::initializer_list<std::int64_t> factors, std::int64_t limit, const char* what) {
    std::int64_t p = 1;
    for (std::int64_t f : factors) {
        NF_CHECK_ARG(!__builtin_mul_overflow(p, f, &p) && p <= limit,
                     std::string("bundle: ") + what + " exceeds " + std::to_string(limit) + " (a corrupt manifest?)");
    }
    return p;
}

// Typed access to manifest keys with "bundle: manifest key 'a.b' ..." messages.
class ManifestReader {
public:
    ManifestReader(const Json& j, std::string path) : j_(j), path_(std::move(path)) {}

    const Json& get(const std::string& key) const {
        const Json* v = j_.find(key);
        NF_CHECK_ARG(v != nullptr, "bundle: manifest key '" + name(key) + "' missing");
        return *v;
    }
    const Json* find(const std::string& key) const { return j_.find(key); }

    ManifestReader object(const std::string& key) const {
        const Json& v = get(key);
        expect(v.is_object(), key, "an object");
        return ManifestReader(v, name(key));
    }
    std::int64_t integer(const std::string& key) const {
        const Json& v = get(key);
        expect(v.is_int(), key, "an integer");
        return v.as_int();
    }
    std::int64_t positive(const std::string& key) const {
        const std::int64_t n = integer(key);
        NF_CHECK_ARG(n > 0, "bundle: manifest key '" + name(key) + "' must be positive (got " +
                                std::to_string(n) + ")");
        return n;
    }
    // a positive integer no larger than hi: sizes from an untrusted manifest are bounded before any product
    std::int64_t bounded(const std::string& key, std::int64_t hi) const {
        const std::int64_t n = positive(key);
        NF_CHECK_ARG(n <= hi, "bundle: manifest key '" + name(key) + "' is " + std::to_string(n) + " (at most " +
                                  std::to_string(hi) + ")");
        return n;
    }
    double number(const std::string& key) const {
        const Json& v = get(key);
        expect(v.is_number(), key, "a number");
        return v.as_double();
    }
    const std::string& string(const std::string& key) const {
        const Json& v = get(key);
        expect(v.is_string(), key, "a string");
        return v.as_string();
    }
    const std::vector<Json>& array(const std::string& key) const {
        const Json& v = get(key);
        expect(v.is_array(), key, "an array");
        return v.as_array();
    }
    std::string name(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

private:
    void expect(bool ok, const std::string& key, const char* what) const {
        NF_CHECK_ARG(ok, "bundle: manifest key '" + name(key) + "' must be " + what + " (got " +
                             Json::kind_name(get(key).kind()) + ")");
    }
    const Json& j_;
    std::string path_;
};

}  // namespace nf
