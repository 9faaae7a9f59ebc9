#include "pg/catalog.h"

#include "pg/pg_headers.h"

namespace ebpfc::pg {

const char* extension_schema_quoted() {
  // PostgreSQL 15 does not export get_extension_schema(); ask the catalog.
  int rc = SPI_execute(
      "SELECT extnamespace::regnamespace::text FROM pg_catalog.pg_extension "
      "WHERE extname = 'ebpf_capture'",
      true, 1);
  if (rc != SPI_OK_SELECT) elog(ERROR, "ebpf_capture: cannot read pg_extension");
  if (SPI_processed == 0) return nullptr;
  char* schema = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
  return schema;  // regnamespace output is already quoted where needed
}

unsigned extension_namespace() {
  int rc = SPI_execute(
      "SELECT extnamespace FROM pg_catalog.pg_extension WHERE extname = 'ebpf_capture'", true, 1);
  if (rc != SPI_OK_SELECT) elog(ERROR, "ebpf_capture: cannot read pg_extension");
  if (SPI_processed == 0) return InvalidOid;
  bool isnull;
  Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
  return isnull ? InvalidOid : DatumGetObjectId(d);
}

}  // namespace ebpfc::pg
