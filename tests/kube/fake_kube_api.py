#!/usr/bin/python3
"""fake_kube_api.py - a fake Kubernetes API server for the tests of the
ebpf_capture Kubernetes client (Debian's python3, standard library only).

It behaves like the real one where the client cares:

- HTTPS with a test CA it makes at start-up with the `openssl` command (a CA
  and a server certificate for 127.0.0.1, ::1 and localhost), and a second,
  unrelated CA whose certificate it can serve instead ("a certificate that
  does not verify").
- Bearer tokens checked against a file that tests rewrite to rotate them;
  401 and 403 as Status objects.
- GET /api/v1/pods, /apis/apps/v1/replicasets, /api/v1/nodes: lists with a
  resourceVersion and limit/continue paging over a consistent snapshot
  (a continue token of a compacted snapshot gets 410 Expired), optionally
  with short and empty pages; PartialObjectMetadataList for
  `Accept: application/json;as=PartialObjectMetadataList;...`. Pods also
  per namespace (/api/v1/namespaces/NS/pods), and every list and watch
  takes a labelSelector (k=v, k==v, k!=v, k, !k, k in (a,b), k notin (a,b));
  a watch with one sends DELETED for an object that stops matching.
- ?watch=1: a chunked, newline-delimited stream of ADDED/MODIFIED/DELETED
  events after resourceVersion, BOOKMARK events every `bookmark_interval`
  seconds when allowWatchBookmarks=true, an ERROR 410 Expired event for a
  resourceVersion older than the last compaction, and a clean end at
  timeoutSeconds (or `max_watch_seconds`, whichever is shorter).
- Faults on demand: a status (401/403/404/410/429/500/504, a Status object or
  plain text, with Retry-After), a connection reset before a response, and in
  a watch stream: a malformed line, an event split across chunks, an oversize
  line, a pod without status/IP, an unknown event type, an ERROR event,
  a reset mid-stream, an immediate end.
- Every request is logged (resource, verb, query, status, token) for tests
  to count.

Use it from Python (`with FakeKubeAPI() as api: ...`) or as a program with a
JSON control endpoint:

    fake_kube_api.py [--port P] [--control-port C] [--dir D] [--token T]

prints one JSON line ({"url", "ca_file", "token_file", "control_url"}), then
serves POST {control_url}/control with {"op": "add_pod", "args": {...}}
(any public method of FakeKubeAPI), answering {"result": ...}.
"""

import argparse
import base64
import http.server
import json
import os
import random
import shutil
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

RESOURCES = {
    "/api/v1/pods": ("pods", "Pod", "v1", True),
    "/apis/apps/v1/replicasets": ("replicasets", "ReplicaSet", "apps/v1", True),
    "/api/v1/nodes": ("nodes", "Node", "v1", False),
}
KINDS = {name: (kind, api_version) for _, (name, kind, api_version, _) in RESOURCES.items()}


def now_rfc3339(offset=0.0):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


def status_object(code, reason, message):
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    410: "Expired",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


# --------------------------------------------------------------------------
# Certificates


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_certificates(directory, extra_ips=()):
    """A test CA and a server certificate it signed (127.0.0.1, ::1,
    localhost, and extra_ips); a rogue CA and a server certificate of its
    own. EC keys: fast to make. Returns a dict of paths."""
    ext = os.path.join(directory, "san.ext")
    sans = "".join(",IP:%s" % ip for ip in extra_ips)
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost%s\n" % sans +
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n")
    paths = {}
    for prefix in ("", "rogue-"):
        ca_key, ca_crt = prefix + "ca.key", prefix + "ca.crt"
        key, csr, crt = prefix + "server.key", prefix + "server.csr", prefix + "server.crt"
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ca_key, cwd=directory)
        _openssl("req", "-x509", "-new", "-key", ca_key, "-sha256", "-days", "2", "-subj",
                 "/CN=%sfake-kube-ca" % prefix, "-out", ca_crt, cwd=directory)
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key, cwd=directory)
        _openssl("req", "-new", "-key", key, "-subj", "/CN=127.0.0.1", "-out", csr, cwd=directory)
        _openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
                 "-days", "2", "-sha256", "-extfile", "san.ext", "-out", crt, cwd=directory)
        paths[prefix + "ca"] = os.path.join(directory, ca_crt)
        paths[prefix + "cert"] = os.path.join(directory, crt)
        paths[prefix + "key"] = os.path.join(directory, key)
    return paths


# --------------------------------------------------------------------------
# Objects


def make_pod(name, namespace="default", ip=None, ips=None, node="node-1", phase="Running",
             owner=None, host_network=False, labels=None, uid=None, start_offset=0.0,
             with_status=True, ports=None, annotations=None):
    """A Pod as the API returns it. owner: (kind, name[, uid]); ports: the
    main container's ports, {name: number}; annotations: more of them."""
    if ips is None:
        ips = [ip] if ip else []
    meta = {
        "name": name,
        "namespace": namespace,
        "uid": uid or str(uuid.uuid4()),
        "creationTimestamp": now_rfc3339(start_offset - 1),
        "labels": dict(labels or {"app": name.split("-")[0]}),
        "annotations": dict({"kubectl.kubernetes.io/restartedAt": now_rfc3339()},
                            **(annotations or {})),
        "managedFields": [{"manager": "kubelet", "operation": "Update",
                           "fieldsV1": {"f:status": {"f:podIPs": {}}}}],
    }
    if owner:
        meta["ownerReferences"] = [{
            "apiVersion": "apps/v1" if owner[0] != "Job" else "batch/v1",
            "kind": owner[0],
            "name": owner[1],
            "uid": owner[2] if len(owner) > 2 else str(uuid.uuid4()),
            "controller": True,
            "blockOwnerDeletion": True,
        }]
    spec = {"nodeName": node, "containers": [{"name": "main", "image": "nginx:1.25"}]}
    if ports:
        spec["containers"][0]["ports"] = [
            {"name": k, "containerPort": v, "protocol": "TCP"} for k, v in ports.items()]
        spec["containers"].insert(0, {"name": "sidecar", "image": "busybox",
                                      "ports": [{"containerPort": 9000}]})
    if host_network:
        spec["hostNetwork"] = True
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": spec}
    if with_status:
        status = {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}],
                  "startTime": now_rfc3339(start_offset)}
        if ips:
            status["podIP"] = ips[0]
            status["podIPs"] = [{"ip": a} for a in ips]
        status["hostIP"] = "192.168.0.1"
        pod["status"] = status
    return pod


def make_replicaset(name, namespace="default", deployment=None, uid=None):
    meta = {"name": name, "namespace": namespace, "uid": uid or str(uuid.uuid4()),
            "creationTimestamp": now_rfc3339(-5), "labels": {"app": name}}
    if deployment:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": deployment, "uid": str(uuid.uuid4()),
                                    "controller": True, "blockOwnerDeletion": True}]
    return {"kind": "ReplicaSet", "apiVersion": "apps/v1", "metadata": meta,
            "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": name}},
                                                   "spec": {"containers": [{"name": "c"}]}}}}


def make_node(name, internal_ips, uid=None):
    addresses = [{"type": "InternalIP", "address": a} for a in internal_ips]
    addresses.append({"type": "Hostname", "address": name})
    return {"kind": "Node", "apiVersion": "v1",
            "metadata": {"name": name, "uid": uid or str(uuid.uuid4()),
                         "creationTimestamp": now_rfc3339(-3600), "labels": {"kubernetes.io/hostname": name}},
            "spec": {"podCIDR": "10.244.0.0/24"},
            "status": {"addresses": addresses, "images": [{"names": ["nginx"], "sizeBytes": 1}]}}


def parse_selector(text):
    """A label selector as a list of (key, op, values); ValueError if bad."""
    reqs = []
    text = (text or "").strip()
    i = 0
    while i < len(text):
        # one requirement, up to the next comma outside parentheses
        depth, j = 0, i
        while j < len(text) and (depth or text[j] != ","):
            depth += {"(": 1, ")": -1}.get(text[j], 0)
            j += 1
        part = text[i:j].strip()
        i = j + 1
        if not part:
            raise ValueError("empty requirement")
        words = part.split()
        if len(words) >= 3 and words[1] in ("in", "notin"):
            vals = part.split(None, 2)[2].strip()
            if not (vals.startswith("(") and vals.endswith(")")):
                raise ValueError("bad set: %r" % part)
            reqs.append((words[0], words[1], [v.strip() for v in vals[1:-1].split(",")]))
        elif "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append((k.strip(), "!=", [v.strip()]))
        elif "==" in part:
            k, v = part.split("==", 1)
            reqs.append((k.strip(), "=", [v.strip()]))
        elif "=" in part:
            k, v = part.split("=", 1)
            reqs.append((k.strip(), "=", [v.strip()]))
        elif part.startswith("!"):
            reqs.append((part[1:].strip(), "!", []))
        else:
            reqs.append((part, "exists", []))
    return reqs


def selector_matches(reqs, obj):
    labels = obj.get("metadata", {}).get("labels") or {}
    for key, op, vals in reqs:
        have = key in labels
        v = labels.get(key)
        ok = {"=": have and v == vals[0], "!=": not have or v != vals[0],
              "in": have and v in vals, "notin": not have or v not in vals,
              "exists": have, "!": not have}[op]
        if not ok:
            return False
    return True


def object_key(obj):
    meta = obj["metadata"]
    return (meta.get("namespace", ""), meta["name"])


# --------------------------------------------------------------------------
# The server


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, handler, api, family):
        self.address_family = family
        self.api = api
        super().__init__(address, handler)

    def finish_request(self, request, client_address):
        # The TLS handshake happens here, in the connection's own thread.
        api = self.api
        api._track(request, True)
        try:
            ctx = api._bad_ctx if api.bad_cert else api._ctx
            try:
                request.settimeout(10)
                tls = ctx.wrap_socket(request, server_side=True)  # detaches `request`
                tls.settimeout(None)
            except (ssl.SSLError, OSError):
                with api._lock:
                    api.tls_failures += 1
                return
            api._track(tls, True)
            try:
                self.RequestHandlerClass(tls, client_address, self)
            finally:
                api._track(tls, False)
        finally:
            api._track(request, False)

    def handle_error(self, request, client_address):
        pass  # resets and broken pipes are what the tests do on purpose


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-api"

    def log_message(self, fmt, *args):
        if self.server.api.verbose:
            sys.stderr.write("fake-kube-api: " + (fmt % args) + "\n")

    def do_GET(self):
        try:
            self.server.api._serve(self)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True


class FakeKubeAPI:
    """The fake API server. All public methods are thread-safe."""

    def __init__(self, directory=None, port=0, token="token-1", bookmark_interval=1.0,
                 max_watch_seconds=None, short_pages=False, verbose=False, host="127.0.0.1",
                 san_ips=()):
        self._own_dir = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="fake-kube-")
        os.makedirs(self.dir, exist_ok=True)
        self.certs = make_certificates(self.dir, [ip for ip in san_ips if ip])
        self.ca_file = self.certs["ca"]
        self.rogue_ca_file = self.certs["rogue-ca"]
        self.token_file = os.path.join(self.dir, "accepted-tokens")
        self.set_tokens([token] if token else [])
        self.host = host
        self.port = port
        self.bookmark_interval = bookmark_interval
        self.max_watch_seconds = max_watch_seconds
        self.short_pages = short_pages
        self.verbose = verbose
        self.bad_cert = False
        self.forbidden = set()  # resources whose requests get 403
        self.tls_failures = 0
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._rv = 1000
        self._compacted_rv = 0
        self._objects = {name: {} for name in KINDS}
        self._history = []  # (rv, resource, type, object)
        self._snapshots = {}
        self._faults = []  # dicts, see inject()
        self._stream_faults = {name: [] for name in KINDS}
        self._watches = {name: 0 for name in KINDS}
        self._watch_generation = 0  # bumped by expire_watches()
        self._hold = set()  # resources whose watches deliver nothing for now
        self._conns = set()
        self._requests = []
        self._server = None
        self._thread = None
        self._ctx = self._context(self.certs["cert"], self.certs["key"])
        self._bad_ctx = self._context(self.certs["rogue-cert"], self.certs["rogue-key"])

    @staticmethod
    def _context(cert, key):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    # -- life cycle ---------------------------------------------------------

    def start(self):
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._server = _Server((self.host, self.port), _Handler, self, family)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """The server dies: no listener, every connection reset."""
        if self._server is None:
            return
        with self._lock:
            self._stopping = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self.reset_connections()
        self._thread.join(5)
        self._server = None
        with self._lock:
            self._stopping = False

    def restart(self):
        """Comes back on the same port."""
        self.stop()
        return self.start()

    def close(self):
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    _stopping = False

    @property
    def url(self):
        host = self.public_host or self.host
        host = "[%s]" % host if ":" in host else host
        return "https://%s:%d" % (host, self.port)

    public_host = None  # the address clients use, when the server listens on 0.0.0.0

    # -- tokens, certificates, permissions -----------------------------------

    def set_tokens(self, tokens):
        """The bearer tokens the server accepts from now on."""
        tmp = self.token_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(tokens) + "\n")
        os.replace(tmp, self.token_file)

    def _accepted_tokens(self):
        try:
            with open(self.token_file) as f:
                return {line.strip() for line in f if line.strip()}
        except OSError:
            return set()

    def set_bad_cert(self, bad=True):
        """New connections get a certificate from an unrelated CA."""
        self.bad_cert = bool(bad)

    def forbid(self, resource, forbidden=True):
        with self._lock:
            (self.forbidden.add if forbidden else self.forbidden.discard)(resource)

    # -- objects ------------------------------------------------------------

    def _next_rv(self):
        self._rv += 1
        return self._rv

    def _record(self, resource, type_, obj):
        rv = self._next_rv()
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(rv)
        key = object_key(obj)
        if type_ == "DELETED":
            self._objects[resource].pop(key, None)
        else:
            self._objects[resource][key] = obj
        self._history.append((rv, resource, type_, obj))
        self._cond.notify_all()
        return obj

    def put(self, resource, obj):
        """Adds or replaces an object (ADDED or MODIFIED)."""
        with self._lock:
            exists = object_key(obj) in self._objects[resource]
            return self._record(resource, "MODIFIED" if exists else "ADDED", obj)

    def get(self, resource, name, namespace="default"):
        with self._lock:
            ns = namespace if resource != "nodes" else ""
            obj = self._objects[resource].get((ns, name))
            return json.loads(json.dumps(obj)) if obj else None

    def modify(self, resource, name, namespace="default", **changes):
        """Changes a pod: phase, ip/ips, node, labels, deletion_timestamp, ports."""
        with self._lock:
            obj = self.get(resource, name, namespace)
            if obj is None:
                raise KeyError(name)
            status = obj.setdefault("status", {})
            if "phase" in changes:
                status["phase"] = changes["phase"]
            if "ips" in changes or "ip" in changes:
                ips = changes.get("ips") or ([changes["ip"]] if changes.get("ip") else [])
                status.pop("podIP", None)
                status.pop("podIPs", None)
                if ips:
                    status["podIP"] = ips[0]
                    status["podIPs"] = [{"ip": a} for a in ips]
            if "labels" in changes:
                obj["metadata"]["labels"] = changes["labels"]
            if changes.get("deletion_timestamp"):
                obj["metadata"]["deletionTimestamp"] = now_rfc3339()
            if "node" in changes:
                obj["spec"]["nodeName"] = changes["node"]
            if "ports" in changes:
                main = [c for c in obj["spec"]["containers"] if c["name"] == "main"][0]
                main["ports"] = [{"name": k, "containerPort": v, "protocol": "TCP"}
                                 for k, v in changes["ports"].items()]
            return self._record(resource, "MODIFIED", obj)

    def delete(self, resource, name, namespace="default"):
        with self._lock:
            obj = self.get(resource, name, namespace)
            if obj is None:
                raise KeyError(name)
            return self._record(resource, "DELETED", obj)

    def add_pod(self, name, namespace="default", **kwargs):
        return self.put("pods", make_pod(name, namespace, **kwargs))

    def modify_pod(self, name, namespace="default", **changes):
        return self.modify("pods", name, namespace, **changes)

    def delete_pod(self, name, namespace="default"):
        return self.delete("pods", name, namespace)

    def add_replicaset(self, name, namespace="default", deployment=None, uid=None):
        return self.put("replicasets", make_replicaset(name, namespace, deployment, uid))

    def delete_replicaset(self, name, namespace="default"):
        return self.delete("replicasets", name, namespace)

    def add_node(self, name, internal_ips, uid=None):
        return self.put("nodes", make_node(name, internal_ips, uid))

    def delete_node(self, name):
        return self.delete("nodes", name, "")

    @property
    def resource_version(self):
        with self._lock:
            return self._rv

    def compact(self):
        """Forgets the history so far: watches from an older resourceVersion
        and continue tokens of older lists get 410 Expired."""
        with self._lock:
            self._compacted_rv = self._rv
            self._history = [h for h in self._history if h[0] > self._compacted_rv]
            self._snapshots.clear()

    def expire_watches(self):
        """Every open watch gets ERROR 410 Expired (as when the watch cache
        falls too far behind) and ends."""
        with self._lock:
            self._watch_generation += 1
            self._cond.notify_all()

    def hold(self, resource, held=True):
        """Watches of `resource` deliver nothing (events, bookmarks) while held."""
        with self._lock:
            (self._hold.add if held else self._hold.discard)(resource)
            self._cond.notify_all()

    # -- faults ---------------------------------------------------------------

    def inject(self, resource="pods", verb="any", kind="status", code=500, count=1,
               retry_after=None, plain=False, reason=None, message=None, only_continue=False):
        """The next `count` matching requests fail.

        kind "status": an HTTP `code` with a Status object (plain=True: a
        text/plain body), optionally Retry-After; kind "reset": the
        connection is reset before any response; kind "end": a 200 watch that
        ends at once with nothing in it. only_continue: only list requests
        for a second or later page match."""
        with self._lock:
            self._faults.append(dict(resource=resource, verb=verb, kind=kind, code=code,
                                     count=count, retry_after=retry_after, plain=plain,
                                     reason=reason, message=message,
                                     only_continue=only_continue))

    def stream_fault(self, resource, kind, **args):
        """Something odd in the current (or next) watch of `resource`:
        "malformed" (a line that is not JSON), "split" (the next event written
        in three chunks, with pauses), "oversize" (a line of args["size"]
        bytes, 5 MiB by default), "no_status" (ADDED of a pod without status),
        "unknown" (an event of type SURPRISE), "error" (an ERROR event with
        args["code"], 410 by default: the watch ends), "reset" (the connection
        is reset), "truncate" (half an event, then a clean end)."""
        with self._lock:
            self._stream_faults[resource].append(dict(kind=kind, **args))
            self._cond.notify_all()

    def clear_faults(self):
        with self._lock:
            self._faults.clear()
            for v in self._stream_faults.values():
                v.clear()

    def _take_fault(self, resource, verb, params):
        with self._lock:
            for f in self._faults:
                if f["only_continue"] and not params.get("continue"):
                    continue
                if f["resource"] in (resource, "any") and f["verb"] in (verb, "any"):
                    f["count"] -= 1
                    if f["count"] <= 0:
                        self._faults.remove(f)
                    return dict(f)
        return None

    def reset_connections(self):
        """Resets (RST) every open connection."""
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _track(self, sock, add):
        with self._lock:
            (self._conns.add if add else self._conns.discard)(sock)

    # -- observation ----------------------------------------------------------

    def requests(self, resource=None, verb=None, code=None):
        with self._lock:
            return [dict(r) for r in self._requests
                    if (resource is None or r["resource"] == resource)
                    and (verb is None or r["verb"] == verb)
                    and (code is None or r["code"] == code)]

    def count(self, resource=None, verb=None, code=None):
        return len(self.requests(resource, verb, code))

    def active_watches(self, resource="pods"):
        with self._lock:
            return self._watches[resource]

    def _log(self, entry):
        with self._lock:
            entry["t"] = time.monotonic()
            self._requests.append(entry)

    # -- serving ----------------------------------------------------------------

    def _send(self, h, code, body, content_type="application/json", headers=()):
        data = body if isinstance(body, bytes) else body.encode()
        h.send_response(code)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()

    def _send_status(self, h, code, message, reason=None, headers=(), plain=False):
        if plain:
            self._send(h, code, message + "\n", "text/plain; charset=utf-8", headers)
        else:
            self._send(h, code, json.dumps(status_object(code, reason or REASONS.get(code, "Unknown"),
                                                         message)), headers=headers)

    def _reset(self, h):
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        h.close_connection = True
        try:
            # Close the raw socket under the TLS layer: no close_notify, a RST.
            fd = h.connection.detach()
            os.close(fd)
        except OSError:
            pass

    def _serve(self, h):
        path, _, query = h.path.partition("?")
        params = {}
        for part in query.split("&") if query else []:
            k, _, v = part.partition("=")
            params[k] = _unquote(v)
        namespace = None
        parts = path.split("/")
        if len(parts) == 6 and parts[:4] == ["", "api", "v1", "namespaces"] and parts[5] == "pods":
            namespace = parts[4]
            path = "/api/v1/pods"
        res = RESOURCES.get(path)
        resource = res[0] if res else path
        verb = "watch" if params.get("watch") in ("1", "true") else "list"
        auth = h.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        entry = {"method": "GET", "path": h.path.partition("?")[0], "query": params,
                 "resource": resource, "namespace": namespace, "verb": verb, "token": token,
                 "accept": h.headers.get("Accept", ""), "code": 0}

        fault = self._take_fault(resource, verb, params) if res else None
        if fault and fault["kind"] == "reset":
            entry["code"] = -1
            self._log(entry)
            self._reset(h)
            return
        if fault and fault["kind"] == "status":
            code = fault["code"]
            entry["code"] = code
            self._log(entry)
            headers = []
            if fault["retry_after"] is not None:
                headers.append(("Retry-After", str(fault["retry_after"])))
            message = fault["message"] or {
                429: "Too many requests, please try again later.",
                500: "Internal error occurred: injected",
                504: "Timeout: the server could not answer in time",
                410: "The provided continue parameter is too old",
            }.get(code, "injected %d" % code)
            self._send_status(h, code, message, fault["reason"], headers, fault["plain"])
            return

        if token not in self._accepted_tokens():
            entry["code"] = 401
            self._log(entry)
            self._send_status(h, 401, "Unauthorized")
            return
        if res is None:
            entry["code"] = 404
            self._log(entry)
            self._send_status(h, 404, "the server could not find the requested resource")
            return
        if resource in self.forbidden:
            entry["code"] = 403
            self._log(entry)
            group = '"apps"' if resource == "replicasets" else '""'
            self._send_status(h, 403, '%s is forbidden: User "system:serviceaccount:ebpf:capture" '
                              'cannot %s resource "%s" in API group %s at the cluster scope'
                              % (resource, verb, resource, group))
            return
        partial = "as=PartialObjectMetadata" in entry["accept"]
        try:
            reqs = parse_selector(params.get("labelSelector"))
        except ValueError as e:
            entry["code"] = 400
            self._log(entry)
            self._send_status(h, 400, "unable to parse requirement: %s" % e)
            return

        def wanted(obj):
            if namespace is not None and obj["metadata"].get("namespace") != namespace:
                return False
            return selector_matches(reqs, obj)

        if verb == "watch":
            self._watch(h, resource, params, entry, partial, fault, wanted)
        else:
            self._list(h, resource, params, entry, partial, wanted)

    def _present(self, resource, obj, partial):
        if not partial:
            return obj
        return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"]}

    def _list(self, h, resource, params, entry, partial, wanted=lambda obj: True):
        limit = int(params.get("limit") or 0)
        cont = params.get("continue")
        with self._lock:
            if cont:
                try:
                    token = json.loads(base64.urlsafe_b64decode(cont.encode()).decode())
                    snap = self._snapshots.get(token["snap"])
                    offset = int(token["off"])
                except (ValueError, KeyError, TypeError):
                    entry["code"] = 400
                    self._log(entry)
                    self._send_status(h, 400, "invalid continue token")
                    return
                if snap is None:
                    entry["code"] = 410
                    self._log(entry)
                    self._send_status(h, 410, "The provided continue parameter is too old to "
                                      "display a consistent list result. You can start a new "
                                      "list without the continue parameter.", "Expired")
                    return
                rv, items, snap_id = snap[0], snap[1], token["snap"]
            else:
                rv = self._rv
                items = [self._objects[resource][k] for k in sorted(self._objects[resource])
                         if wanted(self._objects[resource][k])]
                snap_id = None
                offset = 0
            n = len(items) - offset
            if limit > 0:
                n = min(n, limit)
                if self.short_pages and n > 0:
                    n = random.choice([0, max(1, n // 2), n])
            page = items[offset:offset + n]
            more = offset + n < len(items)
            meta = {"resourceVersion": str(rv)}
            if more:
                if snap_id is None:
                    snap_id = uuid.uuid4().hex
                    self._snapshots[snap_id] = (rv, items)
                meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                    {"snap": snap_id, "off": offset + n, "rv": rv}).encode()).decode()
                meta["remainingItemCount"] = len(items) - offset - n
        kind, api_version = KINDS[resource]
        body = {"kind": (kind + "List") if not partial else "PartialObjectMetadataList",
                "apiVersion": api_version if not partial else "meta.k8s.io/v1",
                "metadata": meta, "items": [self._present(resource, o, partial) for o in page]}
        entry["code"] = 200
        self._log(entry)
        self._send(h, 200, json.dumps(body))

    def _chunk(self, h, data):
        if isinstance(data, str):
            data = data.encode()
        h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        h.wfile.flush()

    def _watch(self, h, resource, params, entry, partial, fault, wanted=lambda obj: True):
        try:
            since = int(params.get("resourceVersion") or 0)
        except ValueError:
            entry["code"] = 400
            self._log(entry)
            self._send_status(h, 400, "invalid resourceVersion")
            return
        bookmarks = params.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(params.get("timeoutSeconds") or 1800)
        if self.max_watch_seconds is not None:
            timeout = min(timeout, self.max_watch_seconds)
        entry["code"] = 200
        self._log(entry)
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.close_connection = True
        kind, api_version = KINDS[resource]

        def event(type_, obj):
            return json.dumps({"type": type_, "object": obj}) + "\n"

        if fault and fault["kind"] == "end":
            self._chunk(h, b"")
            return
        with self._lock:
            self._watches[resource] += 1
            generation = self._watch_generation
        try:
            if 0 < since < self._compacted_rv:
                msg = "too old resource version: %d (%d)" % (since, self._compacted_rv)
                self._chunk(h, event("ERROR", status_object(410, "Expired", msg)))
                self._chunk(h, b"")
                return
            deadline = time.monotonic() + timeout
            next_bookmark = time.monotonic() + self.bookmark_interval
            pos = since
            # events a stream fault delivered itself: the loop must not send them
            # again, nor skip the ones recorded around them while they were sent
            sent_by_faults = set()
            while True:
                out = []
                with self._lock:
                    if self._stopping:
                        return
                    faults = self._stream_faults[resource]
                    todo = [] if resource in self._hold else list(faults)
                    if todo:
                        faults.clear()
                    expired = generation != self._watch_generation
                    if resource not in self._hold:
                        for rv, res, type_, obj in self._history:
                            if rv > pos and res == resource:
                                if rv not in sent_by_faults:
                                    if not wanted(obj):
                                        # an object that no longer matches is gone
                                        # for this watch (the real server says so)
                                        type_ = "DELETED" if type_ == "MODIFIED" else None
                                    if type_:
                                        out.append(event(type_, self._present(resource, obj,
                                                                              partial)))
                                pos = rv
                        if not out and bookmarks and time.monotonic() >= next_bookmark:
                            pos = max(pos, self._rv)
                            out.append(event("BOOKMARK", {"kind": kind if not partial else "PartialObjectMetadata",
                                                          "apiVersion": api_version,
                                                          "metadata": {"resourceVersion": str(pos)}}))
                            next_bookmark = time.monotonic() + self.bookmark_interval
                    if not out and not todo and not expired:
                        wait = min(deadline, next_bookmark) - time.monotonic()
                        if wait > 0:
                            self._cond.wait(min(wait, 0.2))
                for line in out:
                    self._chunk(h, line)
                for f in todo:
                    done, sent_rv = self._stream_fault(h, resource, f, event)
                    if done:
                        return
                    if sent_rv:
                        sent_by_faults.add(sent_rv)
                if expired:
                    self._chunk(h, event("ERROR", status_object(
                        410, "Expired", "too old resource version: %d" % pos)))
                    self._chunk(h, b"")
                    return
                if time.monotonic() >= deadline:
                    self._chunk(h, b"")  # a clean end at timeoutSeconds
                    return
        finally:
            with self._lock:
                self._watches[resource] -= 1

    def _stream_fault(self, h, resource, f, event):
        """Sends a stream fault. Returns (the stream is over, the
        resourceVersion of an event it delivered itself, or 0)."""
        k = f["kind"]
        sent = 0
        if k == "malformed":
            self._chunk(h, '{"type":"ADDED","object":{"metadata":\n')
        elif k == "split":
            obj = make_pod(f.get("name", "split-pod"), ip=f.get("ip", "10.244.9.9"))
            with self._lock:
                obj = self._record(resource, "ADDED", obj)
            sent = int(obj["metadata"]["resourceVersion"])  # delivered here, not by the loop
            line = event("ADDED", obj).encode()
            a, b = len(line) // 3, 2 * len(line) // 3
            for piece in (line[:a], line[a:b], line[b:]):
                self._chunk(h, piece)
                time.sleep(0.05)
        elif k == "oversize":
            size = f.get("size", 5 << 20)
            filler = "x" * 65536
            self._chunk(h, '{"type":"ADDED","object":{"pad":"')
            written = 0
            while written < size:
                self._chunk(h, filler)
                written += len(filler)
            self._chunk(h, '"}}\n')
        elif k == "no_status":
            with self._lock:
                obj = self._record(resource, "ADDED", make_pod(f.get("name", "no-status"),
                                                               with_status=False))
            sent = int(obj["metadata"]["resourceVersion"])
            self._chunk(h, event("ADDED", obj))
        elif k == "unknown":
            self._chunk(h, json.dumps({"type": "SURPRISE", "object": {"metadata": {}}}) + "\n")
        elif k == "error":
            code = f.get("code", 410)
            self._chunk(h, event("ERROR", status_object(code, REASONS.get(code, "Unknown"), "injected")))
            self._chunk(h, b"")
            return True, 0
        elif k == "reset":
            self._reset(h)
            return True, 0
        elif k == "truncate":
            self._chunk(h, '{"type":"ADDED","obj')
            self._chunk(h, b"")
            return True, 0
        return False, sent


def _unquote(v):
    from urllib.parse import unquote_plus
    return unquote_plus(v)


# --------------------------------------------------------------------------
# As a program: a control endpoint


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--control-port", type=int, default=0)
    p.add_argument("--dir")
    p.add_argument("--token", default="token-1")
    p.add_argument("--bookmark-interval", type=float, default=1.0)
    p.add_argument("--max-watch-seconds", type=float)
    p.add_argument("--short-pages", action="store_true")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--san-ip", action="append", default=[],
                   help="another address the certificate names (and the URL uses)")
    args = p.parse_args()
    api = FakeKubeAPI(args.dir, args.port, args.token, args.bookmark_interval,
                      args.max_watch_seconds, args.short_pages, args.verbose, args.host,
                      args.san_ip)
    if args.san_ip:
        api.public_host = args.san_ip[0]
    api.start()

    class Control(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            op = body.get("op", "")
            try:
                if op.startswith("_") or not callable(getattr(api, op, None)):
                    raise ValueError("no such operation: %r" % op)
                result = {"result": getattr(api, op)(**body.get("args", {}))}
                code = 200
            except Exception as e:  # reported to the caller
                result, code = {"error": "%s: %s" % (type(e).__name__, e)}, 400
            data = json.dumps(result).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    control = http.server.ThreadingHTTPServer(("127.0.0.1", args.control_port), Control)
    print(json.dumps({"url": api.url, "ca_file": api.ca_file, "token_file": api.token_file,
                      "control_url": "http://127.0.0.1:%d" % control.server_address[1]}), flush=True)
    try:
        control.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        api.close()


if __name__ == "__main__":
    main()
