"""The container image (issue 22): deploy/Dockerfile built here and run the
way deploy/daemonset.yaml runs it.

tests/lib/image.sh builds the Dockerfile with buildah on a local Debian 12
base made by mmdebstrap (no registry here). The image then runs with
`buildah run --isolation chroot` inside the node namespace (where cni0 is,
as a DaemonSet pod on the host network would be), each container of the
DaemonSet as `kubectl kustomize deploy/` renders it: the image's
ENTRYPOINT with the container's args, its environment (ConfigMap keys, the
Secret's password, the node name), its volumes (the ConfigMap's
postgresql.conf and init script, the node-local data directory, /dev/shm),
its user, added capabilities, seccomp profile and privilege escalation
setting. One extra mount is the test's own window: a host directory as
/run/postgresql, for the server's Unix socket.

`podman run` does not work on this machine (RLIMIT_NOFILE without
CAP_SYS_RESOURCE, cgroups in hybrid mode); chroot isolation makes no PID or
network namespace, so the container's processes are visible here under
their own pids and share the node namespace."""

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import (
    IFACE, LIB, NS, REPO, Cluster, check_span_common, node_ns, now_utc, pod_ns, run,
    spans_by_connection, wait_for, wait_spans_for_port,
)

IMAGE_SH = LIB / "image.sh"
DEPLOY = REPO / "deploy"
CONTROL = REPO / "ebpf_capture.control"
PG_BIN = "/usr/lib/postgresql/15/bin/postgres"
CAPS = {"CAP_BPF": 39, "CAP_NET_RAW": 13, "CAP_NET_ADMIN": 12, "CAP_PERFMON": 38}
# Linux's capabilities, 0 to 40
ALL_CAPS = [f"CAP_{c}" for c in (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
    "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER "
    "SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE "
    "SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP "
    "MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF "
    "CHECKPOINT_RESTORE").split()]
NODE_NAME = "image-test-node"
# where the test's own mounts go in a container
OUT_DIR = "/.ebpfc-test-out"
NODE_ADDR = "10.213.0.1"  # cni0's address in the node namespace
START_TIMEOUT = 120


def extension_version():
    m = re.search(r"^default_version\s*=\s*'([^']+)'", CONTROL.read_text(), re.M)
    assert m, CONTROL.read_text()
    return m.group(1)


def buildah(*args, check=True, timeout=300):
    return run(["bash", str(IMAGE_SH), "buildah", *map(str, args)], check=check,
               timeout=timeout)


def report(request, line):
    """A line in the test run's output, passed or not (timings)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\ntest_15_image: {line}", flush=True)


# ----------------------------------------------------------------------------
# the image


class Image:
    def __init__(self, name, facts):
        self.name = name
        self.facts = facts
        self.ref = f"localhost/{name}"
        self._n = 0
        self.containers = []
        info = buildah("inspect", "--type", "image", self.ref).stdout
        self.config = json.loads(info)["OCIv1"]["config"]

    def container(self, *from_opts):
        """A new working container of the image (buildah from)."""
        self._n += 1
        name = f"ebpfc-image-test-{os.getpid()}-{self._n}"
        buildah("from", "--pull-never", "--name", name, *from_opts, self.ref)
        self.containers.append(name)
        return name

    def run_in(self, ctr, *cmd, user="root", check=True, timeout=120):
        """cmd in the container; its output through files in a mounted
        directory (under load, buildah run's chroot isolation was seen to
        lose the output of a command that exits at once)."""
        with tempfile.TemporaryDirectory(prefix="ebpfc-image-out-", dir="/var/tmp") as out:
            os.chmod(out, 0o777)
            res = buildah("run", "--isolation", "chroot", "--user", user, "-v", f"{out}:{OUT_DIR}",
                          ctr, "--", "sh", "-c", f'exec "$@" >{OUT_DIR}/stdout 2>{OUT_DIR}/stderr',
                          "sh", *cmd, check=False, timeout=timeout)
            res.stdout = Path(out, "stdout").read_text(errors="replace")
            res.stderr = Path(out, "stderr").read_text(errors="replace") + res.stderr
        if check and res.returncode != 0:
            raise AssertionError(f"{cmd} in the image failed ({res.returncode}):\n"
                                 f"{res.stdout}\n{res.stderr}")
        return res

    def remove_containers(self):
        for name in self.containers:
            buildah("rm", name, check=False)
        self.containers.clear()


@pytest.fixture(scope="module")
def image(request):
    if shutil.which("buildah") is None or shutil.which("mmdebstrap") is None:
        pytest.skip("buildah or mmdebstrap is not installed (tests/install-deps.sh installs both)")
    # tests/run.sh owns the cache for its whole run (removed at its start and
    # end); on its own this test makes one and removes it afterwards.
    own_cache = "EBPFC_IMAGE_CACHE" not in os.environ
    if own_cache:
        os.environ["EBPFC_IMAGE_CACHE"] = tempfile.mkdtemp(prefix="ebpfc-image-",
                                                           dir="/var/tmp")
    try:
        probe = buildah("info", check=False, timeout=120)
        if probe.returncode != 0:
            pytest.skip(f"buildah cannot run on this machine:\n{probe.stderr[-2000:]}")
        name = f"ebpf-capture:{extension_version()}"
        res = run(["bash", str(IMAGE_SH), "build", name], check=False, timeout=1800)
        assert res.returncode == 0, f"image build failed:\n{res.stderr[-6000:]}"
        facts = dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)
        assert facts.get("image") == name, res.stdout
        report(request, f"base {facts['base-seconds']} s, buildah bud {facts['build-seconds']} s, "
                        f"{name} {int(facts['size-bytes']) / 1e6:.0f} MB (layers uncompressed)")
        img = Image(name, facts)
        try:
            yield img
        finally:
            img.remove_containers()
    finally:
        if own_cache:
            run(["bash", str(IMAGE_SH), "clean"], check=False, timeout=300)
            os.environ.pop("EBPFC_IMAGE_CACHE", None)


@pytest.fixture(scope="module")
def deploy_objects():
    res = run(["kubectl", "kustomize", str(DEPLOY)], timeout=120)
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def one(objects, kind):
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


@pytest.fixture
def inspect_ctr(image):
    return image.container()


# ----------------------------------------------------------------------------
# what the image holds


def test_image_config(image, deploy_objects, inspect_ctr):
    cfg = image.config
    assert cfg.get("User") == "postgres", cfg
    assert cfg.get("Entrypoint") == ["ebpf-capture-entrypoint"], cfg
    assert cfg.get("Cmd") == ["postgres"], cfg
    assert cfg.get("StopSignal") == "SIGINT", cfg
    # the capabilities stayed on the binary through the build and the commit
    out = image.run_in(inspect_ctr, "getcap", PG_BIN).stdout.strip()
    m = re.fullmatch(re.escape(PG_BIN) + r"\s+(\S+)=ep", out)
    assert m, out
    assert set(m.group(1).upper().split(",")) == set(CAPS), out
    # the DaemonSet's runAsUser/runAsGroup are the image's postgres user
    uid = int(image.run_in(inspect_ctr, "id", "-u", "postgres").stdout)
    gid = int(image.run_in(inspect_ctr, "id", "-g", "postgres").stdout)
    ds = one(deploy_objects, "DaemonSet")
    (main,) = ds["spec"]["template"]["spec"]["containers"]
    sc = main["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"]) == (uid, gid), (sc, uid, gid)
    assert sc.get("runAsNonRoot") is True, sc
    # the extension as this repository builds it
    files = image.run_in(inspect_ctr, "ls", "/usr/share/postgresql/15/extension",
                         "/usr/lib/postgresql/15/lib").stdout.split()
    for f in ("ebpf_capture.so", "ebpf_capture.control", "ebpf_capture--0.1.sql",
              "ebpf_capture--0.1--0.2.sql"):
        assert f in files, files
    control = image.run_in(inspect_ctr, "cat",
                           "/usr/share/postgresql/15/extension/ebpf_capture.control").stdout
    assert control == CONTROL.read_text(), control


def test_runtime_has_no_compiler_or_headers(image, inspect_ctr):
    script = r"""
for c in gcc cc c++ g++ cpp clang clang-14 clang++ ld as make bpftool; do
    command -v "$c" && echo "found: $c"
done
ls /usr/lib/gcc/*/*/cc1 /usr/lib/gcc/*/*/cc1plus 2>/dev/null
ls -d /usr/include/postgresql/15/server 2>/dev/null
dpkg-query -W -f '${Package} ${db:Status-Abbrev}\n' | awk '$2 ~ /^ii/ { print $1 }' |
    grep -E '^((gcc|g\+\+|cpp|clang|llvm)(-[0-9]+)?|llvm-[0-9]+-dev|libclang.*|binutils.*|.*-dev|make)$' || true
echo checked
"""
    out = image.run_in(inspect_ctr, "bash", "-c", script).stdout
    assert out.strip() == "checked", f"the runtime image holds build tools:\n{out}"
    # and the server is Debian's own PostgreSQL 15
    pkgs = image.run_in(inspect_ctr, "dpkg-query", "-W", "-f", "${Package} ${Version}\n",
                        "postgresql-15").stdout
    assert re.match(r"postgresql-15 15\.\d+-0\+deb12u\d+", pkgs), pkgs


def test_kustomization_deploys_this_image(image, deploy_objects):
    name, tag = image.name.split(":")
    ds = one(deploy_objects, "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    images = {c["image"] for c in spec["containers"] + spec.get("initContainers", [])}
    assert images == {image.name}, (images, image.name)
    assert tag == extension_version()


# ----------------------------------------------------------------------------
# the DaemonSet's pod, run from the image


class Pod:
    """The DaemonSet's pod template, its containers run with buildah."""

    def __init__(self, image, objects, root, password):
        self.image = image
        self.ds = one(objects, "DaemonSet")
        self.cm = one(objects, "ConfigMap")
        self.spec = self.ds["spec"]["template"]["spec"]
        self.root = Path(root)
        self.password = password
        self.volumes = {}
        for vol in self.spec["volumes"]:
            path = self.root / "volumes" / vol["name"]
            path.mkdir(parents=True)
            if "hostPath" in vol:
                path.chmod(0o755)  # as the kubelet's DirectoryOrCreate
            elif "emptyDir" in vol:
                path.chmod(0o1777)
            elif "configMap" in vol:
                src = vol["configMap"]
                assert src["name"] == self.cm["metadata"]["name"], src
                mode = src.get("defaultMode", 0o644)
                for item in src["items"]:
                    f = path / item["path"]
                    f.write_text(self.cm["data"][item["key"]])
                    f.chmod(mode)
            else:
                raise AssertionError(f"volume kind not handled: {vol}")
            self.volumes[vol["name"]] = path
        self.socket_dir = self.root / "socket"
        self.socket_dir.mkdir()
        self.procs = []

    def volume(self, name):
        return self.volumes[name]

    def data_mount(self):
        (main,) = self.spec["containers"]
        env = self.env(main)
        mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
        for name, mpath in mounts.items():
            if env["PGDATA"].startswith(mpath.rstrip("/") + "/"):
                return self.volumes[name] / os.path.relpath(env["PGDATA"], mpath)
        raise AssertionError(f"PGDATA {env['PGDATA']} is on no volume: {mounts}")

    def env(self, ctr, drop=()):
        out = {}
        for e in ctr.get("env", []):
            if e["name"] in drop:
                continue
            if "value" in e:
                out[e["name"]] = e["value"]
                continue
            ref = e["valueFrom"]
            if "configMapKeyRef" in ref:
                out[e["name"]] = self.cm["data"][ref["configMapKeyRef"]["key"]]
            elif "secretKeyRef" in ref:
                assert ref["secretKeyRef"]["name"] == "ebpf-capture-postgres", ref
                out[e["name"]] = self.password
            elif ref.get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
                out[e["name"]] = NODE_NAME
            else:
                raise AssertionError(f"env source not handled: {e}")
        return out

    def from_opts(self, ctr):
        sc = ctr.get("securityContext", {})
        opts = []
        if sc.get("seccompProfile", {}).get("type") == "Unconfined":
            opts += ["--security-opt", "seccomp=unconfined"]
        return opts

    def run_args(self, ctr, init_dir=None, env_drop=()):
        sc = ctr.get("securityContext", {})
        args = ["--isolation", "chroot"]
        if "runAsUser" in sc:
            args += ["--user", f"{sc['runAsUser']}:{sc.get('runAsGroup', sc['runAsUser'])}"]
        caps = sc.get("capabilities", {})
        add = ["CAP_" + c for c in caps.get("add", [])]
        drop = ["CAP_" + c for c in caps.get("drop", [])]
        if "CAP_ALL" in drop:
            # buildah's "--cap-drop all" would win over --cap-add
            drop = ALL_CAPS
        drop = [c for c in drop if c not in add]
        if drop:
            args += ["--cap-drop", ",".join(drop)]
        if add:
            args += ["--cap-add", ",".join(add)]
        for k, v in self.env(ctr, env_drop).items():
            args += ["-e", f"{k}={v}"]
        for m in ctr.get("volumeMounts", []):
            host = self.volumes[m["name"]]
            if init_dir is not None and m["mountPath"] == "/docker-entrypoint-initdb.d":
                host = init_dir
            args += ["-v", f"{host}:{m['mountPath']}" + (":ro" if m.get("readOnly") else "")]
        cmd = ctr.get("command") or self.image.config["Entrypoint"]
        cmd = cmd + (ctr.get("args") or ([] if ctr.get("command") else self.image.config["Cmd"]))
        if sc.get("allowPrivilegeEscalation") is False:
            # what the runtime sets then (buildah has no option for it)
            cmd = ["setpriv", "--no-new-privs", "--"] + cmd
        return args, cmd

    def run_init_containers(self):
        for ctr in self.spec.get("initContainers", []):
            name = self.image.container(*self.from_opts(ctr))
            args, cmd = self.run_args(ctr)
            res = buildah("run", *args, name, "--", *cmd, check=False)
            assert res.returncode == 0, f"init container {ctr['name']}: {res.stdout}{res.stderr}"

    def main(self):
        (main,) = self.spec["containers"]
        return main

    def start(self, name, init_dir=None, env_drop=(), user=None):
        """Starts the main container in the node namespace; returns a handle.
        Its output goes to ROOT/NAME/log, buildah's own to ROOT/NAME/buildah.
        user: instead of the container's runAsUser:runAsGroup."""
        main = self.main()
        ctr = self.image.container(*self.from_opts(main))
        args, cmd = self.run_args(main, init_dir, env_drop)
        if user is not None:
            args[args.index("--user") + 1] = user
        uid = main["securityContext"]["runAsUser"]
        os.chown(self.socket_dir, uid, main["securityContext"]["runAsGroup"])
        self.socket_dir.chmod(0o2775)
        args += ["-v", f"{self.socket_dir}:/run/postgresql"]
        # The container's output straight into a file (see Image.run_in).
        outdir = self.root / name
        outdir.mkdir(mode=0o755)
        log = outdir / "log"
        log.touch()
        log.chmod(0o666)
        args += ["-v", f"{outdir}:{OUT_DIR}"]
        cmd = ["sh", "-c", f'exec "$@" >>{OUT_DIR}/log 2>&1', "sh", *cmd]
        with open(outdir / "buildah", "ab") as fh:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", node_ns(), "bash", str(IMAGE_SH), "buildah", "run",
                 *args, ctr, "--", *cmd],
                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        handle = Running(self, proc, log, outdir / "buildah")
        self.procs.append(handle)
        return handle

    def cleanup(self):
        for h in self.procs:
            h.kill()


class Running:
    def __init__(self, pod, proc, log, buildah_log):
        self.pod = pod
        self.proc = proc
        self.log = log
        self.buildah_log = buildah_log
        self.db = Cluster(pod.socket_dir, 5432)
        self.db.log = log

    def log_text(self):
        return self.log.read_text(errors="replace")

    def exit_code(self, timeout=60):
        rc = self.proc.wait(timeout)
        if rc != 0:
            print(f"buildah run ended with {rc}:\n{self.buildah_log.read_text(errors='replace')}")
        return rc

    def postmaster_pid(self):
        pidfile = self.pod.data_mount() / "postmaster.pid"
        return int(pidfile.read_text().split()[0])

    def wait_capture(self, timeout=START_TIMEOUT):
        """Waits for the capture on cni0 to run; fails at once when the
        container exits or the capture fails (the launcher would retry)."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            problem = None
            failed = re.search(r'capture on "cni0" failed: [^\n]*', self.log_text())
            if self.proc.poll() is not None:
                problem = f"the container exited ({self.proc.returncode})"
            elif failed:
                problem = failed.group(0)
            else:
                try:
                    last = self.db.status(IFACE)
                    if last and last["state"] == "running":
                        return last
                except Exception as exc:  # noqa: BLE001 - the server is starting
                    last = exc
                if time.monotonic() > deadline:
                    problem = f"no running capture on cni0 after {timeout} s (last: {last!r})"
            if problem:
                raise AssertionError(f"{problem}\ncontainer log:\n{self.log_text()[-4000:]}")
            time.sleep(0.3)

    def stop(self, timeout=90):
        """The image's STOPSIGNAL to the server (PID 1 in a real container);
        returns the container's exit code."""
        sig = getattr(signal, self.pod.image.config["StopSignal"])
        os.kill(self.postmaster_pid(), sig)
        return self.exit_code(timeout)

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.postmaster_pid(), signal.SIGQUIT)
                self.proc.wait(30)
            except Exception:  # noqa: BLE001 - last resort below
                self.proc.kill()
                self.proc.wait(30)


@pytest.fixture
def pod(image, deploy_objects, topology):
    # run.sh removes what a killed run of the same EBPFC_NS left there
    root = tempfile.mkdtemp(prefix=f"ebpfc-image-pod-{NS}-", dir="/var/tmp")
    p = Pod(image, deploy_objects, root, password=secrets.token_urlsafe(18))
    try:
        yield p
    finally:
        p.cleanup()
        image.remove_containers()
        shutil.rmtree(root, ignore_errors=True)


def proc_status(pid):
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        fields[k] = v.split()
    return fields


def check_runs_as_postgres_with_caps(pid, uid, gid):
    st = proc_status(pid)
    assert [int(x) for x in st["Uid"]] == [uid] * 4, (pid, st["Uid"])
    assert [int(x) for x in st["Gid"]] == [gid] * 4, (pid, st["Gid"])
    eff = int(st["CapEff"][0], 16)
    want = sum(1 << bit for bit in CAPS.values())
    assert eff == want, f"pid {pid}: CapEff {eff:#x}, expected exactly {want:#x} (the file caps)"


def connections_spanned(db, pods, plan):
    """Connections from pod1 to a server in pod2, each by exactly one span
    with its exact byte counts; returns the spans."""
    server, addr, port = pods.byte_server(2)
    t0 = now_utc()
    conns = pods.batch(1, addr, port, plan)
    assert len(conns) == len(plan), conns
    rows = wait_spans_for_port(db, port, len(plan), timeout=30)
    t1 = now_utc()
    pairs, unmade = spans_by_connection(conns, rows)
    assert not unmade, unmade
    for key, c, got in pairs:
        assert len(got) == 1, (key, got)
        span = got[0]
        check_span_common(span, t0, t1)
        assert (span["bytes_sent"], span["bytes_received"]) == (c["sent"], c["received"]), span
        assert span["attributes"].get("tcp.close_reason") == "fin", span
    return [got[0] for _, _, got in pairs]


def client_psql(password, sql):
    """psql from pod1 to the node's address, as a network client would."""
    return run(["ip", "netns", "exec", pod_ns(1), "psql", "-X", "-At", "-h", NODE_ADDR,
                "-p", "5432", "-U", "postgres", "-d", "postgres", "-c", sql],
               check=False, env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"})


def test_daemonset_pod_starts_and_captures(image, pod, pods, request):
    t_start = time.monotonic()
    pod.run_init_containers()
    pgdata = pod.data_mount()
    main = pod.main()
    uid, gid = main["securityContext"]["runAsUser"], main["securityContext"]["runAsGroup"]
    assert pgdata.is_dir() and (pgdata.stat().st_uid, pgdata.stat().st_gid) == (uid, gid)
    assert pgdata.stat().st_mode & 0o777 == 0o700

    first = pod.start("first")
    st = first.wait_capture()
    report(request, f"first start (initdb, init script, server) to a running capture: "
                    f"{time.monotonic() - t_start:.1f} s")
    log = first.log_text()
    assert "running /docker-entrypoint-initdb.d/init-capture.sh" in log, log
    assert "ebpf_capture: version 0.2 created, capture on cni0 requested" in log, log
    db = first.db
    assert db.value("SELECT extversion FROM pg_extension WHERE extname = 'ebpf_capture'") \
        == extension_version()
    # the ConfigMap's postgresql.conf is the server's
    assert db.value("SHOW config_file") == "/etc/ebpf-capture/postgresql.conf"
    assert db.value("SHOW shared_preload_libraries") == "ebpf_capture"
    assert db.value("SHOW synchronous_commit") == "off"
    assert db.value("SHOW data_directory") == pod.env(main)["PGDATA"]

    # the server and the capture's worker: the postgres user, exactly the
    # four capabilities, from the binary's file capabilities
    check_runs_as_postgres_with_caps(first.postmaster_pid(), uid, gid)
    check_runs_as_postgres_with_caps(st["pid"], uid, gid)

    connections_spanned(db, pods, [[100, 2000], None, [70_000, 5], [1, 1]])

    # network clients: the node's address, the Secret's password
    ok = client_psql(pod.password, "SELECT current_user")
    assert ok.returncode == 0 and ok.stdout.strip() == "postgres", ok.stderr
    bad = client_psql(pod.password + "x", "SELECT 1")
    assert bad.returncode != 0 and "password authentication failed" in bad.stderr, bad

    assert (pgdata / "ebpf_capture.version").read_text().strip() == extension_version()
    assert first.stop() == 0, first.log_text()[-3000:]

    # A restart: no init step; the launcher resumes the capture by itself.
    second = pod.start("second")
    second.wait_capture()
    log2 = second.log_text()
    assert "for the init scripts" not in log2, log2
    assert "initialising" not in log2, log2
    connections_spanned(second.db, pods, [[10, 20]])
    assert second.stop() == 0, second.log_text()[-3000:]


def test_upgrade_from_0_1(image, pod, pods, tmp_path):
    """A node whose data directory has ebpf_capture 0.1 (from the image
    before this one, which recorded nothing in the data directory), where
    this image's library waits for ALTER EXTENSION ... UPDATE: the image's
    init step updates it to the image's version and the capture runs."""
    pod.run_init_containers()
    old_init = tmp_path / "old-init"
    old_init.mkdir()
    script = old_init / "old.sh"
    script.write_text("psql -X -v ON_ERROR_STOP=1 -d postgres "
                      "-c \"CREATE EXTENSION ebpf_capture VERSION '0.1'\" "
                      "-c \"SELECT capture_start('cni0')\"\n")
    script.chmod(0o755)
    old_init.chmod(0o755)
    old = pod.start("old", init_dir=old_init)
    # the library refuses to capture into 0.1's objects
    st = wait_for(lambda: (s := old.db.status(IFACE)) and "ALTER EXTENSION ebpf_capture UPDATE"
                  in (s["last_error"] or "") and s, timeout=START_TIMEOUT,
                  desc="the capture waiting for ALTER EXTENSION ... UPDATE")
    assert st["state"] != "running", st
    assert old.db.value("SELECT extversion FROM pg_extension WHERE extname = 'ebpf_capture'") \
        == "0.1"
    assert old.stop() == 0
    (pod.data_mount() / "ebpf_capture.version").unlink()

    new = pod.start("new")
    new.wait_capture()
    log = new.log_text()
    assert f"ebpf_capture: updated from 0.1 to {extension_version()}" in log, log
    assert new.db.value("SELECT extversion FROM pg_extension WHERE extname = 'ebpf_capture'") \
        == extension_version()
    assert new.db.sql("SELECT interface, enabled FROM captures") == \
        [{"interface": "cni0", "enabled": True}]
    assert (pod.data_mount() / "ebpf_capture.version").read_text().strip() == \
        extension_version()
    connections_spanned(new.db, pods, [[5, 5]])
    assert new.stop() == 0


def test_entrypoint_refuses_clearly(image, pod):
    """Without the Secret's password, or without the init container that
    gives the data directory to postgres, the container stops at once and
    says why."""
    no_data = pod.start("no-data")
    assert no_data.exit_code() == 1
    assert "is not writable by postgres" in no_data.log_text(), no_data.log_text()
    assert "prepare-data" in no_data.log_text()

    pod.run_init_containers()
    no_pw = pod.start("no-password", env_drop=("POSTGRES_PASSWORD",))
    assert no_pw.exit_code() == 1
    assert "POSTGRES_PASSWORD is not set" in no_pw.log_text(), no_pw.log_text()
    assert not (pod.data_mount() / "PG_VERSION").exists()


def test_started_as_root_runs_postgres(image, pod, pods):
    """The image started as root (docker run --user root; no init container)
    prepares the data directory itself and runs the server as postgres, with
    the binary's capabilities and no others."""
    main = pod.main()
    uid, gid = main["securityContext"]["runAsUser"], main["securityContext"]["runAsGroup"]
    srv = pod.start("as-root", user="0:0")
    st = srv.wait_capture()
    assert "is ready for the postgres user" in srv.log_text(), srv.log_text()
    pgdata = pod.data_mount()
    assert (pgdata.stat().st_uid, pgdata.stat().st_gid) == (uid, gid)
    check_runs_as_postgres_with_caps(srv.postmaster_pid(), uid, gid)
    check_runs_as_postgres_with_caps(st["pid"], uid, gid)
    connections_spanned(srv.db, pods, [[3, 4]])
    assert srv.stop() == 0
