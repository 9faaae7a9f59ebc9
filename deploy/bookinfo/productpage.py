#!/usr/bin/python3
"""productpage.py - the bookinfo example's front end (Debian's python3,
standard library only): GET /productpage?id=N calls details
(GET /details/N) and reviews (GET /reviews/N) and returns one page.

Like the real bookinfo productpage, a failed reviews call degrades the page
("reviews unavailable") instead of failing it. The W3C traceparent of the
incoming request is carried to both calls with a new parent id, so every hop
of one request lands in one trace.

    productpage.py ADDR PORT DETAILS_URL REVIEWS_URL
"""

import http.client
import http.server
import json
import secrets
import sys
import urllib.parse


def child_traceparent(incoming):
    parts = (incoming or "").split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16:
        return f"{parts[0]}-{parts[1]}-{secrets.token_hex(8)}-{parts[3]}"
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def call(base, path, traceparent):
    """GET base+path on a new connection; returns (status, parsed JSON or None)."""
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    try:
        conn.request("GET", path, headers={"traceparent": traceparent, "Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        try:
            return resp.status, json.loads(body)
        except ValueError:
            return resp.status, None
    except OSError:
        return 599, None
    finally:
        conn.close()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive with the load generator

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path != "/productpage" or not query.get("id", [""])[0].isdigit():
            self.reply(404, {"error": "not found"})
            return
        book = query["id"][0]
        tp = self.headers.get("traceparent")
        dstatus, details = call(self.server.details, f"/details/{book}", child_traceparent(tp))
        rstatus, reviews = call(self.server.reviews, f"/reviews/{book}", child_traceparent(tp))
        page = {
            "id": int(book),
            "details": details if dstatus == 200 else "details unavailable",
            "reviews": reviews if rstatus == 200 else "reviews unavailable",
        }
        self.reply(200, page)

    def reply(self, status, obj):
        body = json.dumps(obj).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    addr, port, details, reviews = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    server = http.server.ThreadingHTTPServer((addr, port), Handler)
    server.details = details
    server.reviews = reviews
    server.serve_forever()


if __name__ == "__main__":
    main()
