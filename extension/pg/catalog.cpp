#include "pg/catalog.h"

#include "pg/pg_headers.h"

namespace ebpfc::pg {

unsigned extension_namespace() {
  // PostgreSQL 15 does not export get_extension_schema(); ask the catalog.
  int rc = SPI_execute(
      "SELECT extnamespace FROM pg_catalog.pg_extension WHERE extname = 'ebpf_capture'", true, 1);
  if (rc != SPI_OK_SELECT) elog(ERROR, "ebpf_capture: cannot read pg_extension");
  if (SPI_processed == 0) return InvalidOid;
  bool isnull;
  Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
  return isnull ? InvalidOid : DatumGetObjectId(d);
}

const char* schema_quoted(unsigned nsp) {
  const char* name = get_namespace_name(nsp);
  if (name == nullptr) elog(ERROR, "ebpf_capture: schema %u of the extension is gone", nsp);
  return quote_identifier(name);
}

const char* extension_schema_quoted() {
  const Oid nsp = extension_namespace();
  return OidIsValid(nsp) ? schema_quoted(nsp) : nullptr;
}

}  // namespace ebpfc::pg
