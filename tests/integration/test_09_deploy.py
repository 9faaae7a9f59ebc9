"""deploy/: `kubectl kustomize deploy/` builds, and what it builds is what
the capture needs (issue 5): a DaemonSet on the host network with the
capabilities added and privilege escalation allowed (file capabilities), the
data directory on a node-local volume, the node name from the downward API,
the ConfigMap with postgresql.conf and the init script, and a ClusterRole
that can read pods, replicasets and nodes. No cluster is needed."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO

DEPLOY = REPO / "deploy"
CAPS = {"BPF", "NET_RAW", "NET_ADMIN", "PERFMON"}


@pytest.fixture(scope="module")
def objects():
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl not found: tests/install-deps.sh installs kubernetes-client"
    res = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, f"kubectl kustomize deploy/ failed:\n{res.stderr}"
    docs = [d for d in yaml.safe_load_all(res.stdout) if d]
    assert docs, res.stdout
    return docs


def one(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in {[o['kind'] for o in objects]}"
    return found[0]


def test_daemonset(objects):
    ds = one(objects, "DaemonSet")
    ns = ds["metadata"].get("namespace")
    assert ns, ds["metadata"]
    spec = ds["spec"]["template"]["spec"]
    assert spec.get("hostNetwork") is True, spec
    assert spec.get("dnsPolicy") == "ClusterFirstWithHostNet", spec
    (ctr,) = [c for c in spec["containers"] if c["name"] == "postgres"]
    sc = ctr["securityContext"]
    assert CAPS <= set(sc["capabilities"]["add"]), sc
    assert sc.get("allowPrivilegeEscalation") is True, sc
    assert sc.get("privileged") is not True, sc
    env = {e["name"]: e for e in ctr["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName", env
    assert "configMapKeyRef" in env["EBPF_CAPTURE_INTERFACE"]["valueFrom"], env
    assert "config_file=/etc/ebpf-capture/postgresql.conf" in " ".join(ctr["args"]), ctr
    # the service account the ClusterRoleBinding names
    sa = one(objects, "ServiceAccount")
    assert spec["serviceAccountName"] == sa["metadata"]["name"]
    # the data directory on a node-local volume
    mounts = {m["name"]: m["mountPath"] for m in ctr["volumeMounts"]}
    vols = {v["name"]: v for v in spec["volumes"]}
    pgdata = env["PGDATA"]["value"]
    data = [n for n, p in mounts.items() if pgdata.startswith(p.rstrip("/") + "/") or pgdata == p]
    assert len(data) == 1, (mounts, pgdata)
    assert "hostPath" in vols[data[0]], vols[data[0]]
    assert mounts.get("initdb") == "/docker-entrypoint-initdb.d", mounts


def test_configmap(objects):
    cm = one(objects, "ConfigMap")
    data = cm["data"]
    conf = data["postgresql.conf"]
    settings = {}
    for line in conf.splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            k, v = line.split("=", 1)
            settings[k.strip()] = v.strip().strip("'")
    assert settings["shared_preload_libraries"] == "ebpf_capture", settings
    assert settings["ebpf_capture.database"] == "postgres", settings
    assert data["interface"] == "cni0", data
    script = data["init-capture.sh"]
    assert "CREATE EXTENSION" in script and "capture_start" in script, script
    assert "EBPF_CAPTURE_INTERFACE:-cni0" in script, script
    # the DaemonSet mounts what is here
    ds = one(objects, "DaemonSet")
    refs = [v["configMap"] for v in ds["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    assert refs and all(r["name"] == cm["metadata"]["name"] for r in refs), refs
    keys = {i["key"] for r in refs for i in r.get("items", [])}
    assert {"postgresql.conf", "init-capture.sh"} <= keys <= set(data), keys


def test_configmap_settings_exist(objects, cluster):
    """Every ebpf_capture setting the ConfigMap writes is one the extension
    defines (a misspelt one would only draw a warning in the server log)."""
    conf = one(objects, "ConfigMap")["data"]["postgresql.conf"]
    ours = {line.split("=", 1)[0].strip() for line in conf.splitlines()
            if line.strip().startswith("ebpf_capture.")}
    assert ours, conf
    defined = {r["name"] for r in cluster.sql(
        "SELECT name FROM pg_settings WHERE name LIKE 'ebpf_capture.%'")}
    assert ours <= defined, sorted(ours - defined)


def test_init_script_is_valid_bash(objects, tmp_path):
    script = one(objects, "ConfigMap")["data"]["init-capture.sh"]
    path = tmp_path / "init.sh"
    path.write_text(script)
    res = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_rbac(objects):
    role = one(objects, "ClusterRole")
    granted = {}
    for rule in role["rules"]:
        for group in rule.get("apiGroups", []):
            for res in rule.get("resources", []):
                granted.setdefault((group, res), set()).update(rule.get("verbs", []))
    for key in (("", "pods"), ("", "nodes"), ("apps", "replicasets")):
        assert granted.get(key) == {"get", "list", "watch"}, (key, granted)
    # read-only: nothing else
    assert all(v <= {"get", "list", "watch"} for v in granted.values()), granted
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    sa = one(objects, "ServiceAccount")
    assert {"kind": "ServiceAccount", "name": sa["metadata"]["name"],
            "namespace": sa["metadata"]["namespace"]} in binding["subjects"], binding


def test_dockerfile():
    text = (DEPLOY / "Dockerfile").read_text()
    assert "FROM postgres:15-bookworm" in text
    assert "setcap cap_bpf,cap_net_raw,cap_net_admin,cap_perfmon+ep /usr/lib/postgresql/15/bin/postgres" in text
    # every file the build copies exists
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for src in line.split()[1:-1]:
                assert (REPO / src).exists(), src


def dockerfile_stages():
    """The Dockerfile's stages as lists of (instruction, argument) with
    continuation lines joined."""
    stages, cur, pending = [], None, ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.rstrip()
        if not pending and (not line or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        instr, _, arg = line.strip().partition(" ")
        if instr == "FROM":
            cur = []
            stages.append(cur)
        cur.append((instr, arg.strip()))
    return stages


def test_dockerfile_packages_exist_in_bookworm():
    """Every package the image installs is one Debian 12 (the image's base,
    bookworm) has; this machine's apt sources are bookworm's. The image's
    postgresql-server-dev-15 comes from PGDG there and from Debian here."""
    names = []
    for stage in dockerfile_stages():
        for instr, arg in stage:
            if instr == "RUN" and "apt-get install" in arg:
                tail = arg.split("apt-get install", 1)[1].split("&&", 1)[0]
                names += [w for w in tail.split() if not w.startswith("-")]
    assert "libbpf1" in names and "postgresql-server-dev-15" in names, names
    res = subprocess.run(["apt-cache", "show", "--no-all-versions", *names],
                         capture_output=True, text=True, timeout=120)
    missing = [n for n in names if f"Package: {n}\n" not in res.stdout]
    assert not missing, f"not in the apt sources: {missing}\n{res.stderr}"


def test_dockerfile_build_stage_outside_docker(tmp_path):
    """The build stage's COPY and RUN make steps, run here without Docker
    (no engine and no registry on this machine): only what the Dockerfile
    copies is in the build directory, so a file the build needs but the
    image does not get fails this test."""
    build = next(s for s in dockerfile_stages() if "AS build" in s[0][1])
    src = tmp_path / "src"
    src.mkdir()
    steps = []
    for instr, arg in build:
        if instr == "COPY":
            *froms, dest = arg.split()
            for f in froms:
                target = src / dest if dest.endswith("/") and dest != "./" else src
                if (REPO / f).is_dir():
                    shutil.copytree(REPO / f, src / dest.rstrip("/"), dirs_exist_ok=True)
                else:
                    shutil.copy2(REPO / f, target)
        elif instr == "RUN" and "make" in arg:
            steps.append(arg.replace("/out", str(tmp_path / "out")))
    assert steps, build
    for cmd in steps:
        res = subprocess.run(["bash", "-c", cmd], cwd=src, capture_output=True, text=True,
                             timeout=600)
        assert res.returncode == 0, f"{cmd}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    lib = list((tmp_path / "out").rglob("ebpf_capture.so"))
    control = list((tmp_path / "out").rglob("ebpf_capture.control"))
    script = list((tmp_path / "out").rglob("ebpf_capture--0.1.sql"))
    assert lib and control and script, list((tmp_path / "out").rglob("*"))
