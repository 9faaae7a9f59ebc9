"""deploy/: `kubectl kustomize deploy/` builds, and what it builds is what
the capture needs (issue 5): a DaemonSet on the host network with the
capabilities added and privilege escalation allowed (file capabilities), the
data directory on a node-local volume, the node name from the downward API,
the ConfigMap with postgresql.conf and the init script, and a ClusterRole
that can read pods, replicasets and nodes. No cluster is needed. The
Dockerfile's text, packages and build stage are checked here without a
container engine; test_15_image.py builds the image and runs it."""

import re
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
    # the server runs as the image's postgres user, never as root, and may
    # call bpf() (a runtime's default seccomp profile refuses it)
    assert sc.get("runAsUser") == 999 and sc.get("runAsGroup") == 999, sc
    assert sc.get("runAsNonRoot") is True, sc
    assert sc.get("seccompProfile") == {"type": "Unconfined"}, sc
    # the init container that gives the node's data directory to postgres
    (init,) = spec["initContainers"]
    assert init["image"] == ctr["image"], (init, ctr)
    assert init["args"] == ["prepare-data"], init
    assert {"name": "PGDATA", "value": pgdata} in init["env"], init
    assert {m["name"]: m["mountPath"] for m in init["volumeMounts"]} == {data[0]: mounts[data[0]]}
    isc = init["securityContext"]
    assert isc["capabilities"]["drop"] == ["ALL"], isc
    assert set(isc["capabilities"]["add"]) <= {"CHOWN", "FOWNER", "DAC_OVERRIDE"}, isc
    assert isc.get("allowPrivilegeEscalation") is False, isc


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
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    # Debian's own PostgreSQL 15 on debian:bookworm-slim, the base a build
    # argument (tests/lib/image.sh gives a local one)
    assert lines[0] == "ARG BASE_IMAGE=debian:bookworm-slim", lines[0]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms == ["FROM ${BASE_IMAGE} AS build", "FROM ${BASE_IMAGE}"], froms
    assert "setcap cap_bpf,cap_net_raw,cap_net_admin,cap_perfmon+ep /usr/lib/postgresql/15/bin/postgres" in text
    assert "USER postgres" in lines, lines
    assert 'ENTRYPOINT ["ebpf-capture-entrypoint"]' in lines, lines
    assert "COPY deploy/entrypoint.sh /usr/local/bin/ebpf-capture-entrypoint" in lines, lines
    # every file the build copies exists
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for src in line.split()[1:-1]:
                assert (REPO / src).exists(), src


def test_entrypoint_is_valid_bash():
    res = subprocess.run(["bash", "-n", str(DEPLOY / "entrypoint.sh")], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    assert (DEPLOY / "entrypoint.sh").stat().st_mode & 0o111, "entrypoint.sh is not executable"


def extension_version():
    m = re.search(r"^default_version\s*=\s*'([^']+)'", (REPO / "ebpf_capture.control").read_text(),
                  re.M)
    assert m
    return m.group(1)


def build_tags(text):
    """The -t arguments of the docker build / buildah bud / podman build
    commands in text (lines that start with one, in a comment or not)."""
    tags = []
    for line in text.splitlines():
        if re.match(r"\s*(#\s*)?(docker build|buildah bud|podman build)\s", line):
            m = re.search(r"\s-t\s+(\S+)", line)
            assert m, f"a build command without -t: {line}"
            tags.append(m.group(1))
    return tags


def test_image_name_and_tag_agree(objects):
    """The image the documented builds produce is the one the
    kustomization deploys: name ebpf-capture, tag the extension's version
    (test_15_image.py builds it and checks the built image's version too)."""
    kust = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    (entry,) = kust["images"]
    name, tag = entry["newName"], str(entry["newTag"])
    assert tag == extension_version(), (tag, extension_version())
    assert entry["name"] == name == "ebpf-capture", entry
    ds = one(objects, "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    for ctr in spec["containers"] + spec.get("initContainers", []):
        assert ctr["image"] == f"{name}:{tag}", ctr["image"]
    for doc in ("README.md", "Dockerfile"):
        tags = build_tags((DEPLOY / doc).read_text())
        assert tags, f"deploy/{doc} shows no build command"
        for t in tags:
            assert t.rsplit("/", 1)[-1] == f"{name}:{tag}", (doc, t)
    readme = (DEPLOY / "README.md").read_text()
    for m in re.finditer(r"^(?:docker|podman|buildah) push\s+(\S+)", readme, re.M):
        assert m.group(1).rsplit("/", 1)[-1] == f"{name}:{tag}", m.group(0)
    for m in re.finditer(r"kustomize edit set image ([^\s=]+)=([^\s)`]+)", readme):
        assert m.group(1) == name and m.group(2).rsplit("/", 1)[-1] == f"{name}:{tag}", m.group(0)


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
        if cur is not None:  # global ARGs before the first FROM aside
            cur.append((instr, arg.strip()))
    return stages


def test_dockerfile_packages_exist_in_bookworm():
    """Every package the image installs is one Debian 12 (the image's base,
    bookworm) has; this machine's apt sources are bookworm's."""
    names = []
    for stage in dockerfile_stages():
        for instr, arg in stage:
            if instr == "RUN" and "apt-get install" in arg:
                for part in arg.split("apt-get install")[1:]:
                    tail = part.split("&&", 1)[0]
                    names += [w for w in tail.split() if not w.startswith("-")]
    for want in ("libbpf1", "postgresql-15", "postgresql-common", "postgresql-server-dev-15"):
        assert want in names, names
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
