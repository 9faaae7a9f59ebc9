#include "pg/jsonb_attributes.h"

#include <cstring>
#include <type_traits>

#include "core/span_ids.h"
#include "core/text_sanitize.h"

namespace ebpfc::pg {

// Its storage is the memory context; a longjmp over it leaks nothing.
static_assert(std::is_trivially_destructible<JsonbAttributes>::value,
              "JsonbAttributes must be trivially destructible");

JsonbAttributes::JsonbAttributes() { pushJsonbValue(&state_, WJB_BEGIN_OBJECT, nullptr); }

void JsonbAttributes::key(const char* k) {
  JsonbValue v;
  v.type = jbvString;
  v.val.string.val = const_cast<char*>(k);  // ours, static: outlives the value
  v.val.string.len = static_cast<int>(strlen(k));
  pushJsonbValue(&state_, WJB_KEY, &v);
}

void JsonbAttributes::value(JsonbValue* v, bool in_array) {
  pushJsonbValue(&state_, in_array ? WJB_ELEM : WJB_VALUE, v);
}

void JsonbAttributes::string(const char* k, const char* s, size_t len) {
  // bytes from the wire: valid UTF-8, no NUL or control bytes (jsonb, like
  // text, holds neither invalid sequences nor NUL)
  char* clean = static_cast<char*>(palloc(len * 3 + 1));
  size_t n = sanitize_utf8(s, len, clean, len * 3 + 1);
  key(k);
  JsonbValue v;
  v.type = jbvString;
  v.val.string.val = clean;
  v.val.string.len = static_cast<int>(n);
  value(&v, false);
}

void JsonbAttributes::number(const char* k, uint64_t n) {
  key(k);
  JsonbValue v;
  v.type = jbvNumeric;
  // attribute numbers are counts and sizes, far below 2^63
  v.val.numeric = int64_to_numeric(n > static_cast<uint64_t>(PG_INT64_MAX) ? PG_INT64_MAX
                                                                           : static_cast<int64>(n));
  value(&v, false);
}

void JsonbAttributes::boolean(const char* k, bool b) {
  key(k);
  JsonbValue v;
  v.type = jbvBool;
  v.val.boolean = b;
  value(&v, false);
}

void JsonbAttributes::hex(const char* k, const uint8_t* bytes, size_t n) {
  char* text = static_cast<char*>(palloc(2 * n + 1));
  to_hex(bytes, n, text);
  key(k);
  JsonbValue v;
  v.type = jbvString;
  v.val.string.val = text;
  v.val.string.len = static_cast<int>(2 * n);
  value(&v, false);
}

void JsonbAttributes::begin_array(const char* k) {
  key(k);
  pushJsonbValue(&state_, WJB_BEGIN_ARRAY, nullptr);
}

void JsonbAttributes::array_string(const char* s) {
  JsonbValue v;
  v.type = jbvString;
  v.val.string.val = const_cast<char*>(s);  // ours, static
  v.val.string.len = static_cast<int>(strlen(s));
  value(&v, true);
}

void JsonbAttributes::end_array() { pushJsonbValue(&state_, WJB_END_ARRAY, nullptr); }

Datum JsonbAttributes::finish() {
  JsonbValue* object = pushJsonbValue(&state_, WJB_END_OBJECT, nullptr);
  return JsonbPGetDatum(JsonbValueToJsonb(object));
}

}  // namespace ebpfc::pg
