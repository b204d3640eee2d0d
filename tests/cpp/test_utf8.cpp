// Pins UTF-8 well-formedness (Unicode table 3-7): valid text of every sequence length passes; stray
// continuation bytes, overlong forms, surrogates, code points above U+10FFFF and truncated sequences are found at
// their first byte and replaced by '?'; manifest text that is not UTF-8 is refused by the JSON parser.
#include <string>

#include "common.h"
#include "json.h"
#include "nf_test.h"
#include "utf8.h"

NF_TEST(utf8_valid_text) {
    const std::string ok = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";  // a, e-acute, euro sign, emoji, z
    CHECK_EQ(nf::first_invalid_utf8(ok), ok.size());
    CHECK(nf::to_valid_utf8(ok) == ok);
    CHECK_EQ(nf::first_invalid_utf8(""), std::size_t(0));
}

NF_TEST(utf8_malformed_sequences) {
    CHECK_EQ(nf::first_invalid_utf8("ab\x80"), std::size_t(2));             // stray continuation byte
    CHECK_EQ(nf::first_invalid_utf8("\xC0\xAF"), std::size_t(0));           // overlong '/'
    CHECK_EQ(nf::first_invalid_utf8("\xE0\x80\xAF"), std::size_t(0));       // overlong, 3 bytes
    CHECK_EQ(nf::first_invalid_utf8("x\xED\xA0\x80"), std::size_t(1));      // surrogate U+D800
    CHECK_EQ(nf::first_invalid_utf8("\xF4\x90\x80\x80"), std::size_t(0));   // above U+10FFFF
    CHECK_EQ(nf::first_invalid_utf8("ok\xE2\x82"), std::size_t(2));         // truncated
    CHECK(nf::to_valid_utf8("a\xFF" "b\xC3") == "a?b?");
}

NF_TEST(utf8_json_refuses_other_encodings) {
    CHECK_THROWS(nf::InvalidArgument, nf::Json::parse("{\"k\xE9y\": 1}"), "json: invalid UTF-8 at offset 3");
    CHECK(nf::Json::parse("{\"k\xC3\xA9y\": 1}").is_object());
}
