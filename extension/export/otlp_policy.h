// otlp_policy.h - what the OTLP exporter makes of an endpoint's answers, and
// of its headers file. PostgreSQL-free, libcurl-free: unit-tested.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ebpfc::otlp {

// What becomes of a request (OTLP/HTTP: retry only 429, 502, 503 and 504,
// and transport failures; any other answer but a 2xx is final).
enum class Disposition : uint8_t {
  Delivered,  // 2xx: the spans were accepted (but for a partial success)
  Rejected,   // refused for good: dropped, counted as failed
  Retry,      // try again after a back-off (or what Retry-After asks)
};

// `http_status` 0: the request did not get an answer (connection refused,
// timeout, TLS failure...).
Disposition classify(long http_status);

// The partial_success of an ExportTraceServiceResponse (protobuf, or JSON):
// the spans the endpoint rejected and why. Returns false if the body holds
// none (an empty body is a full success). Bounded: reads at most the first
// 64 KiB.
struct PartialSuccess {
  int64_t rejected_spans = 0;
  std::string error_message;
};
bool parse_partial_success(const uint8_t* body, size_t n, bool json, PartialSuccess* out);

// A headers file: one "Name: value" per line (an Authorization token, a
// tenant header); empty lines and lines starting with '#' are skipped.
// Names are HTTP tokens; values have no control characters. Returns false
// with the line at fault in `error`; `out` gets the header lines.
bool parse_headers_file(std::string_view text, std::vector<std::string>* out, std::string* error);

// The URL a request goes to: an endpoint with no path (http://host:4318 or
// http://host:4318/) gets OTLP's /v1/traces; one with a path is used as is.
std::string traces_url(const std::string& endpoint);

}  // namespace ebpfc::otlp
