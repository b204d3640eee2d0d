// UTF-8 well-formedness. Manifest text must be UTF-8 (RFC 8259), and every message that reaches Python must be
// too: a message quoting bytes of a corrupt file (an ONNX node name, a manifest key) would otherwise fail to
// decode and surface as a UnicodeDecodeError instead of the error it describes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace nf {

// Offset of the first byte that does not start a well-formed UTF-8 sequence (overlong forms, surrogates and code
// points above U+10FFFF count as malformed), or s.size() when s is valid.
std::size_t first_invalid_utf8(std::string_view s);

// s with each malformed byte replaced by '?'.
std::string to_valid_utf8(std::string_view s);

}  // namespace nf
