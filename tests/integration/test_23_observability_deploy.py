"""What deploy/ provisions for Grafana and Prometheus, checked against the
real thing: the data source's sslmode against a PostgreSQL server started
with the deployed postgresql.conf's TLS settings (and the DaemonSet's
mounts), and every postgres_exporter query of deploy/prometheus/queries.yaml
run on captured traffic, its columns read the way postgres_exporter reads
them."""

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
import pytest
import yaml

from conftest import MAIN_PORT, PG_BINDIR, REPO, Pods, in_pod, pod_ip4, wait_for
from httpenv import Nginx

DEPLOY = REPO / "deploy"
QUERIES = DEPLOY / "prometheus" / "queries.yaml"
GRANTS = DEPLOY / "prometheus" / "grants.sql"


def deployed_conf():
    """The ConfigMap's postgresql.conf as settings (name -> value)."""
    cm = yaml.safe_load((DEPLOY / "configmap.yaml").read_text())
    out = {}
    for line in cm["data"]["postgresql.conf"].splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^([\w.]+)\s*=\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip().strip("'")
    return out


def datasource_sslmode():
    ds = yaml.safe_load((DEPLOY / "grafana" / "datasource.yaml").read_text())
    return ds["datasources"][0]["jsonData"]["sslmode"]


def test_tls_of_the_deployment_is_what_the_datasource_asks_for(tmp_path):
    """Grafana's data source says sslmode require: the deployed server must
    speak TLS. A server started with the ConfigMap's TLS settings (the
    Secret's files where the DaemonSet mounts them, made the way
    deploy/README.md says) accepts the data source's sslmode, and the
    connection is encrypted; the DaemonSet mounts the Secret where the
    settings look."""
    conf = deployed_conf()
    sslmode = datasource_sslmode()
    assert sslmode in ("require", "verify-ca", "verify-full", "disable", "prefer"), sslmode
    if sslmode != "disable":
        assert conf.get("ssl") == "on", "the data source needs TLS and the server has none"

    # the DaemonSet mounts the Secret's two keys where the settings look
    ds = yaml.safe_load((DEPLOY / "daemonset.yaml").read_text())
    pod = ds["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    for setting, key in (("ssl_cert_file", "tls.crt"), ("ssl_key_file", "tls.key")):
        path = Path(conf[setting])
        vol = next(n for n, p in mounts.items() if p == str(path.parent))
        assert vols[vol]["secret"]["secretName"] == "ebpf-capture-tls", vols[vol]
        assert key in [i["path"] for i in vols[vol]["secret"]["items"]], vols[vol]
        assert path.name == key
    assert vols[vol]["secret"]["defaultMode"] == 0o640 and pod["securityContext"]["fsGroup"]

    # the certificate, as deploy/README.md makes it
    d = Path(tempfile.mkdtemp(prefix="ebpfc-tls-"))
    os.chmod(d, 0o755)
    try:
        tls = d / "tls"
        tls.mkdir()
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=ebpf-capture", "-keyout", str(tls / "tls.key"),
                        "-out", str(tls / "tls.crt")], check=True, capture_output=True)
        shutil.chown(tls / "tls.key", "postgres", "postgres")
        os.chmod(tls / "tls.key", 0o600)
        os.chmod(tls, 0o755)
        data = d / "data"
        data.mkdir()
        shutil.chown(data, "postgres", "postgres")
        shutil.chown(d, "postgres", "postgres")  # the server's socket goes here
        subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BINDIR}/initdb", "-D", str(d / "data"),
                        "-A", "trust"], check=True, capture_output=True)
        port = MAIN_PORT - 7
        options = [f"-c port={port}", "-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={d}"]
        for name in ("ssl", "ssl_min_protocol_version"):
            options.append(f"-c {name}={conf[name]}")
        options.append(f"-c ssl_cert_file={tls / 'tls.crt'}")
        options.append(f"-c ssl_key_file={tls / 'tls.key'}")
        subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BINDIR}/pg_ctl", "-D", str(data),
                        "-o", " ".join(options), "-l", str(d / "log"), "-w", "start"],
                       check=True, capture_output=True)
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                                    sslmode=sslmode, connect_timeout=10)
            with conn.cursor() as cur:
                cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                ssl, version = cur.fetchone()
            conn.close()
            assert ssl and version in ("TLSv1.2", "TLSv1.3"), (ssl, version)
        finally:
            subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BINDIR}/pg_ctl", "-D", str(data),
                            "-m", "immediate", "stop"], capture_output=True)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------------------------
# postgres_exporter's queries

PROM_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def exporter_metrics(rows, cols, metrics, key):
    """The samples postgres_exporter makes of a query's rows (its rules:
    <key>_<column>; LABEL columns are labels; HISTOGRAM <c> holds the le
    bounds, <c>_bucket the cumulative counts, <c>_sum and <c>_count),
    checking every column as it would. Returns {(name, labels): value}."""
    usage = {}
    for m in metrics:
        (col, spec), = m.items()
        usage[col] = spec["usage"]
        assert spec.get("description"), col
    hist = [c for c, u in usage.items() if u == "HISTOGRAM"]
    for c in hist:
        for part in ("_bucket", "_sum", "_count"):
            assert c + part in cols, f"{key}: histogram {c} without its {c + part} column"
    known = set(usage) | {c + p for c in hist for p in ("_bucket", "_sum", "_count")}
    assert set(cols) == known, f"{key}: columns {cols}, metrics {sorted(known)}"
    out = {}
    for row in rows:
        r = dict(zip(cols, row))
        labels = tuple((c, str(r[c])) for c, u in usage.items() if u == "LABEL")
        for c, u in usage.items():
            name = f"{key}_{c}"
            assert PROM_NAME.match(name), name
            if u == "LABEL":
                assert isinstance(r[c], str), (c, r[c])
            elif u in ("COUNTER", "GAUGE"):
                assert isinstance(r[c], (int, float)) or hasattr(r[c], "as_tuple"), (c, r[c])
                assert (u == "COUNTER") == name.endswith("_total"), f"{name}: a {u}"
                out[(name, labels)] = float(r[c])
            elif u == "HISTOGRAM":
                bounds, counts = r[c], r[c + "_bucket"]
                assert all(isinstance(b, float) for b in bounds) and bounds == sorted(bounds), bounds
                assert len(counts) == len(bounds), (bounds, counts)
                assert counts == sorted(counts) and counts[-1] <= r[c + "_count"], counts
                assert name.endswith("_seconds"), name
                out[(name + "_count", labels)] = float(r[c + "_count"])
                out[(name + "_sum", labels)] = float(r[c + "_sum"])
                for b, n in zip(bounds, counts):
                    out[(name + "_bucket", labels + (("le", repr(b)),))] = float(n)
    return out


def test_postgres_exporter_queries_run_on_captured_traffic(cluster, capture, pods):
    """Every query of deploy/prometheus/queries.yaml, run as the role
    deploy/prometheus/grants.sql makes, on the rollup of real traffic: 12
    requests through one edge (3 of them 500s) come out as the edge's
    counters and latency histogram."""
    port = Pods.new_port()
    backend = Nginx(2, port, "backend")
    try:
        for i in range(12):
            path = "/e500" if i % 4 == 0 else "/ok"
            subprocess.run(in_pod(1, "curl", "-s", "-o", "/dev/null",
                                  f"http://{pod_ip4(2)}:{port}{path}"), check=True, timeout=30)
        # the edge as the rollup names it (pods named by an earlier test's
        # fake API may still be named)
        ends = wait_for(lambda: cluster.sql(
            "SELECT DISTINCT _service_map_node_id(src_namespace, src_workload, src_pod, src_node, "
            "src_addr) AS src, _service_map_node_id(dst_namespace, dst_workload, dst_pod, "
            "dst_node, dst_addr) AS dst FROM spans WHERE protocol = 'http' AND dst_port = %s",
            (port,)), 20, desc="the requests' spans")
        assert len(ends) == 1, ends
        src, dst = ends[0]["src"], ends[0]["dst"]
        wait_for(lambda: cluster.value(
            "SELECT coalesce(sum(spans), 0) FROM service_map_minutes WHERE src_id = %s AND "
            "dst_id = %s AND bucket > 0 AND minute >= date_trunc('hour', now())",
            (src, dst)) >= 12, 20, desc="12 requests in the rollup")
    finally:
        backend.stop()
    res = cluster.script("psql", cluster.dir, "-q", "-f", str(GRANTS), check=False)
    assert res.returncode == 0, res.stderr
    queries = yaml.safe_load(QUERIES.read_text())
    assert set(queries) == {"ebpf_capture_edge", "ebpf_capture_capture"}, set(queries)
    conn = cluster.connect(user="ebpf_capture_exporter")
    samples = {}
    try:
        for key, q in queries.items():
            assert key.startswith("ebpf_capture_"), key
            with conn.cursor() as cur:
                cur.execute(q["query"])
                cols = [d[0] for d in cur.description]
                rows = cur.fetchall()
            assert rows, key
            samples.update(exporter_metrics(rows, cols, q["metrics"], key))
    finally:
        conn.close()
        cluster.sql("DROP OWNED BY ebpf_capture_exporter")
        cluster.sql("DROP ROLE ebpf_capture_exporter")
    edge = (("source", src), ("target", dst))
    # the hour may have turned between the requests and the query
    if time.gmtime().tm_min == 0:
        pytest.skip("a UTC hour began meanwhile: the counters started again")
    assert samples[("ebpf_capture_edge_http_requests_total", edge)] >= 12, samples
    assert samples[("ebpf_capture_edge_http_request_errors_total", edge)] >= 3, samples
    assert samples[("ebpf_capture_edge_http_request_duration_seconds_count", edge)] >= 12
    inf = samples[("ebpf_capture_edge_http_request_duration_seconds_bucket", edge + (("le", "10.0"),))]
    assert inf == samples[("ebpf_capture_edge_http_request_duration_seconds_count", edge)]
    assert samples[("ebpf_capture_edge_tcp_connections_total", edge)] >= 12
    up = [v for (n, labels), v in samples.items() if n == "ebpf_capture_capture_up"
          and ("interface", "cni0") in labels]
    assert up == [1.0], samples
