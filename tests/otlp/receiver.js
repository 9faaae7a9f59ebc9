#!/usr/bin/env node
// receiver.js - the tests' OTLP/HTTP receiver. It decodes every request with
// a real implementation of the OTLP protobuf definitions (the OpenTelemetry
// JavaScript packages' protobufjs code, @opentelemetry/otlp-transformer) or,
// for OTLP/JSON, JSON.parse, and appends one JSON line per span to --out:
//
//   {"req": N, "resource": {attrs}, "scope": {"name", "version", "attributes"},
//    "traceId", "spanId", "parentSpanId", "traceState", "name", "kind",
//    "start", "end" (ns, as strings), "attributes": {...}, "status": {...}, "flags"}
//
// It listens on --host/--port (127.0.0.1 and a free port by default) and
// prints {"ready": true, "port": P} on stdout. Commands, one JSON object per
// line on stdin, answered with one line on stdout:
//   {"mode": "ok"}                              answer 200 (the default)
//   {"mode": "status", "status": 503, "retry_after": "1", "times": 3}
//                                               answer that status (times: then ok again)
//   {"mode": "hang"}                            accept requests, never answer
//   {"mode": "partial", "rejected": 2}         200 with a partial_success
//   {"cmd": "stats"}                            {"requests", "by_status", "spans", "bad",
//                                                "log": [[arrival ms, status], ...]}
// Requests whose body does not decode are answered 400 and counted in "bad".
"use strict";

const http = require("http");
const fs = require("fs");
const zlib = require("zlib");
const readline = require("readline");
const root = require("@opentelemetry/otlp-transformer/build/src/generated/root");

const pb = root.opentelemetry.proto;
const Request = pb.collector.trace.v1.ExportTraceServiceRequest;
const Response = pb.collector.trace.v1.ExportTraceServiceResponse;

const args = {host: "127.0.0.1", port: 0, out: "/dev/null"};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];

let mode = {mode: "ok"};
const stats = {requests: 0, by_status: {}, spans: 0, bad: 0, content_types: {}, encodings: {},
               log: []};  // [arrival ms, status] of the last 200 requests answered
const out = fs.openSync(args.out, "a");
const hanging = [];

const hex = (b) => Buffer.from(b || []).toString("hex");

// AnyValue -> a plain value (protobuf objects from protobufjs, or OTLP/JSON).
function value(v) {
  if (v == null) return null;
  if (v.stringValue != null) return v.stringValue;
  if (v.boolValue != null) return v.boolValue;
  if (v.intValue != null) return Number(v.intValue.toString());
  if (v.doubleValue != null) return v.doubleValue;
  if (v.arrayValue != null) return (v.arrayValue.values || []).map(value);
  return null;
}

function attrs(list) {
  const o = {};
  for (const kv of list || []) {
    if (kv.key in o) o["__duplicate__" + kv.key] = true;
    o[kv.key] = value(kv.value);
  }
  return o;
}

// The spans of a request, whichever encoding it came in.
function spans(req, json) {
  const idOf = json ? (s) => s || "" : hex;
  const lines = [];
  for (const rs of req.resourceSpans || []) {
    const resource = attrs(rs.resource && rs.resource.attributes);
    for (const ss of rs.scopeSpans || []) {
      const scope = {name: ss.scope && ss.scope.name, version: ss.scope && ss.scope.version,
                     attributes: attrs(ss.scope && ss.scope.attributes)};
      for (const s of ss.spans || []) {
        lines.push({
          req: stats.requests, resource, scope,
          traceId: idOf(s.traceId), spanId: idOf(s.spanId), parentSpanId: idOf(s.parentSpanId),
          traceState: s.traceState || "", name: s.name, kind: Number(s.kind || 0),
          start: String(s.startTimeUnixNano), end: String(s.endTimeUnixNano),
          attributes: attrs(s.attributes),
          status: {code: Number((s.status && s.status.code) || 0), message: (s.status && s.status.message) || ""},
          flags: Number(s.flags || 0),
        });
      }
    }
  }
  return lines;
}

function answer(res, status, body, headers) {
  stats.by_status[status] = (stats.by_status[status] || 0) + 1;
  stats.log.push([res.arrived, status]);
  if (stats.log.length > 200) stats.log.shift();
  res.writeHead(status, Object.assign({"Content-Length": body.length}, headers || {}));
  res.end(body);
}

const server = http.createServer((req, res) => {
  res.arrived = Date.now();
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    stats.requests++;
    const type = req.headers["content-type"] || "";
    const encoding = req.headers["content-encoding"] || "";
    stats.content_types[type] = (stats.content_types[type] || 0) + 1;
    stats.encodings[encoding || "none"] = (stats.encodings[encoding || "none"] || 0) + 1;
    if (mode.mode === "hang") {
      hanging.push(res);  // never answered; the client times out
      return;
    }
    if (mode.mode === "status") {
      const m = mode;
      if (m.times !== undefined && --m.times <= 0) mode = {mode: "ok"};
      const h = m.retry_after !== undefined ? {"Retry-After": String(m.retry_after)} : {};
      answer(res, m.status || 503, Buffer.from("try later"), h);
      return;
    }
    let lines;
    const json = type.startsWith("application/json");
    try {
      let body = Buffer.concat(chunks);
      if (encoding === "gzip") body = zlib.gunzipSync(body);
      const decoded = json ? JSON.parse(body.toString("utf8")) : Request.decode(body);
      lines = spans(decoded, json);
    } catch (e) {
      stats.bad++;
      answer(res, 400, Buffer.from(String(e)));
      return;
    }
    fs.writeSync(out, lines.map((l) => JSON.stringify(l) + "\n").join(""));
    stats.spans += lines.length;
    let reply = {};
    if (mode.mode === "partial")
      reply = {partialSuccess: {rejectedSpans: mode.rejected || 1, errorMessage: "test rejects"}};
    if (json) {
      const body = Buffer.from(JSON.stringify(mode.mode === "partial"
        ? {partialSuccess: {rejectedSpans: String(mode.rejected || 1), errorMessage: "test rejects"}}
        : {}));
      answer(res, 200, body, {"Content-Type": "application/json"});
    } else {
      const body = Buffer.from(Response.encode(Response.fromObject(reply)).finish());
      answer(res, 200, body, {"Content-Type": "application/x-protobuf"});
    }
  });
});
server.keepAliveTimeout = 60000;

server.listen(Number(args.port), args.host, () => {
  process.stdout.write(JSON.stringify({ready: true, port: server.address().port}) + "\n");
});

readline.createInterface({input: process.stdin}).on("line", (line) => {
  if (!line.trim()) return;
  const c = JSON.parse(line);
  if (c.cmd === "stats") {
    process.stdout.write(JSON.stringify(Object.assign({ok: true}, stats)) + "\n");
    return;
  }
  if (c.mode === "ok" || c.mode === "partial") while (hanging.length) hanging.pop().destroy();
  mode = c;
  process.stdout.write(JSON.stringify({ok: true, mode: c.mode}) + "\n");
}).on("close", () => process.exit(0));
