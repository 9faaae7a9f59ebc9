#include "pg/jsonb_attributes.h"

#include <cstring>
#include <type_traits>

#include "core/span_ids.h"
#include "core/text_sanitize.h"

namespace ebpfc::pg {

// Its storage is the memory context; a longjmp over it leaks nothing.
static_assert(std::is_trivially_destructible<JsonbAttributes>::value,
              "JsonbAttributes must be trivially destructible");

namespace {

void set_string(JsonbValue* v, char* s, size_t len) {
  v->type = jbvString;
  v->val.string.val = s;
  v->val.string.len = static_cast<int>(len);
}

// jsonb's order of object keys: shorter first, then bytewise.
bool key_before(const JsonbPair& a, const JsonbPair& b) {
  const int la = a.key.val.string.len;
  const int lb = b.key.val.string.len;
  if (la != lb) return la < lb;
  return memcmp(a.key.val.string.val, b.key.val.string.val, static_cast<size_t>(la)) < 0;
}

}  // namespace

JsonbValue* JsonbAttributes::add(const char* key) {
  // Emitters are ours and write each key once, within kMaxPairs: a breach
  // is a bug, reported without dropping the batch.
  if (npairs_ == kMaxPairs) {
    elog(WARNING, "ebpf_capture: span attribute \"%s\" dropped: more than %d attributes", key,
         kMaxPairs);
    return nullptr;
  }
  JsonbPair& p = pairs_[npairs_];
  set_string(&p.key, const_cast<char*>(key), strlen(key));  // ours, static
  p.order = static_cast<uint32>(npairs_);
  npairs_++;
  return &p.value;
}

void JsonbAttributes::string(const char* key, const char* s, size_t len) {
  JsonbValue* v = add(key);
  if (v == nullptr) return;
  // bytes from the wire: valid UTF-8, no NUL or control bytes
  char* clean = static_cast<char*>(palloc(len * 3 + 1));
  set_string(v, clean, sanitize_utf8(s, len, clean, len * 3 + 1));
}

void JsonbAttributes::number(const char* key, uint64_t n) {
  JsonbValue* v = add(key);
  if (v == nullptr) return;
  v->type = jbvNumeric;
  // attribute numbers are counts and sizes, far below 2^63
  v->val.numeric = int64_to_numeric(
      n > static_cast<uint64_t>(PG_INT64_MAX) ? PG_INT64_MAX : static_cast<int64>(n));
}

void JsonbAttributes::boolean(const char* key, bool b) {
  JsonbValue* v = add(key);
  if (v == nullptr) return;
  v->type = jbvBool;
  v->val.boolean = b;
}

void JsonbAttributes::hex(const char* key, const uint8_t* bytes, size_t n) {
  JsonbValue* v = add(key);
  if (v == nullptr) return;
  char* text = static_cast<char*>(palloc(2 * n + 1));
  to_hex(bytes, n, text);
  set_string(v, text, 2 * n);
}

void JsonbAttributes::begin_array(const char* key) {
  array_ = add(key);
  if (array_ == nullptr) return;
  array_->type = jbvArray;
  array_->val.array.nElems = 0;
  array_->val.array.rawScalar = false;
  array_->val.array.elems = static_cast<JsonbValue*>(palloc(sizeof(JsonbValue) * kMaxElems));
}

void JsonbAttributes::array_string(const char* s) {
  if (array_ == nullptr || array_->val.array.nElems == kMaxElems) return;
  set_string(&array_->val.array.elems[array_->val.array.nElems++], const_cast<char*>(s),
             strlen(s));  // ours, static
}

void JsonbAttributes::end_array() { array_ = nullptr; }

Datum JsonbAttributes::finish() {
  // insertion sort: a dozen keys, mostly emitted in a fixed order
  for (int i = 1; i < npairs_; i++) {
    JsonbPair p = pairs_[i];
    int j = i - 1;
    while (j >= 0 && key_before(p, pairs_[j])) {
      pairs_[j + 1] = pairs_[j];
      j--;
    }
    pairs_[j + 1] = p;
  }
  JsonbValue object;
  object.type = jbvObject;
  object.val.object.nPairs = npairs_;
  object.val.object.pairs = pairs_;
  return JsonbPGetDatum(JsonbValueToJsonb(&object));
}

}  // namespace ebpfc::pg
