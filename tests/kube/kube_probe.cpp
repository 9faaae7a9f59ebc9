// kube_probe.cpp - runs the Kubernetes client (extension/kube) against an
// API server, for the tests in this directory: an event loop like the
// worker's (epoll on the client's one fd and on stdin), and a line
// protocol on stdin/stdout, one JSON answer per command:
//
//   status                 state, counters, last error, resourceVersions
//   pods                   every pod in the cache
//   lookup ADDR [UNIX_US]  the identity of an address (now by default), or null
//   changes                PodCache::take_changes
//   reconfigure [URL [TOKEN_FILE [CA_FILE]]]   KubeClient::reconfigure (none: disabled)
//   quit
//
// Options: --api-url URL --token-file F --ca-file F [--page-limit N]
// [--backoff-initial-ms N] [--backoff-max-ms N] [--token-reload-ms N]
// [--watch-timeout S] [--grace-s S] [--no-nodes] [--no-replicasets]
#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "kube/kube_client.h"

using namespace ebpfc::kube;
using nlohmann::json;

namespace {

json time_json(int64_t us) {
  if (us == kNoTime) return nullptr;
  char buf[32];
  format_rfc3339(us, buf);
  return buf;
}

json record_json(const PodRecord& r) {
  return {{"uid", r.uid},
          {"name", r.name},
          {"namespace", r.ns},
          {"node", r.node},
          {"workload", r.workload},
          {"workload_kind", r.workload_kind},
          {"phase", r.phase},
          {"ips", r.ips},
          {"host_network", r.host_network},
          {"labels", json::parse(r.labels_json, nullptr, false)},
          {"first_seen", time_json(r.first_seen_us)},
          {"last_seen", time_json(r.last_seen_us)},
          {"deleted", time_json(r.deleted_us)}};
}

json status_json(const KubeClient& client) {
  const KubeStatus s = client.status();
  json failures = json::object();
  for (int k = 0; k < kFailKinds; k++) failures[failure_kind_name(k)] = s.counters.failures[k];
  json rv = json::object(), synced = json::object(), failing = json::object();
  for (int i = 0; i < kResources; i++) {
    const Reflector* r = client.reflector(static_cast<Resource>(i));
    rv[resource_name(static_cast<Resource>(i))] = r->resource_version();
    synced[resource_name(static_cast<Resource>(i))] = r->synced();
    failing[resource_name(static_cast<Resource>(i))] = r->failing();
  }
  return {{"state", kube_state_name(s.state)},
          {"pods_known", s.pods_known},
          {"nodes_known", s.nodes_known},
          {"owners_known", s.owners_known},
          {"addresses", s.addresses},
          {"last_error", s.last_error},
          {"requests", s.counters.requests},
          {"lists", s.counters.lists},
          {"watches", s.counters.watches},
          {"relists", s.counters.relists},
          {"events", s.counters.events},
          {"bookmarks", s.counters.bookmarks},
          {"bad_events", s.counters.bad_events},
          {"oversize_lines", s.counters.oversize_lines},
          {"token_reloads", s.counters.token_reloads},
          {"failures", failures},
          {"resource_version", rv},
          {"synced", synced},
          {"failing", failing}};
}

void reply(const json& j) {
  std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  KubeSettings settings;
  KubeClientOptions options;
  PodCacheOptions cache_options;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "kube_probe: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--api-url") {
      settings.api_url = next();
    } else if (a == "--token-file") {
      settings.token_file = next();
    } else if (a == "--ca-file") {
      settings.ca_file = next();
    } else if (a == "--page-limit") {
      options.reflector.page_limit = std::stoul(next());
    } else if (a == "--backoff-initial-ms") {
      options.reflector.backoff.initial_ns = std::stoull(next()) * 1000000ull;
    } else if (a == "--backoff-max-ms") {
      options.reflector.backoff.max_ns = std::stoull(next()) * 1000000ull;
    } else if (a == "--token-reload-ms") {
      options.token_reload_ns = std::stoull(next()) * 1000000ull;
    } else if (a == "--watch-timeout") {
      options.reflector.watch_timeout_min_s = options.reflector.watch_timeout_max_s =
          std::stoi(next());
    } else if (a == "--grace-s") {
      cache_options.grace_us = std::stoll(next()) * 1000000ll;
    } else if (a == "--max-line") {
      options.reflector.max_line = std::stoul(next());
    } else if (a == "--no-nodes") {
      options.watch_nodes = false;
    } else if (a == "--no-replicasets") {
      options.watch_replicasets = false;
    } else {
      std::fprintf(stderr, "kube_probe: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  const KubeConfig config = resolve_kube_config(settings);
  PodCache cache(cache_options);
  KubeClient client(config, cache, options);

  const int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev {};
  ev.events = EPOLLIN;
  ev.data.fd = client.fd();
  epoll_ctl(ep, EPOLL_CTL_ADD, client.fd(), &ev);
  ev.data.fd = 0;
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
  std::string input;
  bool running = true;
  while (running) {
    struct epoll_event ready[4];
    const int n = epoll_wait(ep, ready, 4, 250);
    bool client_ready = false, stdin_ready = false;
    for (int i = 0; i < n; i++) {
      if (ready[i].data.fd == 0) stdin_ready = true;
      if (ready[i].data.fd == client.fd()) client_ready = true;
    }
    // Like the worker: the client runs only when its fd says so, never on a
    // timeout of our own, so a deadline the fd fails to signal fails a test.
    if (client_ready) client.on_ready(Instant::now());
    if (!stdin_ready) continue;
    char buf[4096];
    const ssize_t got = read(0, buf, sizeof(buf));
    if (got <= 0) break;
    input.append(buf, static_cast<size_t>(got));
    size_t nl;
    while ((nl = input.find('\n')) != std::string::npos) {
      const std::string line = input.substr(0, nl);
      input.erase(0, nl + 1);
      const std::string cmd = line.substr(0, line.find(' '));
      if (cmd == "status") {
        reply(status_json(client));
      } else if (cmd == "pods") {
        std::vector<PodRecord> all;
        cache.snapshot(all);
        json out = json::array();
        for (const PodRecord& r : all) out.push_back(record_json(r));
        reply(out);
      } else if (cmd == "changes") {
        std::vector<PodRecord> changed;
        cache.take_changes(changed);
        json out = json::array();
        for (const PodRecord& r : changed) out.push_back(record_json(r));
        reply(out);
      } else if (cmd == "lookup") {
        char addr[64] = {0};
        long long at = 0;
        const int k = std::sscanf(line.c_str(), "lookup %63s %lld", addr, &at);
        IpAddr a{};
        if (k < 1 || !parse_ip(addr, &a)) {
          reply({{"error", "bad address"}});
          continue;
        }
        const PeerIdentity* id = cache.lookup(a, k >= 2 ? at : Instant::now().unix_us);
        if (id == nullptr) {
          reply(nullptr);
        } else {
          reply({{"pod", std::string(id->pod)},
                 {"namespace", std::string(id->ns)},
                 {"workload", std::string(id->workload)},
                 {"workload_kind", std::string(id->workload_kind)},
                 {"node", std::string(id->node)}});
        }
      } else if (cmd == "reconfigure") {
        // reconfigure [URL [TOKEN_FILE [CA_FILE]]]: nothing = disabled
        KubeSettings next;
        char url[1024] = {0}, token[1024] = {0}, ca[1024] = {0};
        std::sscanf(line.c_str(), "reconfigure %1023s %1023s %1023s", url, token, ca);
        next.api_url = url;
        next.token_file = token;
        next.ca_file = ca;
        const int fd_before = client.fd();
        client.reconfigure(resolve_kube_config(next));
        reply({{"fd_unchanged", fd_before == client.fd()}});
      } else if (cmd == "quit") {
        running = false;
        break;
      } else {
        reply({{"error", "unknown command"}});
      }
    }
  }
  close(ep);
  return 0;
}
