// catalog.h - where the extension's objects live.
#pragma once

namespace ebpfc::pg {

// The quoted schema of the ebpf_capture extension, or nullptr if it is not
// installed in this database. Call inside a transaction with SPI connected;
// the result is palloc'd in the current memory context.
const char* extension_schema_quoted();

// The Oid of that schema, or InvalidOid (0). Same conditions.
unsigned extension_namespace();

}  // namespace ebpfc::pg
