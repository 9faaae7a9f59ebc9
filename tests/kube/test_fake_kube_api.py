"""The fake API server's own tests: it must behave like the real one where
the client's tests rely on it."""

import http.client
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest

from fake_kube_api import FakeKubeAPI


def connect(api, ca=None):
    ctx = ssl.create_default_context(cafile=ca or api.ca_file)
    return http.client.HTTPSConnection("127.0.0.1", api.port, context=ctx, timeout=10)


def get(api, path, token="token-1", ca=None, headers=None):
    c = connect(api, ca)
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    c.request("GET", path, headers=h)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


def watch_lines(api, query, token="token-1", limit=100):
    c = connect(api)
    c.request("GET", "/api/v1/pods?watch=1&" + query, headers={"Authorization": "Bearer " + token})
    r = c.getresponse()
    assert r.status == 200
    assert r.getheader("Transfer-Encoding") == "chunked"
    lines = []
    while len(lines) < limit:
        line = r.readline()
        if not line:
            break
        lines.append(line)
    c.close()
    return lines


def test_tls_verifies_only_with_its_ca(api):
    assert get(api, "/api/v1/pods")[0] == 200
    with pytest.raises(ssl.SSLCertVerificationError):
        get(api, "/api/v1/pods", ca=api.rogue_ca_file)
    api.set_bad_cert(True)
    with pytest.raises(ssl.SSLCertVerificationError):
        get(api, "/api/v1/pods")
    assert get(api, "/api/v1/pods", ca=api.rogue_ca_file)[0] == 200
    assert api.tls_failures >= 2


def test_tokens_401_403_404_as_status_objects(api):
    code, headers, body = get(api, "/api/v1/pods", token="wrong")
    assert code == 401
    st = json.loads(body)
    assert (st["kind"], st["code"], st["reason"]) == ("Status", 401, "Unauthorized")
    assert get(api, "/api/v1/pods", token=None)[0] == 401
    api.set_tokens(["token-2"])
    assert get(api, "/api/v1/pods")[0] == 401
    assert get(api, "/api/v1/pods", token="token-2")[0] == 200
    api.forbid("pods")
    code, _, body = get(api, "/api/v1/pods", token="token-2")
    assert code == 403 and "forbidden" in json.loads(body)["message"]
    code, _, body = get(api, "/api/v1/secrets", token="token-2")
    assert code == 404 and json.loads(body)["reason"] == "NotFound"
    assert api.count(code=401) == 3 and api.count("pods", "list") == 5


def test_list_pages_are_a_consistent_snapshot(api):
    for i in range(5):
        api.add_pod("p%d" % i, ip="10.0.0.%d" % i)
    code, _, body = get(api, "/api/v1/pods?limit=2")
    page = json.loads(body)
    assert code == 200 and page["kind"] == "PodList"
    rv = page["metadata"]["resourceVersion"]
    assert [p["metadata"]["name"] for p in page["items"]] == ["p0", "p1"]
    api.add_pod("p9", ip="10.0.0.9")  # not in the snapshot being paged
    names, cont = [], page["metadata"]["continue"]
    while cont:
        page = json.loads(get(api, "/api/v1/pods?limit=2&continue=" + cont)[2])
        assert page["metadata"]["resourceVersion"] == rv
        names += [p["metadata"]["name"] for p in page["items"]]
        cont = page["metadata"].get("continue")
    assert names == ["p2", "p3", "p4"]
    # after a compaction the continue token is too old
    page = json.loads(get(api, "/api/v1/pods?limit=2")[2])
    api.compact()
    code, _, body = get(api, "/api/v1/pods?limit=2&continue=" + page["metadata"]["continue"])
    assert code == 410 and json.loads(body)["reason"] == "Expired"


def test_partial_object_metadata(api):
    api.add_replicaset("web-abc", deployment="web")
    _, _, body = get(api, "/apis/apps/v1/replicasets", headers={
        "Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"})
    page = json.loads(body)
    assert page["kind"] == "PartialObjectMetadataList"
    assert set(page["items"][0]) == {"kind", "apiVersion", "metadata"}
    assert page["items"][0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"


def test_watch_events_bookmarks_and_clean_end(api):
    api.bookmark_interval = 0.2
    api.add_pod("a", ip="10.0.0.1")
    rv = api.resource_version
    api.add_pod("b", ip="10.0.0.2")
    api.delete_pod("a")
    t = time.monotonic()
    lines = watch_lines(api, "resourceVersion=%d&allowWatchBookmarks=true&timeoutSeconds=1" % rv)
    assert 0.9 < time.monotonic() - t < 3
    events = [json.loads(line) for line in lines]
    assert [e["type"] for e in events[:2]] == ["ADDED", "DELETED"]
    assert all(e["type"] == "BOOKMARK" for e in events[2:]) and len(events) >= 4
    assert events[-1]["object"]["metadata"]["resourceVersion"] == str(api.resource_version)
    # no bookmarks unless asked
    lines = watch_lines(api, "resourceVersion=%d&timeoutSeconds=1" % api.resource_version)
    assert lines == []


def test_watch_from_a_compacted_version_gets_error_410(api):
    api.add_pod("a")
    old = api.resource_version
    api.add_pod("b")
    api.compact()
    events = [json.loads(x) for x in watch_lines(api, "resourceVersion=%d" % old)]
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"


def test_stream_faults(api):
    api.stream_fault("pods", "malformed")
    api.stream_fault("pods", "split", name="s")
    api.stream_fault("pods", "unknown")
    api.stream_fault("pods", "no_status", name="ns")
    api.stream_fault("pods", "error", code=410)
    lines = watch_lines(api, "resourceVersion=%d" % api.resource_version)
    with pytest.raises(ValueError):
        json.loads(lines[0])
    parsed = [json.loads(x) for x in lines[1:]]
    assert [e["type"] for e in parsed] == ["ADDED", "SURPRISE", "ADDED", "ERROR"]
    assert "status" not in parsed[2]["object"]


def test_429_with_retry_after_in_plain_text(api):
    api.inject("pods", "list", code=429, retry_after=3, plain=True)
    code, headers, body = get(api, "/api/v1/pods")
    assert code == 429 and headers["Retry-After"] == "3"
    assert headers["Content-Type"].startswith("text/plain") and b"Too many" in body
    assert get(api, "/api/v1/pods")[0] == 200  # one request only


def test_reset_and_dead_server(api):
    api.inject("pods", "list", kind="reset")
    with pytest.raises((ConnectionError, ssl.SSLError, http.client.HTTPException, OSError)):
        get(api, "/api/v1/pods")
    port = api.port
    api.stop()
    with pytest.raises(OSError):
        get(api, "/api/v1/pods")
    api.start()
    assert api.port == port and get(api, "/api/v1/pods")[0] == 200


def test_control_endpoint(tmp_path):
    proc = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "fake_kube_api.py"),
                             "--dir", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())

        def control(op, **args):
            req = urllib.request.Request(info["control_url"] + "/control",
                                         data=json.dumps({"op": op, "args": args}).encode(),
                                         headers={"Content-Type": "application/json"})
            return json.loads(urllib.request.urlopen(req, timeout=10).read())

        control("add_pod", name="via-control", ip="10.1.1.1")
        ctx = ssl.create_default_context(cafile=info["ca_file"])
        req = urllib.request.Request(info["url"] + "/api/v1/pods",
                                     headers={"Authorization": "Bearer token-1"})
        page = json.loads(urllib.request.urlopen(req, context=ctx, timeout=10).read())
        assert [p["metadata"]["name"] for p in page["items"]] == ["via-control"]
        assert control("count", resource="pods")["result"] == 1
        with pytest.raises(urllib.error.HTTPError):
            control("_serve")
    finally:
        proc.terminate()
        proc.wait(10)
