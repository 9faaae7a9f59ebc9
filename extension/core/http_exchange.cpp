// http_exchange.cpp - HTTP method names.
#include "core/http_exchange.h"

#include <cstring>

namespace ebpfc {

namespace {

struct MethodName {
  HttpMethod method;
  const char* name;
  size_t len;
};

constexpr MethodName kMethods[] = {
    {HttpMethod::Get, "GET", 3},         {HttpMethod::Head, "HEAD", 4},
    {HttpMethod::Post, "POST", 4},       {HttpMethod::Put, "PUT", 3},
    {HttpMethod::Delete, "DELETE", 6},   {HttpMethod::Connect, "CONNECT", 7},
    {HttpMethod::Options, "OPTIONS", 7}, {HttpMethod::Trace, "TRACE", 5},
    {HttpMethod::Patch, "PATCH", 5},
};

}  // namespace

HttpMethod http_method_of(const char* token, size_t len) {
  for (const MethodName& m : kMethods)
    if (m.len == len && std::memcmp(m.name, token, len) == 0) return m.method;
  return HttpMethod::Other;
}

const char* http_method_name(HttpMethod m) {
  if (m == HttpMethod::None) return "";
  for (const MethodName& x : kMethods)
    if (x.method == m) return x.name;
  return "_OTHER";
}

}  // namespace ebpfc
