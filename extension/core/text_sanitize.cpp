#include "core/text_sanitize.h"

#include <cstdint>
#include <cstring>

namespace ebpfc {

// Length of the valid UTF-8 sequence starting at p (at most n bytes), or 0;
// its code point in *code.
static size_t utf8_sequence(const unsigned char* p, size_t n, uint32_t* code) {
  const unsigned char c = p[0];
  size_t need;
  uint32_t min;
  uint32_t cp;
  *code = c;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    need = 2;
    min = 0x80;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    need = 3;
    min = 0x800;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    need = 4;
    min = 0x10000;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (n < need) return 0;
  for (size_t i = 1; i < need; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  *code = cp;
  return need;
}

// Characters that are valid but must not reach a terminal, a log, a label or
// DOT text as they are: C0 and C1 controls and DEL (U+009B is a terminal's
// CSI), the bidirectional embeddings, overrides and isolates that reorder
// what a reader sees (U+202A..U+202E, U+2066..U+2069, as in "Trojan Source"),
// and the line and paragraph separators U+2028, U+2029.
static bool is_unsafe(uint32_t cp) {
  return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
         (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 || cp == 0x2029;
}

size_t sanitize_utf8(const char* in, size_t len, char* out, size_t cap) {
  static const char kReplacement[] = "\xef\xbf\xbd";  // U+FFFD
  if (cap == 0) return 0;
  const auto* p = reinterpret_cast<const unsigned char*>(in);
  size_t o = 0;
  size_t i = 0;
  while (i < len) {
    // a run of printable ASCII, the common case, copied at once
    size_t run = 0;
    while (i + run < len && p[i + run] >= 0x20 && p[i + run] < 0x7f) run++;
    if (run > 0) {
      const size_t room = cap - 1 - o;
      const bool cut = run > room;
      if (cut) run = room;
      std::memcpy(out + o, p + i, run);
      o += run;
      i += run;
      if (cut) break;
      continue;
    }
    uint32_t cp = 0;
    size_t n = utf8_sequence(p + i, len - i, &cp);
    if (n > 0 && is_unsafe(cp)) {
      if (o + 1 >= cap) break;
      out[o++] = '?';
      i += n;
    } else if (n == 0) {
      if (o + 3 >= cap) break;
      std::memcpy(out + o, kReplacement, 3);
      o += 3;
      i++;
    } else {
      if (o + n >= cap) break;
      std::memcpy(out + o, p + i, n);
      o += n;
      i += n;
    }
  }
  out[o] = '\0';
  return o;
}

size_t json_string(const char* s, size_t len, char* out, size_t cap) {
  size_t o = 0;
  auto put = [&](char ch) {
    if (o + 1 >= cap) return false;
    out[o++] = ch;
    return true;
  };
  if (!put('"')) return 0;
  for (size_t i = 0; i < len; i++) {
    const char ch = s[i];
    bool ok = true;
    if (ch == '"' || ch == '\\') {
      ok = put('\\') && put(ch);
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      static const char hex[] = "0123456789abcdef";
      ok = put('\\') && put('u') && put('0') && put('0') && put(hex[(ch >> 4) & 0xf]) &&
           put(hex[ch & 0xf]);
    } else {
      ok = put(ch);
    }
    if (!ok) return 0;
  }
  if (!put('"')) return 0;
  out[o] = '\0';
  return o;
}

}  // namespace ebpfc
