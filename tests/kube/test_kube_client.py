"""The Kubernetes client (extension/kube, run by kube_probe) against the fake
API server over TLS: list paging, watch events, bookmarks, 410 relists,
token rotation and 401, 429 Retry-After, a dead server, a bad certificate,
faults in the stream, HTTP errors, host-network pods and nodes."""

import os
import time

from conftest import FAST, Probe


def rs_pods(api, n, rs="web-5d8f6c7b9", deployment="frontend", prefix="10.244.1."):
    rs_obj = api.add_replicaset(rs, deployment=deployment)
    for i in range(n):
        api.add_pod("%s-%05d" % (rs, i), ip="%s%d" % (prefix, i + 1),
                    owner=("ReplicaSet", rs, rs_obj["metadata"]["uid"]),
                    labels={"app": "web", "pod-template-hash": rs.rsplit("-", 1)[1]})


def test_lists_page_by_page_then_names_addresses(api, probe_factory):
    rs_pods(api, 25)
    api.add_node("node-1", ["192.168.0.1"])
    p = probe_factory("--page-limit", "10")
    st = p.wait_synced()
    assert st["pods_known"] == 25
    lists = api.requests("pods", "list", 200)
    assert [r["query"]["limit"] for r in lists] == ["10", "10", "10"]
    assert "continue" not in lists[0]["query"] and all("continue" in r["query"] for r in lists[1:])
    ident = p.lookup("10.244.1.7")
    assert ident == {"pod": "web-5d8f6c7b9-00006", "namespace": "default", "workload": "frontend",
                     "workload_kind": "Deployment", "node": "node-1"}
    assert p.lookup("10.244.9.9") is None
    # ReplicaSets are asked for their metadata only
    rs = api.requests("replicasets", "list")
    assert "as=PartialObjectMetadataList" in rs[0]["accept"]
    # every request carried the token
    assert {r["token"] for r in api.requests()} == {"token-1"}
    # the watch asks for what the issue says
    watch = p.wait(lambda s: api.active_watches("pods") > 0, what="pods watch") and \
        api.requests("pods", "watch")[0]["query"]
    assert watch["resourceVersion"] == st["resource_version"]["pods"]
    assert watch["allowWatchBookmarks"] == "true"
    assert 300 <= int(watch["timeoutSeconds"]) <= 600


def test_short_and_empty_pages(api, probe_factory):
    api.short_pages = True
    for i in range(30):
        api.add_pod("bare-%02d" % i, ip="10.244.2.%d" % (i + 1))
    p = probe_factory("--page-limit", "4")
    st = p.wait_synced()
    assert st["pods_known"] == 30
    assert api.count("pods", "list") > 8  # short pages: more of them
    assert p.lookup("10.244.2.30")["workload_kind"] == "Pod"


def test_watch_events_and_deleted_pods_grace(api, probe_factory):
    rs_pods(api, 2)
    p = probe_factory("--grace-s", "2")
    p.wait_synced()
    api.add_pod("new-one", ip="10.244.3.1", owner=("StatefulSet", "db"))
    api.modify_pod("web-5d8f6c7b9-00000", labels={"app": "web", "tier": "front"})
    api.delete_pod("web-5d8f6c7b9-00001")
    p.wait(lambda s: s["events"] >= 3, what="3 events")
    assert p.lookup("10.244.3.1")["workload"] == "db"
    pods = p.pods()
    assert pods["web-5d8f6c7b9-00000"]["labels"] == {"app": "web", "tier": "front"}
    assert pods["web-5d8f6c7b9-00001"]["deleted"] is not None
    # a deleted pod's address resolves for the grace period, then not
    assert p.lookup("10.244.1.2")["pod"] == "web-5d8f6c7b9-00001"
    time.sleep(3.2)
    assert p.lookup("10.244.1.2") is None
    # a pod that finished gives its address up; a new pod takes it
    api.modify_pod("new-one", phase="Succeeded")
    api.add_pod("reuser", ip="10.244.3.1")
    p.wait(lambda s: s["events"] >= 5, what="5 events")
    assert p.lookup("10.244.3.1")["pod"] == "reuser"
    changes = p.cmd("changes")
    assert {c["name"] for c in changes} >= {"reuser", "new-one"}


def test_bookmarks_move_the_resource_version(api, probe_factory):
    api.max_watch_seconds = 1.5
    api.bookmark_interval = 0.3
    api.add_pod("a", ip="10.244.4.1")
    p = probe_factory()
    st = p.wait_synced()
    listed = int(st["resource_version"]["pods"])
    api.add_node("node-9", ["192.168.9.9"])  # the store's version moves, not the pods'
    st = p.wait(lambda s: s["bookmarks"] > 2 and int(s["resource_version"]["pods"]) > listed,
                what="a bookmark")
    # the next pods watch starts from the bookmark's version, not the list's
    p.wait(lambda s: any(int(r["query"]["resourceVersion"]) > listed
                         for r in api.requests("pods", "watch")), what="watch from the bookmark")
    assert st["relists"] == 0
    assert st["failures"]["short_watch"] == 0
    assert api.count("pods", "list") == 1


def test_expired_watch_relists_and_forgets_what_is_gone(api, probe_factory):
    api.add_pod("stays", ip="10.244.5.1")
    api.add_pod("goes", ip="10.244.5.2")
    p = probe_factory("--grace-s", "60")
    p.wait_synced()
    p.wait(lambda s: api.active_watches("pods") > 0, what="pods watch")
    api.hold("pods")  # the watch misses what follows ...
    api.delete_pod("goes")
    api.add_pod("came", ip="10.244.5.3")
    api.compact()     # ... and it is compacted away
    api.expire_watches()
    api.hold("pods", False)
    # every watch (pods, replicasets, nodes) got ERROR 410 and relisted
    st = p.wait(lambda s: s["relists"] == 3 and s["state"] == "synced"
                and p.lookup("10.244.5.3") is not None, what="relist")
    assert st["pods_known"] == 2
    pods = p.pods()
    assert pods["goes"]["deleted"] is not None  # the relist did not list it
    assert pods["came"]["deleted"] is None
    assert api.count("pods", "list") == 2
    assert st["failures"]["expired"] == 0
    # a watch from a compacted version gets ERROR 410 too
    assert p.lookup("10.244.5.3")["pod"] == "came"


def test_expired_continue_restarts_the_list(api, probe_factory):
    for i in range(6):
        api.add_pod("p%d" % i, ip="10.244.6.%d" % (i + 1))
    api.inject("pods", "list", code=410, reason="Expired", only_continue=True)
    p = probe_factory("--page-limit", "2")
    st = p.wait_synced()
    assert st["pods_known"] == 6
    assert st["relists"] == 1
    lists = api.requests("pods", "list")
    assert [("continue" in r["query"], r["code"]) for r in lists[:3]] == \
        [(False, 200), (True, 410), (False, 200)]


def test_token_rotation_and_401(api, probe_factory, client_token):
    api.set_tokens(["token-2"])  # the client's token-1 is no longer good
    p = probe_factory(*FAST)
    st = p.wait(lambda s: s["failures"]["unauthorized"] >= 1, what="401")
    assert st["state"] == "failing"
    assert "401" in st["last_error"] and "token" not in st["last_error"].lower().replace("token file", "")
    client_token.write_text("token-2\n")  # the kubelet rotates it
    st = p.wait_synced()
    assert st["token_reloads"] >= 2
    assert api.requests(code=200)[0]["token"] == "token-2"


def test_token_is_reread_periodically_and_kept_when_the_file_goes(api, probe_factory,
                                                                  client_token):
    api.max_watch_seconds = 1
    api.set_tokens(["token-1", "token-3"])
    p = probe_factory("--token-reload-ms", "300", *FAST)
    p.wait_synced()
    client_token.write_text("token-3\n")
    p.wait(lambda s: api.requests()[-1]["token"] == "token-3", timeout=8, what="token-3 in use")
    assert all(r["code"] != 401 for r in api.requests())
    os.unlink(client_token)
    st = p.wait(lambda s: s["failures"]["token"] >= 1, what="token read failure")
    assert "token" in st["last_error"]
    n = api.count("pods", "watch")
    p.wait(lambda s: api.count("pods", "watch") > n, timeout=5, what="another watch")
    assert api.requests("pods", "watch")[-1]["token"] == "token-3"  # the old token, kept
    assert p.status()["state"] == "synced"


def test_429_honours_retry_after(api, probe_factory):
    api.add_pod("a", ip="10.244.7.1")
    api.inject("pods", "list", code=429, retry_after=2, plain=True)
    p = probe_factory()
    st = p.wait_synced(timeout=8)
    lists = api.requests("pods", "list")
    assert lists[0]["code"] == 429 and lists[1]["code"] == 200
    gap = lists[1]["t"] - lists[0]["t"]
    assert 2.0 <= gap < 3.5, gap
    assert st["failures"]["throttled"] == 1
    assert "429" in st["last_error"] and "Too many requests" in st["last_error"]


def test_dead_server_and_recovery(api, probe_factory):
    api.add_pod("a", ip="10.244.8.1")
    p = probe_factory(*FAST)
    p.wait_synced()
    p.wait(lambda s: api.active_watches("pods") > 0, what="pods watch")
    api.stop()
    st = p.wait(lambda s: s["state"] == "stale" and s["failures"]["network"] >= 2,
                what="stale after the server died")
    assert p.lookup("10.244.8.1")["pod"] == "a"  # what we knew still resolves
    api.add_pod("while-down", ip="10.244.8.2")
    api.start()
    st = p.wait(lambda s: s["state"] == "synced" and s["pods_known"] == 2, timeout=10,
                what="recovery")
    assert st["relists"] == 0  # resumed from the last resourceVersion
    assert p.lookup("10.244.8.2")["pod"] == "while-down"


def test_bad_certificate_fails_without_crashing_and_recovers(api, probe_factory):
    api.add_pod("a", ip="10.244.9.1")
    api.set_bad_cert(True)
    p = probe_factory(*FAST)
    st = p.wait(lambda s: s["failures"]["tls"] >= 2, what="TLS failures")
    assert st["state"] == "failing"
    assert "certificate" in st["last_error"].lower()
    assert api.tls_failures >= 2 and api.count() == 0  # nothing was ever sent
    api.set_bad_cert(False)
    st = p.wait_synced()
    assert st["pods_known"] == 1


def test_wrong_ca_file(api, probe_factory):
    p = probe_factory(*FAST, ca_file=api.rogue_ca_file)
    st = p.wait(lambda s: s["failures"]["tls"] >= 1, what="TLS failure")
    assert st["state"] == "failing"


def test_faults_in_the_watch_stream(api, probe_factory):
    api.add_pod("a", ip="10.244.10.1")
    p = probe_factory("--max-line", str(1 << 20))
    p.wait_synced()
    p.wait(lambda s: api.active_watches("pods") > 0, what="pods watch")
    api.stream_fault("pods", "malformed")
    api.stream_fault("pods", "split", name="split-pod", ip="10.244.10.2")
    api.stream_fault("pods", "oversize", size=2 << 20)
    api.stream_fault("pods", "no_status", name="no-status")
    api.stream_fault("pods", "unknown")
    api.add_pod("after", ip="10.244.10.3")
    st = p.wait(lambda s: s["pods_known"] == 4, what="all pods")
    assert st["bad_events"] == 2  # the malformed line, the unknown type
    assert st["oversize_lines"] == 1
    assert st["relists"] == 0 and st["state"] == "synced"
    assert p.lookup("10.244.10.2")["pod"] == "split-pod"
    assert p.pods()["no-status"]["ips"] == []
    assert p.lookup("10.244.10.3")["pod"] == "after"


def test_reset_mid_stream_resumes_without_relisting(api, probe_factory):
    api.add_pod("a", ip="10.244.11.1")
    p = probe_factory(*FAST)
    p.wait_synced()
    p.wait(lambda s: api.active_watches("pods") > 0, what="pods watch")
    api.add_pod("b", ip="10.244.11.2")
    p.wait(lambda s: s["pods_known"] == 2, what="b")
    api.stream_fault("pods", "reset")
    st = p.wait(lambda s: s["failures"]["network"] >= 1, what="a network failure")
    api.add_pod("c", ip="10.244.11.3")
    st = p.wait(lambda s: s["pods_known"] == 3 and s["state"] == "synced", what="c")
    assert st["relists"] == 0
    watches = api.requests("pods", "watch")
    assert int(watches[-1]["query"]["resourceVersion"]) > int(watches[0]["query"]["resourceVersion"])


def test_error_statuses_are_counted_and_survived(api, probe_factory):
    api.add_pod("a", ip="10.244.12.1")
    for code in (403, 404, 500, 504):
        api.inject("pods", "list", code=code)
    api.inject("pods", "watch", kind="status", code=500, plain=True)
    p = probe_factory(*FAST)
    st = p.wait(lambda s: s["state"] == "synced" and s["failures"]["server_error"] >= 3,
                timeout=15, what="recovery after errors")
    f = st["failures"]
    assert (f["forbidden"], f["not_found"], f["server_error"]) == (1, 1, 3)
    assert st["pods_known"] == 1


def test_watch_error_event_backs_off_and_rewatches(api, probe_factory):
    p = probe_factory(*FAST)
    p.wait_synced()
    p.wait(lambda s: api.active_watches("pods") > 0, what="pods watch")
    api.stream_fault("pods", "error", code=500)
    st = p.wait(lambda s: s["failures"]["server_error"] == 1 and s["state"] == "synced"
                and api.count("pods", "watch") >= 2, what="re-watch")
    assert st["relists"] == 0


def test_short_watches_back_off(api, probe_factory):
    api.inject("pods", "watch", kind="end", count=3)
    p = probe_factory()
    p.wait(lambda s: s["failures"]["short_watch"] >= 3 and api.count("pods", "watch") >= 4,
           timeout=15, what="three short watches")
    t = [r["t"] for r in api.requests("pods", "watch")]
    gaps = [b - a for a, b in zip(t, t[1:])][:3]
    assert gaps[0] >= 0.8 and gaps[1] >= 1.6 and gaps[2] >= 3.2, gaps


def test_host_network_pods_and_nodes_resolve_to_the_node(api, probe_factory):
    api.add_node("node-2", ["192.168.5.10", "fd00:5::10"])
    api.add_pod("kube-proxy-abc", namespace="kube-system", ip="192.168.5.11", node="node-3",
                host_network=True, owner=("DaemonSet", "kube-proxy"))
    api.add_pod("cron-28512345-xyz", ip="10.244.13.1",
                owner=("Job", "cron-28512345"))
    p = probe_factory()
    p.wait_synced()
    node = {"pod": "", "namespace": "", "workload": "node-2", "workload_kind": "Node",
            "node": "node-2"}
    assert p.lookup("192.168.5.10") == node
    assert p.lookup("fd00:5::10") == node
    assert p.lookup("192.168.5.11")["node"] == "node-3"
    assert p.lookup("192.168.5.11")["pod"] == ""
    assert p.pods()["kube-proxy-abc"]["workload_kind"] == "DaemonSet"
    assert p.lookup("10.244.13.1")["workload"] == "cron"
    assert p.lookup("10.244.13.1")["workload_kind"] == "CronJob"
    api.delete_node("node-2")
    p.wait(lambda s: s["nodes_known"] == 0, what="node deleted")


def test_forbidden_nodes_leave_pods_working_but_stale(api, probe_factory):
    api.forbid("nodes")
    api.add_pod("a", ip="10.244.14.1")
    p = probe_factory(*FAST)
    st = p.wait(lambda s: s["synced"]["pods"] and s["failures"]["forbidden"] >= 1,
                what="pods synced, nodes forbidden")
    assert st["state"] == "stale"
    assert "nodes is forbidden" in p.status()["last_error"]
    assert p.lookup("10.244.14.1")["pod"] == "a"
    api.forbid("nodes", False)
    p.wait_synced(timeout=10)


def test_nothing_configured_is_disabled_until_reconfigured(api, client_token):
    api.add_pod("a", ip="10.244.15.1")
    p = Probe()
    try:
        st = p.status()
        assert st["state"] == "disabled" and "kube_api_url" in st["last_error"]
        assert st["requests"] == 0
        assert p.cmd("reconfigure %s %s %s" % (api.url, client_token, api.ca_file)) == \
            {"fd_unchanged": True}
        p.wait_synced()
        assert p.lookup("10.244.15.1")["pod"] == "a"
        assert p.cmd("reconfigure")["fd_unchanged"]
        assert p.status()["state"] == "disabled"
    finally:
        rc, err = p.stop()
    assert rc == 0, err


def test_reconfigure_to_another_server(api, probe_factory, client_token, tmp_path):
    from fake_kube_api import FakeKubeAPI
    api.add_pod("old", ip="10.244.16.1")
    p = probe_factory("--grace-s", "60")
    p.wait_synced()
    with FakeKubeAPI(directory=str(tmp_path / "other"), token="token-9") as other:
        other.add_pod("new", ip="10.244.16.2")
        token = tmp_path / "other-token"
        token.write_text("token-9")
        assert p.cmd("reconfigure %s %s %s" % (other.url, token, other.ca_file))["fd_unchanged"]
        st = p.wait(lambda s: s["state"] == "synced" and s["pods_known"] == 1
                    and p.lookup("10.244.16.2") is not None, what="synced with the other server")
        assert p.pods()["old"]["deleted"] is not None  # not listed by the new server
        assert other.count("pods", "list") == 1
        n = api.count()
        time.sleep(0.5)
        assert api.count() == n  # nothing more goes to the old one
