// kube_objects.h - what the client takes from the Kubernetes API's JSON:
// pods, the metadata of their controllers (ReplicaSets), nodes, watch
// events, lists and Status objects.
//
// PostgreSQL-free. Decoding never throws: malformed input (not JSON, a
// field of the wrong type, a missing uid, an absurdly long name) is an error
// value with a message. Every string kept is valid UTF-8 (the JSON parser
// rejects anything else) without NUL bytes, and bounded.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kube/ip_addr.h"
#include "kube/kube_time.h"

namespace ebpfc::kube {

// Longest name, uid, namespace or node name accepted (Kubernetes allows 253).
constexpr size_t kMaxNameLen = 1024;
// Labels beyond this much JSON are left out of PodRecord::labels_json.
constexpr size_t kMaxLabelsJson = 64 * 1024;

enum class PodPhase : uint8_t { Unset, Pending, Running, Succeeded, Failed, Unknown };
const char* pod_phase_name(PodPhase phase);  // "" for Unset
PodPhase pod_phase_from(std::string_view text);

struct OwnerRef {
  std::string kind;  // "ReplicaSet", "Job", "StatefulSet", ...
  std::string name;
  std::string uid;
  bool controller = false;
};

struct ObjectMeta {
  std::string uid;
  std::string ns;  // empty for cluster-scoped objects
  std::string name;
  std::string resource_version;  // opaque
  std::vector<std::pair<std::string, std::string>> labels;
  std::vector<OwnerRef> owners;
  int64_t created_us = kNoTime;             // creationTimestamp
  int64_t deletion_requested_us = kNoTime;  // deletionTimestamp: terminating

  // The owner reference with controller: true, or null.
  const OwnerRef* controller() const;
  // A label's value, or null.
  const std::string* label(std::string_view key) const;
};

struct Pod {
  ObjectMeta meta;
  std::string node;  // spec.nodeName; empty while unscheduled
  bool host_network = false;
  PodPhase phase = PodPhase::Unset;
  std::vector<IpAddr> ips;     // status.podIPs[].ip, else status.podIP
  int64_t start_us = kNoTime;  // status.startTime
  uint32_t bad_ips = 0;        // addresses that did not parse (left out)
};

// The part of a controlling object (a ReplicaSet; a Job if Jobs are ever
// watched) that workload derivation needs: its identity and its own
// controller.
struct OwnerInfo {
  std::string uid;
  std::string ns;
  std::string name;
  std::string kind;             // "ReplicaSet"
  std::string controller_kind;  // "Deployment"; empty when it has no controller
  std::string controller_name;
  std::string resource_version;
};

struct Node {
  std::string name;
  std::string uid;
  std::string resource_version;
  std::vector<IpAddr> internal_ips;  // status.addresses[type=InternalIP]
  int64_t created_us = kNoTime;
};

// A Status object (an error response, or the object of an ERROR event).
struct ApiStatus {
  int code = 0;
  std::string reason;   // "Expired", "Gone", "Forbidden", ...
  std::string message;  // at most 512 bytes
  // 410 Expired / Gone: the resourceVersion or continue token is too old:
  // list again.
  bool expired() const { return code == 410; }
};

enum class EventType : uint8_t { Added, Modified, Deleted, Bookmark, Error, Unknown };
const char* event_type_name(EventType type);

// What parse_json keeps of an object. Capture: what the capture's pod cache
// reads (see parse_json). DatabasePods: that, and the annotations and the
// containers (their ports), which the hub reads of the node databases' pods
// (hub_discovery.h); there are only a few of those.
enum class ParseProfile : uint8_t { Capture, DatabasePods };

// Parses JSON, keeping only what the decoders read (metadata's identity,
// labels and owners; spec.nodeName and hostNetwork; status' phase,
// addresses and start time; Status fields): managedFields, annotations,
// containers, images and the rest are dropped while parsing, so a list page
// of big objects costs little memory (ParseProfile::DatabasePods keeps
// annotations and containers too). False with a message on malformed input.
bool parse_json(std::string_view text, nlohmann::json* out, std::string* error,
                ParseProfile profile = ParseProfile::Capture);

// One line of a watch stream. object points into `doc` (null for a
// malformed event); for ERROR events `status` is filled.
struct WatchEvent {
  EventType type = EventType::Unknown;
  std::string type_text;  // as sent (bounded), for messages about unknown types
  const nlohmann::json* object = nullptr;
  std::string resource_version;  // object.metadata.resourceVersion, if any
  ApiStatus status;              // ERROR events
};
bool decode_watch_event(std::string_view line, nlohmann::json* doc, WatchEvent* out,
                        std::string* error, ParseProfile profile = ParseProfile::Capture);

// A list response (one page). items points into `doc` (null when the
// page has no items: "items": null or missing).
struct ListPage {
  std::string resource_version;
  std::string continue_token;  // non-empty: more pages follow
  const nlohmann::json* items = nullptr;
};
bool decode_list(std::string_view body, nlohmann::json* doc, ListPage* out, std::string* error,
                 ParseProfile profile = ParseProfile::Capture);

bool decode_pod(const nlohmann::json& object, Pod* out, std::string* error);
bool decode_owner(const nlohmann::json& object, std::string_view kind, OwnerInfo* out,
                  std::string* error);
bool decode_node(const nlohmann::json& object, Node* out, std::string* error);
bool decode_status(const nlohmann::json& object, ApiStatus* out);

// The body of an error response: a Status object, or (429s from proxies,
// some 5xx) plain text, whose first line becomes the message. Never fails.
ApiStatus status_from_body(int http_code, std::string_view body);

// A JSON object of the labels ({"app":"web"}), at most kMaxLabelsJson bytes
// (labels past that are left out).
std::string labels_to_json(const std::vector<std::pair<std::string, std::string>>& labels);

// Appends `text` to out as a JSON string (quoted, escaped).
void append_json_string(std::string& out, std::string_view text);

}  // namespace ebpfc::kube
