// pg_fuzz.cpp - libFuzzer target for PostgreSQL's wire protocol parser and
// its pairing (extension/core/pg_wire.*, pg_query.*), and the filter's
// classifier (bpf/l7_classify.h, ebpfc_pg_classify).
//
// The input is a connection's capture, as the kernel would report it:
//
//   config (1 byte) | records...
//
// config bit 0: the capture joined mid-stream (no stream starts); bit 1: raw
// query text. A record is ctl (1 byte) and its operands; ctl bit 0 is the
// direction; the records are those of segment_script.h.
//
// Checked (CHECK aborts): every span is well formed (text references inside
// the list's text, at most kPgTextMax bytes of statement, times in order,
// a SQLSTATE of five characters or none); the connections followed stay
// bounded; at close nothing is left open.
#include <cstdint>
#include <cstring>
#include <string>

#include "core/pg_query.h"
#include "core/pg_wire.h"
#include "db_fuzz_run.h"
#include "fuzz_check.h"
#include "l7_classify.h"

namespace {

using namespace ebpfc;

std::string be32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; i++) s[i] = static_cast<char>(v >> (24 - 8 * i));
  return s;
}
std::string msg(char t, const std::string& body) {
  return std::string(1, t) + be32(static_cast<uint32_t>(body.size() + 4)) + body;
}
std::string z(const std::string& s) { return s + std::string(1, '\0'); }

std::string canned(uint8_t k) {
  switch (k % 16) {
    case 0: {
      const std::string body = be32(196608) + z("user") + z("u") + z("database") + z("d") + z("");
      return be32(static_cast<uint32_t>(body.size() + 4)) + body;
    }
    case 1:
      return be32(8) + be32(80877103);
    case 2:
      return "S";
    case 3:
      return "N";
    case 4:
      return msg('Q', z("SELECT 'x', 1 FROM t WHERE a = $1"));
    case 5:
      return msg('P', z("s1") + z("SELECT $1") + std::string(2, '\0'));
    case 6:
      return msg('B', z("") + z("s1") + std::string(6, '\0'));
    case 7:
      return msg('E', z("") + be32(0));
    case 8:
      return msg('S', "");
    case 9:
      return msg('C', z("SELECT 3"));
    case 10:
      return msg('Z', "I");
    case 11:
      return msg('E', "C" + z("42P01") + "Mx" + std::string(2, '\0'));
    case 12:
      return msg('1', "") + msg('2', "");
    case 13:
      return msg('D', std::string("\0\1", 2) + be32(1) + "x");
    case 14:
      return msg('R', be32(0));
    default:
      return std::string("Q") + be32(0x3fffffff) + "SELECT";
  }
}

void check_spans(const PgSpanList& out, size_t from) {
  const size_t text_len = out.bytes();  // an upper bound of the text's size
  for (size_t i = from; i < out.size(); i++) {
    const PgSpan& s = out[i];
    for (const TextRef r : {s.operation, s.collection, s.query, s.database, s.user})
      CHECK(r.offset + size_t{r.len} <= text_len);
    CHECK(s.query.len <= kPgTextMax);
    CHECK(s.database.len < kPgNameMax && s.user.len < kPgNameMax);
    CHECK(s.start_unix_us <= s.end_unix_us);
    const size_t st = strnlen(s.sqlstate, sizeof(s.sqlstate));
    CHECK(st == 0 || st == 5);
    CHECK(st == 0 || s.status == SpanStatus::Error);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  ebpfc_fuzz::NullControl control;
  PgTrackerOptions options;
  options.max_connections = 4;
  options.raw_text = (data[0] & 2) != 0;
  PgTracker tracker(options, control);
  ebpfc_fuzz::run_db_fuzz(
      data, size, tracker, options.max_connections,
      {EBPFC_L7_PGSQL, 5432, false, (data[0] & 1) != 0},
      [](const __u8* head, __u32 n, __u32 len, bool at_start) {
        (void)ebpfc_pg_classify(head, n, len, at_start);
      },
      canned, check_spans);
  return 0;
}
