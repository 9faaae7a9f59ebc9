// catalog.h - where the extension's objects live.
#pragma once

namespace ebpfc::pg {

// The Oid of the ebpf_capture extension's schema, or InvalidOid (0) if it is
// not installed in this database. Call inside a transaction with SPI
// connected.
unsigned extension_namespace();

// That schema's name, quoted for SQL, or nullptr. Same conditions; the
// result is palloc'd in the current memory context.
const char* extension_schema_quoted();

// The name of schema nsp, quoted for SQL (an error if there is none).
const char* schema_quoted(unsigned nsp);

}  // namespace ebpfc::pg
