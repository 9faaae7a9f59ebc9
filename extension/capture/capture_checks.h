// capture_checks.h - what must hold before a capture can start: a sane
// interface name or pattern and the capabilities to load BPF programs and
// open packet sockets. Plain C++, no kernel objects touched.
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

// What capture_start('auto') asks for: find the node's pod interfaces.
constexpr const char* kAutoTarget = "auto";

// Whether a capture target is a pattern of interface names (it holds one of
// the shell wildcards '*', '?' or '[').
bool is_interface_pattern(const std::string& target);

// Validates a pattern: shorter than IFNAMSIZ; the characters of a name plus
// '*' (any characters), '?' (one character) and bracket expressions ("[0-9]",
// "[!a-f]" or "[^a-f]": one character in, or not in, the set), each closed
// and not empty. Returns an error message or "".
std::string interface_pattern_problem(const std::string& pattern);

// Validates what capture_start takes: "auto", a pattern or an interface name.
std::string capture_target_problem(const std::string& target);

}  // namespace ebpfc
