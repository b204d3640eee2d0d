// Pins the strict JSON parser: every value kind, string escapes (\uXXXX and a surrogate pair decoded to
// UTF-8), integers kept exact beside doubles that round-trip Python's repr, object order, and the
// "json: <what> at offset N" errors for each malformed input class (the offsets are counted by hand).
#include <string>

#include "common.h"
#include "json.h"
#include "nf_test.h"

using nf::Json;

NF_TEST(json_values) {
    const Json j = Json::parse(R"( {"a": 1, "b": [true, false, null], "c": "x", "d": -2.5e-3, "e": {}} )");
    CHECK(j.is_object());
    CHECK_EQ(j.as_object().size(), std::size_t(5));
    CHECK(j.as_object()[0].first == "a");  // document order kept
    CHECK(j.at("a").is_int());
    CHECK_EQ(j.at("a").as_int(), std::int64_t(1));
    CHECK(j.at("b").as_array()[0].as_bool());
    CHECK(!j.at("b").as_array()[1].as_bool());
    CHECK(j.at("b").as_array()[2].is_null());
    CHECK(j.at("c").as_string() == "x");
    CHECK(!j.at("d").is_int());
    CHECK(j.at("d").as_double() == -2.5e-3);
    CHECK(j.at("e").is_object() && j.at("e").as_object().empty());
    CHECK(j.find("zz") == nullptr);
}

NF_TEST(json_numbers) {
    CHECK(Json::parse("0.6666666666666666").as_double() == 2.0 / 3.0);  // Python repr round-trips
    CHECK(Json::parse("0.6666666666666667").as_double() == 1.0 - 1.0 / 3.0);
    CHECK(Json::parse("1E2").as_double() == 100.0);
    CHECK(!Json::parse("1E2").is_int());
    CHECK(Json::parse("-0").is_int());
    CHECK_EQ(Json::parse("9007199254740993").as_int(), std::int64_t(9007199254740993));  // beyond 2^53, exact
    CHECK(Json::parse("1e308").as_double() == 1e308);
    CHECK(!Json::parse("99999999999999999999").is_int());  // too big for int64: a double only
}

NF_TEST(json_strings) {
    CHECK(Json::parse(R"("a\"b\\c\/d\b\f\n\r\t")").as_string() == "a\"b\\c/d\b\f\n\r\t");
    CHECK(Json::parse(R"("\u00e9")").as_string() == "\xc3\xa9");            // é
    CHECK(Json::parse(R"("\u20AC")").as_string() == "\xe2\x82\xac");        // €
    CHECK(Json::parse(R"("\ud83d\ude00")").as_string() == "\xf0\x9f\x98\x80");  // U+1F600
    CHECK(Json::parse("\"caf\xc3\xa9\"").as_string() == "caf\xc3\xa9");      // raw UTF-8 passes through
}

NF_TEST(json_errors) {
    using nf::InvalidArgument;
    CHECK_THROWS(InvalidArgument, Json::parse(""), "json: unexpected end of input at offset 0");
    CHECK_THROWS(InvalidArgument, Json::parse("[1, 2,]"), "json: unexpected character ']' at offset 6");
    CHECK_THROWS(InvalidArgument, Json::parse("{\"a\": 1,}"), "json: expected a string key at offset 8");
    CHECK_THROWS(InvalidArgument, Json::parse("{\"a\" 1}"), "json: expected ':' at offset 5");
    CHECK_THROWS(InvalidArgument, Json::parse("{\"a\": 1, \"a\": 2}"), "json: duplicate key 'a' at offset 9");
    CHECK_THROWS(InvalidArgument, Json::parse("[1] x"), "json: unexpected trailing characters at offset 4");
    CHECK_THROWS(InvalidArgument, Json::parse("01"), "json: leading zero in number at offset 0");
    CHECK_THROWS(InvalidArgument, Json::parse("1."), "json: expected a digit after '.' at offset 2");
    CHECK_THROWS(InvalidArgument, Json::parse("-"), "json: truncated number at offset 1");
    CHECK_THROWS(InvalidArgument, Json::parse("1e"), "json: expected a digit in exponent at offset 2");
    CHECK_THROWS(InvalidArgument, Json::parse("1e999"), "json: number out of range at offset 0");
    CHECK_THROWS(InvalidArgument, Json::parse("NaN"), "json: unexpected character 'N' at offset 0");
    CHECK_THROWS(InvalidArgument, Json::parse("tru"), "json: invalid literal at offset 0");
    CHECK_THROWS(InvalidArgument, Json::parse("\"abc"), "json: unterminated string at offset 4");
    CHECK_THROWS(InvalidArgument, Json::parse("\"a\nb\""), "json: control character in string at offset 2");
    CHECK_THROWS(InvalidArgument, Json::parse(R"("\x")"), "json: invalid escape '\\x' at offset 1");
    CHECK_THROWS(InvalidArgument, Json::parse(R"("\u12G4")"), "json: invalid hex digit in \\u escape at offset 5");
    CHECK_THROWS(InvalidArgument, Json::parse(R"("\ud83d")"), "json: unpaired surrogate in \\u escape at offset 1");
    CHECK_THROWS(InvalidArgument, Json::parse("// c\n1"), "json: unexpected character '/' at offset 0");
    CHECK_THROWS(InvalidArgument, Json::parse(std::string(300, '[')), "json: nesting deeper than 256 at offset 256");
}

NF_TEST(json_access_errors) {
    using nf::InvalidArgument;
    const Json j = Json::parse(R"({"a": 1.5, "s": "x"})");
    CHECK_THROWS(InvalidArgument, j.at("b"), "json: missing key 'b'");
    CHECK_THROWS(InvalidArgument, j.at("a").as_int(), "json: expected an integer");
    CHECK_THROWS(InvalidArgument, j.at("s").as_double(), "json: expected number (got string)");
    CHECK_THROWS(InvalidArgument, j.at("a").at("x"), "json: expected object (got number)");
}
