// jsonb_attributes.h - a span's attributes built directly as a jsonb value,
// so the worker never prints JSON text for PostgreSQL to parse again. The
// object is assembled as an array of key/value pairs and sorted once into
// jsonb's key order, instead of through pushJsonbValue's parse state.
#pragma once

#include "core/attribute_sink.h"
#include "pg/pg_headers.h"

namespace ebpfc::pg {

// Use one per span. Values live in the current memory context; calls
// PostgreSQL (palloc, JsonbValueToJsonb): run inside pg_call.
class JsonbAttributes final : public AttributeSink {
 public:
  void string(const char* key, const char* s, size_t len) override;
  void number(const char* key, uint64_t v) override;
  void boolean(const char* key, bool v) override;
  void hex(const char* key, const uint8_t* bytes, size_t n) override;
  void begin_array(const char* key) override;
  void array_string(const char* s) override;
  void end_array() override;
  // The object as a jsonb Datum.
  Datum finish();

 private:
  static constexpr int kMaxPairs = 24;  // the emitters' keys (http: 14)
  static constexpr int kMaxElems = 16;  // the longest array (incomplete reasons: 12)
  JsonbValue* add(const char* key);     // the value slot of a new pair, or null when full

  JsonbPair pairs_[kMaxPairs];
  int npairs_ = 0;
  JsonbValue* array_ = nullptr;  // the open array, between begin_array and end_array
};

}  // namespace ebpfc::pg
