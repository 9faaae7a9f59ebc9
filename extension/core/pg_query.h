// pg_query.h - what a span may say about an SQL statement: its text with the
// literals replaced by placeholders, its first keyword and the table it
// names first.
//
// PostgreSQL-free and allocation-free: the output goes into the caller's
// buffer, bounded.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ebpfc {

struct PgQuerySummary {
  char operation[24];   // the first keyword, upper case ("SELECT"); "" if none
  char collection[64];  // the table after FROM/INTO/UPDATE/TABLE, if simple; "" if none
  size_t text_len;      // bytes written to the text buffer
  bool truncated;       // the text did not fit (or the input was cut)
};

// Writes the statement `q` (n bytes, not NUL-terminated) into out (at most
// cap bytes): with `raw` as sent, else normalized: string literals ('...',
// E'...', X'...', B'...', $tag$...$tag$), numbers and comments are replaced
// by '?' (comments are dropped), runs of white space become one space
// (trailing ones and a final ';' go),
// parameters ($1) and identifiers stay. Fills in the summary either way.
// `cut`: q is only the head of a longer statement.
void pg_summarize_query(const char* q, size_t n, bool cut, bool raw, char* out, size_t cap,
                        PgQuerySummary* summary);

// The row count of a CommandComplete tag ("SELECT 5", "INSERT 0 3",
// "UPDATE 2"): the last number of the tag. False when it has none.
bool pg_tag_rows(const char* tag, size_t n, uint64_t* rows);

}  // namespace ebpfc
