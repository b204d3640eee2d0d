#include "json.h"

#include <charconv>
#include <cmath>
#include <string_view>

#include "common.h"
#include "utf8.h"

namespace nf {

class JsonParser {
public:
    explicit JsonParser(const std::string& text) : s_(text) {}

    Json parse_document() {
        // JSON text is UTF-8 (RFC 8259); anything else is refused before it can reach a message or a string
        if (const std::size_t bad = first_invalid_utf8(s_); bad != s_.size()) fail_at("invalid UTF-8", bad);
        skip_ws();
        Json v = parse_value(0);
        skip_ws();
        if (i_ != s_.size()) fail("unexpected trailing characters");
        return v;
    }

private:
    const std::string& s_;
    std::size_t i_ = 0;

    [[noreturn]] void fail(const std::string& what) const { fail_at(what, i_); }
    [[noreturn]] void fail_at(const std::string& what, std::size_t offset) const {
        throw InvalidArgument("json: " + what + " at offset " + std::to_string(offset));
    }

    bool at_end() const { return i_ >= s_.size(); }
    char peek() const { return s_[i_]; }

    void skip_ws() {
        while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++i_;
    }

    void expect_literal(const char* lit) {
        const std::size_t start = i_;
        for (const char* p = lit; *p; ++p, ++i_) {
            if (at_end() || peek() != *p) fail_at("invalid literal", start);
        }
    }

    Json parse_value(int depth) {
        if (at_end()) fail("unexpected end of input");
        Json v;
        switch (peek()) {
            case '{': return parse_object(depth + 1);
            case '[': return parse_array(depth + 1);
            case '"':
                v.kind_ = Json::Kind::String;
                v.string_ = parse_string();
                return v;
            case 't':
                expect_literal("true");
                v.kind_ = Json::Kind::Bool;
                v.bool_ = true;
                return v;
            case 'f':
                expect_literal("false");
                v.kind_ = Json::Kind::Bool;
                return v;
            case 'n':
                expect_literal("null");
                return v;
            default:
                if (peek() == '-' || (peek() >= '0' && peek() <= '9')) return parse_number();
                fail(std::string("unexpected character '") + printable(peek()) + "'");
        }
    }

    static std::string printable(char c) {
        const unsigned char u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7f) return std::string(1, c);
        static const char* hex = "0123456789abcdef";
        return std::string("\\x") + hex[u >> 4] + hex[u & 15];
    }

    Json parse_object(int depth) {
        if (depth > Json::kMaxDepth) fail("nesting deeper than " + std::to_string(Json::kMaxDepth));
        ++i_;  // '{'
        Json v;
        v.kind_ = Json::Kind::Object;
        skip_ws();
        if (!at_end() && peek() == '}') {
            ++i_;
            return v;
        }
        for (;;) {
            skip_ws();
            if (at_end()) fail("unexpected end of input in object");
            if (peek() != '"') fail("expected a string key");
            const std::size_t key_offset = i_;
            std::string key = parse_string();
            if (v.find(key) != nullptr) fail_at("duplicate key '" + key + "'", key_offset);
            skip_ws();
            if (at_end() || peek() != ':') fail("expected ':'");
            ++i_;
            skip_ws();
            Json member = parse_value(depth);
            v.object_.emplace_back(std::move(key), std::move(member));
            skip_ws();
            if (at_end()) fail("unexpected end of input in object");
            if (peek() == ',') {
                ++i_;
                continue;
            }
            if (peek() == '}') {
                ++i_;
                return v;
            }
            fail("expected ',' or '}'");
        }
    }

    Json parse_array(int depth) {
        if (depth > Json::kMaxDepth) fail("nesting deeper than " + std::to_string(Json::kMaxDepth));
        ++i_;  // '['
        Json v;
        v.kind_ = Json::Kind::Array;
        skip_ws();
        if (!at_end() && peek() == ']') {
            ++i_;
            return v;
        }
        for (;;) {
            skip_ws();
            v.array_.push_back(parse_value(depth));
            skip_ws();
            if (at_end()) fail("unexpected end of input in array");
            if (peek() == ',') {
                ++i_;
                continue;
            }
            if (peek() == ']') {
                ++i_;
                return v;
            }
            fail("expected ',' or ']'");
        }
    }

    unsigned parse_hex4() {
        if (i_ + 4 > s_.size()) fail("truncated \\u escape");
        unsigned cp = 0;
        for (int k = 0; k < 4; ++k, ++i_) {
            const char c = peek();
            cp <<= 4;
            if (c >= '0' && c <= '9') cp |= unsigned(c - '0');
            else if (c >= 'a' && c <= 'f') cp |= unsigned(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') cp |= unsigned(c - 'A' + 10);
            else fail("invalid hex digit in \\u escape");
        }
        return cp;
    }

    static void append_utf8(std::string& out, unsigned cp) {
        if (cp < 0x80) {
            out += char(cp);
        } else if (cp < 0x800) {
            out += char(0xc0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            out += char(0xe0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3f));
            out += char(0x80 | (cp & 0x3f));
        } else {
            out += char(0xf0 | (cp >> 18));
            out += char(0x80 | ((cp >> 12) & 0x3f));
            out += char(0x80 | ((cp >> 6) & 0x3f));
            out += char(0x80 | (cp & 0x3f));
        }
    }

    std::string parse_string() {
        ++i_;  // opening quote
        std::string out;
        for (;;) {
            if (at_end()) fail("unterminated string");
            const char c = peek();
            if (c == '"') {
                ++i_;
                return out;
            }
            if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
            if (c != '\\') {
                out += c;
                ++i_;
                continue;
            }
            const std::size_t escape_offset = i_;
            ++i_;
            if (at_end()) fail("unterminated string");
            const char e = peek();
            ++i_;
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    unsigned cp = parse_hex4();
                    if (cp >= 0xd800 && cp <= 0xdbff) {
                        if (i_ + 2 > s_.size() || s_[i_] != '\\' || s_[i_ + 1] != 'u')
                            fail_at("unpaired surrogate in \\u escape", escape_offset);
                        i_ += 2;
                        const unsigned lo = parse_hex4();
                        if (lo < 0xdc00 || lo > 0xdfff) fail_at("unpaired surrogate in \\u escape", escape_offset);
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                        fail_at("unpaired surrogate in \\u escape", escape_offset);
                    }
                    append_utf8(out, cp);
                    break;
                }
                default:
                    fail_at(std::string("invalid escape '\\") + printable(e) + "'", escape_offset);
            }
        }
    }

    Json parse_number() {
        const std::size_t start = i_;
        if (peek() == '-') ++i_;
        if (at_end()) fail("truncated number");
        if (peek() == '0') {
            ++i_;
            if (!at_end() && peek() >= '0' && peek() <= '9') fail_at("leading zero in number", start);
        } else if (peek() >= '1' && peek() <= '9') {
            while (!at_end() && peek() >= '0' && peek() <= '9') ++i_;
        } else {
            fail("expected a digit");
        }
        bool integral = true;
        if (!at_end() && peek() == '.') {
            integral = false;
            ++i_;
            if (at_end() || !(peek() >= '0' && peek() <= '9')) fail("expected a digit after '.'");
            while (!at_end() && peek() >= '0' && peek() <= '9') ++i_;
        }
        if (!at_end() && (peek() == 'e' || peek() == 'E')) {
            integral = false;
            ++i_;
            if (!at_end() && (peek() == '+' || peek() == '-')) ++i_;
            if (at_end() || !(peek() >= '0' && peek() <= '9')) fail("expected a digit in exponent");
            while (!at_end() && peek() >= '0' && peek() <= '9') ++i_;
        }
        const char* first = s_.data() + start;
        const char* last = s_.data() + i_;
        Json v;
        v.kind_ = Json::Kind::Number;
        // from_chars is locale-independent and rounds correctly, so Python's repr of a float
        // round-trips to the same double.
        const auto r = std::from_chars(first, last, v.number_);
        if (r.ec == std::errc::result_out_of_range || (r.ec == std::errc() && !std::isfinite(v.number_)))
            fail_at("number out of range", start);
        if (r.ec != std::errc() || r.ptr != last) fail_at("invalid number", start);
        if (integral) {
            std::int64_t n = 0;
            const auto ri = std::from_chars(first, last, n);
            if (ri.ec == std::errc() && ri.ptr == last) {
                v.is_int_ = true;
                v.int_ = n;
            }
        }
        return v;
    }
};

Json Json::parse(const std::string& text) { return JsonParser(text).parse_document(); }

const char* Json::kind_name(Kind k) {
    switch (k) {
        case Kind::Null: return "null";
        case Kind::Bool: return "bool";
        case Kind::Number: return "number";
        case Kind::String: return "string";
        case Kind::Array: return "array";
        case Kind::Object: return "object";
    }
    return "?";
}

static void require_kind(const Json& j, Json::Kind want) {
    NF_CHECK_ARG(j.kind() == want, std::string("json: expected ") + Json::kind_name(want) + " (got " +
                                       Json::kind_name(j.kind()) + ")");
}

bool Json::as_bool() const {
    require_kind(*this, Kind::Bool);
    return bool_;
}

double Json::as_double() const {
    require_kind(*this, Kind::Number);
    return number_;
}

std::int64_t Json::as_int() const {
    require_kind(*this, Kind::Number);
    NF_CHECK_ARG(is_int_, "json: expected an integer (got a number with fraction or exponent)");
    return int_;
}

const std::string& Json::as_string() const {
    require_kind(*this, Kind::String);
    return string_;
}

const std::vector<Json>& Json::as_array() const {
    require_kind(*this, Kind::Array);
    return array_;
}

const Json::Members& Json::as_object() const {
    require_kind(*this, Kind::Object);
    return object_;
}

const Json* Json::find(const std::string& key) const {
    require_kind(*this, Kind::Object);
    for (const auto& m : object_) {
        if (m.first == key) return &m.second;
    }
    return nullptr;
}

const Json& Json::at(const std::string& key) const {
    const Json* j = find(key);
    NF_CHECK_ARG(j != nullptr, "json: missing key '" + key + "'");
    return *j;
}

}  // namespace nf
