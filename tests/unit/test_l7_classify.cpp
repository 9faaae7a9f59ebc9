// Tests of bpf/l7_classify.h, the socket filter's "is this HTTP?" on a
// payload's first bytes, compiled as user-space C++ (the filter runs the same
// code; tests/filter checks it in the kernel).
#include <gtest/gtest.h>

#include <string>

#include "l7_classify.h"

namespace ebpfc_test {
namespace {

// Classifies the first EBPFC_L7_PROBE_LEN bytes of s, as the filter does.
__u32 classify(const std::string& s) {
  const __u32 n = s.size() < EBPFC_L7_PROBE_LEN ? static_cast<__u32>(s.size()) : EBPFC_L7_PROBE_LEN;
  return ebpfc_l7_classify(reinterpret_cast<const __u8*>(s.data()), n);
}

TEST(L7Classify, RequestLinesWithAnyTokenMethod) {
  for (const char* line :
       {"GET / HTTP/1.1\r\n", "HEAD /x HTTP/1.0\r\n", "POST /submit HTTP/1.1\r\n",
        "OPTIONS * HTTP/1.1\r\n", "QUERY /items?q=1 HTTP/1.1\r\n", "PROPFIND /dav/ HTTP/1.1\r\n",
        "MKCOL /dav/new HTTP/1.1\r\n", "VERSION-CONTROL /v HTTP/1.1\r\n",
        "UPDATEREDIRECTREF /r HTTP/1.1\r\n", "M-SEARCH /s HTTP/1.1\r\n", "get /lower HTTP/1.1\r\n",
        "X!#$%&'*+.^_`|~9 / HTTP/1.1\r\n", "A2345678901234567890 / HTTP/1.1\r\n",
        "GET http://example.com/ HTTP/1.1\r\n", "PURGE https://cache/x HTTP/1.1\r\n",
        "CONNECT db.example:5432 HTTP/1.1\r\n", "CONNECT [::1]:443 HTTP/1.1\r\n",
        "HTTP/1.1 200 OK\r\n", "HTTP/1.0 404 Not Found\r\n"}) {
    EXPECT_EQ(classify(line), static_cast<__u32>(EBPFC_L7_HTTP)) << line;
  }
}

// Line protocols whose commands are tokens too, binary protocols, and HTTP/2.
TEST(L7Classify, OtherProtocolsAreNot) {
  for (const std::string& s : {std::string("EHLO client.example\r\n"),
                               std::string("220 mail.example ESMTP\r\n"),
                               std::string("get key\r\n"),
                               std::string("GET key\r\n"),
                               std::string("SET key value\r\n"),
                               std::string("*1\r\n$4\r\nPING\r\n"),
                               std::string("+OK ready\r\n"),
                               std::string("USER anonymous\r\n"),
                               std::string("SSH-2.0-OpenSSH_9.2p1 Debian\r\n"),
                               std::string("INVITE sip:bob@example.com SIP/2.0\r\n"),
                               std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
                               std::string("M-SEARCH * HTTP/1.1\r\n"),
                               std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),
                               std::string("\0\0\0\x08\x04\xd2\x16\x2f", 8),
                               std::string(" GET / HTTP/1.1\r\n"),
                               std::string("GET  / HTTP/1.1\r\n"),
                               std::string("A23456789012345678901 / HTTP/1.1"),
                               std::string("PROP\"FIND / HTTP/1.1\r\n"),
                               std::string("GET 1.2.3.4 HTTP/1.1\r\n"),
                               std::string("GET h:x HTTP/1.1\r\n"),
                               std::string("CONNECT \r\n HTTP/1.1"),
                               std::string("HTTP/2 200\r\n"),
                               std::string("HTTP/1-1 200\r\n"),
                               std::string("abcdefghijklmnopqrstuvwxyz0123456789"),
                               std::string(40, 'a')}) {
    EXPECT_EQ(classify(s), static_cast<__u32>(EBPFC_L7_OTHER)) << s;
  }
}

// A segment too short to tell leaves the connection undecided.
TEST(L7Classify, PrefixesOfBothAreUndecided) {
  for (const char* s :
       {"", "G", "GET", "GET ", "PROPFIND", "HTTP/1", "HT", "GET http", "GET http:/", "CONNECT "}) {
    EXPECT_EQ(classify(s), static_cast<__u32>(EBPFC_L7_UNKNOWN)) << s;
  }
  EXPECT_EQ(classify("HTTP/1."), static_cast<__u32>(EBPFC_L7_HTTP));
}

// Every prefix of an HTTP message start is HTTP or undecided, never OTHER:
// however TCP cuts a request line, the filter does not drop the connection.
TEST(L7Classify, NoPrefixOfAStartLineIsOther) {
  for (const std::string line :
       {"PROPFIND /dav/ HTTP/1.1\r\n", "GET http://example.com/ HTTP/1.1\r\n",
        "CONNECT db:5432 HTTP/1.1\r\n", "HTTP/1.1 200 OK\r\n", "X!#$%&'*+.^_`|~9 / HTTP/1.1\r\n"}) {
    for (size_t n = 0; n <= line.size(); n++)
      EXPECT_NE(classify(line.substr(0, n)), static_cast<__u32>(EBPFC_L7_OTHER))
          << line.substr(0, n);
  }
}

TEST(L7Classify, TcharBitmapIsRfc9110) {
  const std::string tchar =
      "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
      "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  for (int c = 0; c < 256; c++)
    EXPECT_EQ(ebpfc_is_tchar(static_cast<__u8>(c)) != 0,
              c != 0 && tchar.find(static_cast<char>(c)) != std::string::npos)
        << c;
}

}  // namespace
}  // namespace ebpfc_test
