#!/usr/bin/python3
"""loadgen.py - the bookinfo example's load generator: COUNT requests
GET /productpage?id=0..COUNT-1 on one keep-alive connection, each in a new
W3C trace. Prints one JSON line: requests sent, answers by status, and the
trace id of the first request.

    loadgen.py URL COUNT
"""

import http.client
import json
import secrets
import sys
import urllib.parse


def main():
    url = urllib.parse.urlsplit(sys.argv[1])
    count = int(sys.argv[2])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    statuses = {}
    first_trace = None
    for i in range(count):
        trace = secrets.token_hex(16)
        first_trace = first_trace or trace
        conn.request("GET", f"/productpage?id={i}",
                     headers={"traceparent": f"00-{trace}-{secrets.token_hex(8)}-01"})
        resp = conn.getresponse()
        resp.read()
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
    conn.close()
    print(json.dumps({"requests": count, "statuses": statuses, "first_trace": first_trace}))


if __name__ == "__main__":
    main()
