// capture_checks.h - what must hold before a capture can start: a sane
// interface name and the capabilities to load BPF programs and open packet
// sockets. Plain C++, no kernel objects touched.
#pragma once

#include <string>
#include <vector>

namespace ebpfc {

// Capabilities the capturing process needs, by name ("CAP_BPF", ...), that
// it does not have in its effective set. Empty when all are present.
std::vector<std::string> missing_capabilities();

// Validates an interface name: non-empty, shorter than IFNAMSIZ, letters,
// digits, '.', '_', '-' only, not "." or "..". Returns an error message or "".
std::string interface_name_problem(const std::string& name);

}  // namespace ebpfc
