// A small strict JSON parser (RFC 8259): objects, arrays, strings with escapes (\uXXXX and surrogate
// pairs become UTF-8), numbers, true/false/null. Nothing else is accepted: no comments, no trailing
// commas, no NaN/Infinity, no leading zeros, no control characters inside strings, no trailing garbage.
// Parse errors throw nf::InvalidArgument "json: <what> at offset N" (N = byte offset into the text).
// Accessors on the wrong kind or a missing key throw nf::InvalidArgument "json: ..." too; callers that
// know the document's meaning (bundle.cpp) check kinds first and phrase their own messages.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace nf {

class Json {
public:
    enum class Kind { Null, Bool, Number, String, Array, Object };
    using Members = std::vector<std::pair<std::string, Json>>;  // object members in document order

    Json() = default;  // null

    // Parses the whole of text (leading/trailing whitespace allowed). Nesting deeper than kMaxDepth
    // levels is rejected so a hostile manifest cannot overflow the stack.
    static Json parse(const std::string& text);
    static constexpr int kMaxDepth = 256;

    Kind kind() const { return kind_; }
    bool is_null() const { return kind_ == Kind::Null; }
    bool is_bool() const { return kind_ == Kind::Bool; }
    bool is_number() const { return kind_ == Kind::Number; }
    // A number written without fraction or exponent that fits in int64.
    bool is_int() const { return kind_ == Kind::Number && is_int_; }
    bool is_string() const { return kind_ == Kind::String; }
    bool is_array() const { return kind_ == Kind::Array; }
    bool is_object() const { return kind_ == Kind::Object; }

    bool as_bool() const;
    double as_double() const;
    std::int64_t as_int() const;
    const std::string& as_string() const;
    const std::vector<Json>& as_array() const;
    const Members& as_object() const;

    // Object member by key; find() returns nullptr when absent, at() throws. Duplicate keys are a parse
    // error, so a key names at most one member.
    const Json* find(const std::string& key) const;
    const Json& at(const std::string& key) const;

    static const char* kind_name(Kind k);

private:
    friend class JsonParser;
    Kind kind_ = Kind::Null;
    bool bool_ = false;
    bool is_int_ = false;
    double number_ = 0.0;
    std::int64_t int_ = 0;
    std::string string_;
    std::vector<Json> array_;
    Members object_;
};

}  // namespace nf
