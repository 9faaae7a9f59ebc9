#include "core/pg_query.h"

#include <cstring>

namespace ebpfc {

namespace {

bool is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_ident_start(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}
bool is_ident(unsigned char c) { return is_ident_start(c) || is_digit(c) || c == '$'; }
char upper(unsigned char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c; }

class Out {
 public:
  Out(char* buf, size_t cap) : buf_(buf), cap_(cap) {}
  void put(char c) {
    if (len_ < cap_)
      buf_[len_++] = c;
    else
      full_ = true;
  }
  void space() {
    if (len_ > 0 && buf_[len_ - 1] != ' ') put(' ');
  }
  size_t len() const { return len_; }
  bool full() const { return full_; }
  // Drops trailing spaces and statement terminators.
  void trim_end() {
    while (len_ > 0 && (buf_[len_ - 1] == ' ' || buf_[len_ - 1] == ';')) len_--;
  }

 private:
  char* buf_;
  size_t cap_;
  size_t len_ = 0;
  bool full_ = false;
};

// Case-insensitive: is the word w (len n) the keyword kw?
bool word_is(const char* w, size_t n, const char* kw) {
  if (strlen(kw) != n) return false;
  for (size_t i = 0; i < n; i++)
    if (upper(static_cast<unsigned char>(w[i])) != kw[i]) return false;
  return true;
}

// End of a dollar-quote opening tag at q[i] ('$'), or 0 if it is not one
// ($1 is a parameter).
size_t dollar_tag_end(const char* q, size_t n, size_t i) {
  size_t j = i + 1;
  if (j < n && q[j] == '$') return j + 1;  // $$
  if (j >= n || !is_ident_start(static_cast<unsigned char>(q[j]))) return 0;
  while (j < n && (is_ident_start(static_cast<unsigned char>(q[j])) ||
                   is_digit(static_cast<unsigned char>(q[j]))))
    j++;
  return j < n && q[j] == '$' ? j + 1 : 0;
}

// The end (one past the closing quote, or n) of a quoted run that opens at
// q[open] with `quote`: a doubled quote stands for itself, and with
// `escapes` a backslash escapes the next byte (E'...').
size_t quoted_end(const char* q, size_t n, size_t open, char quote, bool escapes) {
  size_t j = open + 1;
  while (j < n) {
    if (escapes && q[j] == '\\' && j + 1 < n) {
      j += 2;
    } else if (q[j] == quote) {
      if (j + 1 < n && q[j + 1] == quote)
        j += 2;
      else
        return j + 1;
    } else {
      j++;
    }
  }
  return n;
}

// Copies q[from, to) to the output as sent (raw), or a placeholder.
void literal(Out& o, const char* q, size_t from, size_t to, bool raw) {
  if (!raw) {
    o.put('?');
    return;
  }
  for (size_t k = from; k < to; k++) o.put(q[k]);
}

}  // namespace

void pg_summarize_query(const char* q, size_t n, bool cut, bool raw, char* out, size_t cap,
                        PgQuerySummary* s) {
  std::memset(s, 0, sizeof(*s));
  Out o(out, cap);
  // The summary: the first word, and the name after the first FROM, INTO,
  // UPDATE or TABLE at nesting depth 0.
  int depth = 0;
  bool want_name = false;  // the next identifier is the collection
  bool first_word = true;
  size_t i = 0;
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(q[i]);
    if (is_space(c)) {
      if (raw)
        o.put(static_cast<char>(c));
      else
        o.space();
      i++;
      continue;
    }
    if (c == '-' && i + 1 < n && q[i + 1] == '-') {  // comment to the end of the line
      size_t j = i;
      while (j < n && q[j] != '\n') j++;
      if (raw)
        for (size_t k = i; k < j; k++) o.put(q[k]);
      else
        o.space();
      i = j;
      continue;
    }
    if (c == '/' && i + 1 < n && q[i + 1] == '*') {  // block comment (nests in PostgreSQL)
      size_t j = i + 2;
      int nest = 1;
      while (j < n && nest > 0) {
        if (q[j] == '/' && j + 1 < n && q[j + 1] == '*') {
          nest++;
          j += 2;
        } else if (q[j] == '*' && j + 1 < n && q[j + 1] == '/') {
          nest--;
          j += 2;
        } else {
          j++;
        }
      }
      if (raw)
        for (size_t k = i; k < j; k++) o.put(q[k]);
      else
        o.space();
      i = j;
      continue;
    }
    // String literals, with an E, X, B or N prefix.
    size_t lit = n;
    bool escapes = false;
    const bool word_start = i == 0 || !is_ident(static_cast<unsigned char>(q[i - 1]));
    if (c == '\'') {
      lit = i;
    } else if (word_start && i + 1 < n && q[i + 1] == '\'' &&
               (c == 'E' || c == 'e' || c == 'X' || c == 'x' || c == 'B' || c == 'b' || c == 'N' ||
                c == 'n')) {
      lit = i + 1;
      escapes = c == 'E' || c == 'e';
    }
    if (lit < n) {
      const size_t end = quoted_end(q, n, lit, '\'', escapes);
      literal(o, q, i, end, raw);
      want_name = false;
      first_word = false;
      i = end;
      continue;
    }
    if (c == '$') {
      const size_t tag_end = dollar_tag_end(q, n, i);
      if (tag_end > 0) {
        const size_t tag_len = tag_end - i;
        size_t j = tag_end;
        size_t end = n;
        while (j + tag_len <= n) {
          if (q[j] == '$' && std::memcmp(q + j, q + i, tag_len) == 0) {
            end = j + tag_len;
            break;
          }
          j++;
        }
        literal(o, q, i, end, raw);
        i = end;
        first_word = false;
        want_name = false;
        continue;
      }
      // a parameter: $ and digits
      o.put('$');
      i++;
      while (i < n && is_digit(static_cast<unsigned char>(q[i]))) o.put(q[i++]);
      want_name = false;
      continue;
    }
    if (c == '"') {  // a quoted identifier stays
      const size_t end = quoted_end(q, n, i, '"', false);
      if (want_name && depth == 0) {
        size_t k = 0;
        for (size_t m = i + 1; m + 1 < end && k + 1 < sizeof(s->collection); m++)
          s->collection[k++] = q[m];
        want_name = false;
      }
      for (size_t k = i; k < end; k++) o.put(q[k]);
      first_word = false;
      i = end;
      continue;
    }
    if (is_digit(c) || (c == '.' && i + 1 < n && is_digit(static_cast<unsigned char>(q[i + 1])))) {
      // a number (digits, a point, an exponent), unless it ends an identifier
      size_t j = i;
      while (j < n &&
             (is_digit(static_cast<unsigned char>(q[j])) || q[j] == '.' || q[j] == '_' ||
              ((q[j] == 'e' || q[j] == 'E') && j + 1 < n &&
               (is_digit(static_cast<unsigned char>(q[j + 1])) || q[j + 1] == '-' ||
                q[j + 1] == '+')) ||
              ((q[j] == '-' || q[j] == '+') && j > i && (q[j - 1] == 'e' || q[j - 1] == 'E'))))
        j++;
      literal(o, q, i, j, raw);
      want_name = false;
      first_word = false;
      i = j;
      continue;
    }
    if (is_ident_start(c)) {
      size_t j = i;
      while (j < n && (is_ident(static_cast<unsigned char>(q[j])) || q[j] == '.')) j++;
      const char* w = q + i;
      const size_t wn = j - i;
      if (first_word) {
        size_t k = 0;
        for (; k < wn && k + 1 < sizeof(s->operation); k++)
          s->operation[k] = upper(static_cast<unsigned char>(w[k]));
        s->operation[k] = '\0';
        first_word = false;
        if (word_is(w, wn, "UPDATE") || word_is(w, wn, "TABLE")) want_name = true;
      } else if (want_name && depth == 0) {
        if (!word_is(w, wn, "ONLY") && !word_is(w, wn, "LATERAL")) {
          size_t k = 0;
          for (; k < wn && k + 1 < sizeof(s->collection); k++) s->collection[k] = w[k];
          s->collection[k] = '\0';
          want_name = false;
        }
      } else if (depth == 0 && s->collection[0] == '\0' &&
                 (word_is(w, wn, "FROM") || word_is(w, wn, "INTO"))) {
        want_name = true;
      }
      for (size_t k = i; k < j; k++) o.put(q[k]);
      i = j;
      continue;
    }
    if (c == '(') depth++;
    if (c == ')' && depth > 0) depth--;
    if (c == '(' || c == ';' || c == ',') want_name = false;
    o.put(static_cast<char>(c));
    i++;
  }
  if (!raw) o.trim_end();
  s->text_len = o.len();
  s->truncated = cut || o.full();
}

bool pg_tag_rows(const char* tag, size_t n, uint64_t* rows) {
  while (n > 0 && tag[n - 1] == '\0') n--;
  size_t end = n;
  size_t start = end;
  while (start > 0 && is_digit(static_cast<unsigned char>(tag[start - 1]))) start--;
  if (start == end || start == 0 || tag[start - 1] != ' ' || end - start > 19) return false;
  uint64_t v = 0;
  for (size_t i = start; i < end; i++) v = v * 10 + static_cast<uint64_t>(tag[i] - '0');
  *rows = v;
  return true;
}

}  // namespace ebpfc
