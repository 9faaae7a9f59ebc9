// jsonb_attributes.h - a span's attributes built directly as a jsonb value
// (an AttributeSink over pushJsonbValue), so the worker never prints JSON
// text for PostgreSQL to parse again.
#pragma once

#include "core/attribute_sink.h"
#include "pg/pg_headers.h"

namespace ebpfc::pg {

// Lives in the current memory context; use one per span. Calls PostgreSQL
// (palloc, pushJsonbValue): run inside pg_call.
class JsonbAttributes final : public AttributeSink {
 public:
  JsonbAttributes();
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
  void key(const char* k);
  void value(JsonbValue* v, bool in_array);

  JsonbParseState* state_ = nullptr;
};

}  // namespace ebpfc::pg
