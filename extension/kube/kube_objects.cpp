#include "kube/kube_objects.h"

#include <cstring>
#include <nlohmann/json.hpp>

namespace ebpfc::kube {

using nlohmann::json;

namespace {

constexpr size_t kMaxMessage = 512;
constexpr size_t kMaxResourceVersion = 1024;
constexpr size_t kMaxContinue = 64 * 1024;
constexpr size_t kMaxLabelKey = 1024;
constexpr size_t kMaxLabelValue = 4096;
// Deeper JSON than this is dropped while parsing (no object we read nests
// more than 6 levels).
constexpr int kMaxDepth = 32;

// The member `key` of an object, or null (not an object, missing, null).
const json* member(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

bool has_nul(std::string_view s) { return std::memchr(s.data(), '\0', s.size()) != nullptr; }

// A string member: absent is fine (out left empty) unless required; wrong
// type, NUL bytes or more than max bytes are errors.
bool get_string(const json& obj, const char* key, size_t max, bool required, std::string* out,
                std::string* error) {
  const json* v = member(obj, key);
  if (v == nullptr) {
    out->clear();
    if (required) *error = std::string("missing ") + key;
    return !required;
  }
  if (!v->is_string()) {
    *error = std::string(key) + " is not a string";
    return false;
  }
  const std::string& s = v->get_ref<const std::string&>();
  if (s.size() > max || has_nul(s)) {
    *error = std::string(key) + (s.size() > max ? " is too long" : " holds a NUL byte");
    return false;
  }
  if (required && s.empty()) {
    *error = std::string("empty ") + key;
    return false;
  }
  *out = s;
  return true;
}

bool get_time(const json& obj, const char* key, int64_t* out, std::string* error) {
  *out = kNoTime;
  const json* v = member(obj, key);
  if (v == nullptr) return true;
  if (!v->is_string() || !parse_rfc3339(v->get_ref<const std::string&>(), out)) {
    *out = kNoTime;
    *error = std::string(key) + " is not an RFC 3339 time";
    return false;
  }
  return true;
}

// Truncates to at most max bytes on a UTF-8 character boundary.
void truncate_utf8(std::string& s, size_t max) {
  if (s.size() <= max) return;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) n--;
  s.resize(n);
}

// Printable, single-line, bounded text for messages (UTF-8 kept).
std::string clean_message(std::string_view in) {
  std::string out;
  out.reserve(in.size() < kMaxMessage ? in.size() : kMaxMessage);
  for (char c : in) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
    } else {
      out.push_back(c);
    }
    if (out.size() > kMaxMessage + 4) break;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  truncate_utf8(out, kMaxMessage);
  return out;
}

bool decode_meta(const json& object, bool namespaced, ObjectMeta* m, std::string* error) {
  const json* meta = member(object, "metadata");
  if (meta == nullptr || !meta->is_object()) {
    *error = "object without metadata";
    return false;
  }
  if (!get_string(*meta, "uid", kMaxNameLen, true, &m->uid, error) ||
      !get_string(*meta, "name", kMaxNameLen, true, &m->name, error) ||
      !get_string(*meta, "namespace", kMaxNameLen, namespaced, &m->ns, error) ||
      !get_string(*meta, "resourceVersion", kMaxResourceVersion, false, &m->resource_version,
                  error))
    return false;
  std::string ignored;
  // Bad times are not worth losing the object for.
  if (!get_time(*meta, "creationTimestamp", &m->created_us, &ignored)) m->created_us = kNoTime;
  if (!get_time(*meta, "deletionTimestamp", &m->deletion_requested_us, &ignored))
    m->deletion_requested_us = kNoTime;

  m->labels.clear();
  if (const json* labels = member(*meta, "labels"); labels != nullptr && labels->is_object()) {
    for (auto it = labels->begin(); it != labels->end(); ++it) {
      if (!it.value().is_string()) continue;
      const std::string& k = it.key();
      const std::string& v = it.value().get_ref<const std::string&>();
      if (k.size() > kMaxLabelKey || v.size() > kMaxLabelValue || has_nul(k) || has_nul(v))
        continue;
      m->labels.emplace_back(k, v);
    }
  }
  m->owners.clear();
  if (const json* owners = member(*meta, "ownerReferences");
      owners != nullptr && owners->is_array()) {
    for (const json& o : *owners) {
      OwnerRef ref;
      std::string e;
      if (!get_string(o, "kind", kMaxNameLen, true, &ref.kind, &e) ||
          !get_string(o, "name", kMaxNameLen, true, &ref.name, &e) ||
          !get_string(o, "uid", kMaxNameLen, false, &ref.uid, &e))
        continue;  // an unusable reference: as if absent
      const json* c = member(o, "controller");
      ref.controller = c != nullptr && c->is_boolean() && c->get<bool>();
      m->owners.push_back(std::move(ref));
    }
  }
  return true;
}

// Which of the few objects whose members we filter a container is.
enum class Filter : uint8_t { None, Metadata, Spec, Status };

Filter filter_of(std::string_view key) {
  if (key == "metadata") return Filter::Metadata;
  if (key == "spec") return Filter::Spec;
  if (key == "status") return Filter::Status;
  return Filter::None;
}

bool keep_member(Filter f, std::string_view key, ParseProfile profile) {
  switch (f) {
    case Filter::None:
      return true;
    case Filter::Metadata:
      return key == "uid" || key == "name" || key == "namespace" || key == "labels" ||
             key == "ownerReferences" || key == "creationTimestamp" || key == "deletionTimestamp" ||
             key == "resourceVersion" || key == "continue" || key == "remainingItemCount" ||
             (profile == ParseProfile::DatabasePods && key == "annotations");
    case Filter::Spec:
      return key == "nodeName" || key == "hostNetwork" ||
             (profile == ParseProfile::DatabasePods && key == "containers");
    case Filter::Status:
      return key == "phase" || key == "podIP" || key == "podIPs" || key == "startTime" ||
             key == "addresses";
  }
  return true;
}

void add_ip(const json& v, Pod* pod) {
  if (!v.is_string()) {
    pod->bad_ips++;
    return;
  }
  IpAddr a;
  if (!parse_ip(v.get_ref<const std::string&>(), &a)) {
    pod->bad_ips++;
    return;
  }
  for (const IpAddr& b : pod->ips)
    if (b == a) return;
  pod->ips.push_back(a);
}

}  // namespace

const char* pod_phase_name(PodPhase phase) {
  switch (phase) {
    case PodPhase::Unset:
      return "";
    case PodPhase::Pending:
      return "Pending";
    case PodPhase::Running:
      return "Running";
    case PodPhase::Succeeded:
      return "Succeeded";
    case PodPhase::Failed:
      return "Failed";
    case PodPhase::Unknown:
      return "Unknown";
  }
  return "";
}

PodPhase pod_phase_from(std::string_view t) {
  if (t.empty()) return PodPhase::Unset;
  if (t == "Pending") return PodPhase::Pending;
  if (t == "Running") return PodPhase::Running;
  if (t == "Succeeded") return PodPhase::Succeeded;
  if (t == "Failed") return PodPhase::Failed;
  return PodPhase::Unknown;
}

const char* event_type_name(EventType type) {
  switch (type) {
    case EventType::Added:
      return "ADDED";
    case EventType::Modified:
      return "MODIFIED";
    case EventType::Deleted:
      return "DELETED";
    case EventType::Bookmark:
      return "BOOKMARK";
    case EventType::Error:
      return "ERROR";
    case EventType::Unknown:
      return "UNKNOWN";
  }
  return "UNKNOWN";
}

const OwnerRef* ObjectMeta::controller() const {
  for (const OwnerRef& o : owners)
    if (o.controller) return &o;
  return nullptr;
}

const std::string* ObjectMeta::label(std::string_view key) const {
  for (const auto& kv : labels)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

bool parse_json(std::string_view text, json* out, std::string* error, ParseProfile profile) {
  struct Frame {
    Filter self;      // filter for this container's members
    Filter last_key;  // filter a container under the last key would get
  };
  std::vector<Frame> frames;
  frames.reserve(16);
  auto callback = [&frames, profile](int depth, json::parse_event_t event, json& parsed) -> bool {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start: {
        if (depth >= kMaxDepth) return false;
        // Members of discarded values get no end events: drop their frames.
        frames.resize(static_cast<size_t>(depth));
        Filter self = Filter::None;
        if (depth > 0 && event == json::parse_event_t::object_start) self = frames.back().last_key;
        frames.push_back(Frame{self, Filter::None});
        if (event == json::parse_event_t::array_start) frames.back().self = Filter::None;
        return true;
      }
      case json::parse_event_t::key: {
        if (depth > kMaxDepth || depth <= 0) return false;
        frames.resize(static_cast<size_t>(depth));
        Frame& f = frames.back();
        const std::string& key = parsed.get_ref<const std::string&>();
        if (!keep_member(f.self, key, profile)) return false;
        // Only the object's own metadata/spec/status are filtered, not
        // e.g. a label called "spec" (whose value is a string anyway).
        f.last_key = f.self == Filter::None ? filter_of(key) : Filter::None;
        return true;
      }
      default:
        return true;
    }
  };
  try {
    *out = json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/false);
  } catch (const std::exception& e) {
    // Only allocation failures get here with allow_exceptions=false.
    *error = std::string("cannot parse JSON: ") + e.what();
    *out = json();
    return false;
  }
  if (out->is_discarded()) {
    *error = "malformed JSON";
    *out = json();
    return false;
  }
  return true;
}

bool decode_status(const json& object, ApiStatus* out) {
  *out = ApiStatus{};
  if (!object.is_object()) return false;
  const json* code = member(object, "code");
  if (code != nullptr && code->is_number_integer()) {
    const int64_t c = code->get<int64_t>();
    out->code = c >= 0 && c < 1000 ? static_cast<int>(c) : 0;
  }
  if (const json* r = member(object, "reason"); r != nullptr && r->is_string())
    out->reason = clean_message(r->get_ref<const std::string&>());
  if (const json* m = member(object, "message"); m != nullptr && m->is_string())
    out->message = clean_message(m->get_ref<const std::string&>());
  // Older servers sent 410 reason "Gone" without a code in some paths.
  if (out->code == 0 && (out->reason == "Expired" || out->reason == "Gone")) out->code = 410;
  return true;
}

ApiStatus status_from_body(int http_code, std::string_view body) {
  ApiStatus st;
  st.code = http_code;
  json doc;
  std::string error;
  if (!body.empty() && (body.front() == '{') && parse_json(body, &doc, &error) && doc.is_object()) {
    ApiStatus parsed;
    decode_status(doc, &parsed);
    st.reason = parsed.reason;
    st.message = parsed.message;
    // The HTTP code is what happened; a Status says the same, normally.
    if (parsed.code == 410) st.code = 410;
    return st;
  }
  const size_t nl = body.find('\n');
  st.message = clean_message(body.substr(0, nl));
  return st;
}

bool decode_watch_event(std::string_view line, json* doc, WatchEvent* out, std::string* error,
                        ParseProfile profile) {
  *out = WatchEvent{};
  try {
    if (!parse_json(line, doc, error, profile)) return false;
    if (!doc->is_object()) {
      *error = "watch event is not an object";
      return false;
    }
    const json* type = member(*doc, "type");
    if (type == nullptr || !type->is_string()) {
      *error = "watch event without a type";
      return false;
    }
    const std::string& t = type->get_ref<const std::string&>();
    out->type_text = clean_message(t.substr(0, 64));
    if (t == "ADDED")
      out->type = EventType::Added;
    else if (t == "MODIFIED")
      out->type = EventType::Modified;
    else if (t == "DELETED")
      out->type = EventType::Deleted;
    else if (t == "BOOKMARK")
      out->type = EventType::Bookmark;
    else if (t == "ERROR")
      out->type = EventType::Error;
    else
      out->type = EventType::Unknown;
    const json* object = member(*doc, "object");
    if (object == nullptr || !object->is_object()) {
      *error = "watch event without an object";
      return false;
    }
    out->object = object;
    if (out->type == EventType::Error) {
      decode_status(*object, &out->status);
      return true;
    }
    if (const json* meta = member(*object, "metadata"); meta != nullptr) {
      std::string e;
      if (!get_string(*meta, "resourceVersion", kMaxResourceVersion, false, &out->resource_version,
                      &e)) {
        *error = e;
        return false;
      }
    }
    if (out->type == EventType::Bookmark && out->resource_version.empty()) {
      *error = "BOOKMARK without a resourceVersion";
      return false;
    }
    return true;
  } catch (const std::exception& e) {
    *error = std::string("bad watch event: ") + e.what();
    return false;
  }
}

bool decode_list(std::string_view body, json* doc, ListPage* out, std::string* error,
                 ParseProfile profile) {
  *out = ListPage{};
  try {
    if (!parse_json(body, doc, error, profile)) return false;
    if (!doc->is_object()) {
      *error = "list is not an object";
      return false;
    }
    const json* meta = member(*doc, "metadata");
    if (meta == nullptr || !meta->is_object()) {
      *error = "list without metadata";
      return false;
    }
    if (!get_string(*meta, "resourceVersion", kMaxResourceVersion, false, &out->resource_version,
                    error) ||
        !get_string(*meta, "continue", kMaxContinue, false, &out->continue_token, error))
      return false;
    const json* items = member(*doc, "items");
    if (items != nullptr && !items->is_array()) {
      *error = "list items are not an array";
      return false;
    }
    out->items = items;
    return true;
  } catch (const std::exception& e) {
    *error = std::string("bad list: ") + e.what();
    return false;
  }
}

bool decode_pod(const json& object, Pod* out, std::string* error) {
  try {
    *out = Pod{};
    if (!decode_meta(object, true, &out->meta, error)) return false;
    if (const json* spec = member(object, "spec"); spec != nullptr) {
      std::string e;
      if (!get_string(*spec, "nodeName", kMaxNameLen, false, &out->node, &e)) {
        *error = e;
        return false;
      }
      const json* hn = member(*spec, "hostNetwork");
      out->host_network = hn != nullptr && hn->is_boolean() && hn->get<bool>();
    }
    if (const json* status = member(object, "status"); status != nullptr) {
      if (const json* phase = member(*status, "phase"); phase != nullptr && phase->is_string())
        out->phase = pod_phase_from(phase->get_ref<const std::string&>());
      if (const json* ips = member(*status, "podIPs"); ips != nullptr && ips->is_array()) {
        for (const json& entry : *ips) {
          const json* ip = member(entry, "ip");
          if (ip != nullptr) add_ip(*ip, out);
        }
      }
      if (out->ips.empty()) {
        if (const json* ip = member(*status, "podIP"); ip != nullptr) add_ip(*ip, out);
      }
      std::string ignored;
      if (!get_time(*status, "startTime", &out->start_us, &ignored)) out->start_us = kNoTime;
    }
    return true;
  } catch (const std::exception& e) {
    *error = std::string("bad pod: ") + e.what();
    return false;
  }
}

bool decode_owner(const json& object, std::string_view kind, OwnerInfo* out, std::string* error) {
  try {
    ObjectMeta meta;
    if (!decode_meta(object, true, &meta, error)) return false;
    *out = OwnerInfo{};
    out->uid = std::move(meta.uid);
    out->ns = std::move(meta.ns);
    out->name = std::move(meta.name);
    out->kind = std::string(kind);
    out->resource_version = std::move(meta.resource_version);
    for (const OwnerRef& o : meta.owners) {
      if (!o.controller) continue;
      out->controller_kind = o.kind;
      out->controller_name = o.name;
      break;
    }
    return true;
  } catch (const std::exception& e) {
    *error = std::string("bad object: ") + e.what();
    return false;
  }
}

bool decode_node(const json& object, Node* out, std::string* error) {
  try {
    ObjectMeta meta;
    if (!decode_meta(object, false, &meta, error)) return false;
    *out = Node{};
    out->name = std::move(meta.name);
    out->uid = std::move(meta.uid);
    out->resource_version = std::move(meta.resource_version);
    out->created_us = meta.created_us;
    const json* status = member(object, "status");
    const json* addresses = status ? member(*status, "addresses") : nullptr;
    if (addresses != nullptr && addresses->is_array()) {
      for (const json& a : *addresses) {
        const json* type = member(a, "type");
        const json* address = member(a, "address");
        if (type == nullptr || address == nullptr || !type->is_string() || !address->is_string() ||
            type->get_ref<const std::string&>() != "InternalIP")
          continue;
        IpAddr ip;
        if (!parse_ip(address->get_ref<const std::string&>(), &ip)) continue;
        bool dup = false;
        for (const IpAddr& b : out->internal_ips) dup = dup || b == ip;
        if (!dup) out->internal_ips.push_back(ip);
      }
    }
    return true;
  } catch (const std::exception& e) {
    *error = std::string("bad node: ") + e.what();
    return false;
  }
}

void append_json_string(std::string& out, std::string_view text) {
  static const char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (u < 0x20) {
          out += "\\u00";
          out.push_back(hex[u >> 4]);
          out.push_back(hex[u & 15]);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

std::string labels_to_json(const std::vector<std::pair<std::string, std::string>>& labels) {
  std::string out = "{";
  std::string item;
  for (const auto& kv : labels) {
    item.clear();
    if (out.size() > 1) item.push_back(',');
    append_json_string(item, kv.first);
    item.push_back(':');
    append_json_string(item, kv.second);
    if (out.size() + item.size() + 1 > kMaxLabelsJson) break;
    out += item;
  }
  out.push_back('}');
  return out;
}

}  // namespace ebpfc::kube
