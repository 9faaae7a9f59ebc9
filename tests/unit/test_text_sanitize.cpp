// Tests of extension/core/text_sanitize.*: bytes from the wire made valid
// UTF-8 text without NUL or control bytes, and JSON string quoting.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>

#include "core/text_sanitize.h"

namespace {

std::string sanitize(const std::string& in, size_t cap) {
  // exactly cap bytes on the heap: an overrun is an AddressSanitizer report
  std::unique_ptr<char[]> out(new char[cap > 0 ? cap : 1]);
  const size_t n = ebpfc::sanitize_utf8(in.data(), in.size(), out.get(), cap);
  if (cap == 0) {
    EXPECT_EQ(n, 0u);
    return "";
  }
  EXPECT_LT(n, cap);
  EXPECT_EQ(out[n], '\0');
  return std::string(out.get(), n);
}

std::string sanitize(const std::string& in) { return sanitize(in, in.size() * 3 + 1); }

// Strictly valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF), no
// control character (C0, DEL, C1), no bidirectional override or separator.
bool valid_text(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = p[i];
    if (c < 0x20 || c == 0x7f) return false;
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf) {
      need = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (i + need > s.size()) return false;
    for (size_t k = 1; k < need; k++) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    if (cp <= 0x9f || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) ||
        cp == 0x2028 || cp == 0x2029)
      return false;  // C1 controls, bidirectional overrides, separators
    i += need;
  }
  return true;
}

const std::string kFffd = "\xef\xbf\xbd";

TEST(SanitizeUtf8, PrintableAsciiAndValidUtf8PassThrough) {
  EXPECT_EQ(sanitize("GET /index.html?q=1&r=%20 HTTP/1.1"), "GET /index.html?q=1&r=%20 HTTP/1.1");
  EXPECT_EQ(sanitize("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(sanitize(""), "");
}

TEST(SanitizeUtf8, ControlBytesBecomeQuestionMarks) {
  EXPECT_EQ(sanitize(std::string("a\0b", 3)), "a?b");
  EXPECT_EQ(sanitize("a\r\nb\tc\x7f"), "a??b?c?");
}

TEST(SanitizeUtf8, C1ControlsAndBidiOverridesBecomeQuestionMarks) {
  EXPECT_EQ(sanitize("a\xc2\x9b"
                     "[2Jb"),
            "a?[2Jb");                                            // U+009B, a terminal's CSI
  EXPECT_EQ(sanitize("\xc2\x80\xc2\x9f\xc2\xa0"), "??\xc2\xa0");  // C1 edges; NBSP stays
  EXPECT_EQ(sanitize("x\xe2\x80\xae"
                     "evil"
                     "\xe2\x80\xac"),
            "x?evil?");                                   // RLO ... PDF
  EXPECT_EQ(sanitize("\xe2\x81\xa6\xe2\x81\xa9"), "??");  // LRI ... PDI
  EXPECT_EQ(sanitize("\xe2\x80\xa8\xe2\x80\xa9"), "??");  // line, paragraph separators
  EXPECT_EQ(sanitize("\xe2\x80\xa9", 2), "?");
  EXPECT_EQ(sanitize("\xe2\x80\x8e"), "\xe2\x80\x8e");  // LRM: a mark, kept
}

TEST(SanitizeUtf8, InvalidSequencesBecomeReplacementCharacters) {
  EXPECT_EQ(sanitize("a\xff"), "a" + kFffd);
  EXPECT_EQ(sanitize("\xc0\xaf"), kFffd + kFffd);                          // overlong '/'
  EXPECT_EQ(sanitize("\xed\xa0\x80"), kFffd + kFffd + kFffd);              // a surrogate
  EXPECT_EQ(sanitize("\xf4\x90\x80\x80"), kFffd + kFffd + kFffd + kFffd);  // > U+10FFFF
  EXPECT_EQ(sanitize("\xe2\x82"), kFffd + kFffd);                          // cut short
  EXPECT_EQ(sanitize("x\xe2\x82y"), "x" + kFffd + kFffd + "y");
}

TEST(SanitizeUtf8, TruncatesWithoutSplittingACharacter) {
  EXPECT_EQ(sanitize("abcdef", 4), "abc");
  EXPECT_EQ(sanitize("ab\xc3\xa9", 4), "ab");  // 'é' needs 2 more bytes and the NUL
  EXPECT_EQ(sanitize("ab\xc3\xa9", 5), "ab\xc3\xa9");
  EXPECT_EQ(sanitize("a\xff", 4), "a");  // U+FFFD needs 3
  EXPECT_EQ(sanitize("abc", 1), "");
  EXPECT_EQ(sanitize("abc", 0), "");
}

TEST(SanitizeUtf8, RandomBytesAlwaysGiveValidText) {
  std::mt19937 rng(20261126);
  for (int round = 0; round < 20000; round++) {
    std::string in(rng() % 64, '\0');
    const bool mostly_ascii = round % 2 == 0;
    for (auto& ch : in)
      ch = static_cast<char>(mostly_ascii && rng() % 8 != 0 ? 0x20 + rng() % 0x5f : rng() % 256);
    const size_t cap = rng() % 3 == 0 ? rng() % (in.size() * 3 + 2) : in.size() * 3 + 1;
    const std::string out = sanitize(in, cap);
    ASSERT_TRUE(valid_text(out)) << round;
    if (cap == in.size() * 3 + 1) {
      // with room for the worst case nothing is cut: the output is the one
      // with unlimited room
      ASSERT_EQ(out, sanitize(in, in.size() * 4 + 16)) << round;
    }
  }
}

TEST(JsonString, QuotesAndEscapes) {
  char out[64];
  const std::string in = "a\"b\\c";
  const size_t n = ebpfc::json_string(in.data(), in.size(), out, sizeof(out));
  EXPECT_EQ(std::string(out, n), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(ebpfc::json_string(in.data(), in.size(), out, 5), 0u);  // does not fit
}

}  // namespace
