// text_sanitize.h - bytes from the wire made safe for text and jsonb columns.
//
// Request targets, Host headers and tracestate come from untrusted peers: any
// byte may appear. A UTF-8 database rejects (or, through unchecked paths,
// stores) invalid sequences, and a jsonb cast fails the whole batch on one bad
// string; so every such string goes through here first.
#pragma once

#include <cstddef>

namespace ebpfc {

// Copies in[0..len) to out as valid UTF-8 without NUL, control characters
// (C0, DEL, C1) or bidirectional overrides: each invalid byte becomes
// U+FFFD, each such character '?'. Writes at most cap - 1 bytes and a NUL
// (never splitting a character); returns the length written.
size_t sanitize_utf8(const char* in, size_t len, char* out, size_t cap);

// Appends `s` (already sanitized) to out as a JSON string literal, quotes
// included. Returns the length written, or 0 if it does not fit in cap bytes
// (out is then unchanged past its first byte).
size_t json_string(const char* s, size_t len, char* out, size_t cap);

}  // namespace ebpfc
