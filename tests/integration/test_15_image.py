"""The container image (issue 22): deploy/Dockerfile built here and run the
way deploy/daemonset.yaml runs it.

tests/lib/image.sh builds the Dockerfile with buildah on a local Debian 12
base made by mmdebstrap (no registry here). The image then runs with
`buildah run --isolation chroot` inside the node namespace (where cni0 is,
as a DaemonSet pod on the host network would be), each container of the
DaemonSet as `kubectl kustomize deploy/` renders it: the image's
ENTRYPOINT with the container's args, its environment (ConfigMap keys, the
Secret's password, the node name), its volumes (the ConfigMap's
postgresql.conf and init script, the Secret ebpf-capture-tls with a
certificate and key the test makes, the node-local data directory,
/dev/shm), its user, the pod's fsGroup, added capabilities, seccomp profile
and privilege escalation setting.

Volumes are written as the kubelet writes them: ConfigMap and Secret items
through its atomic writer's layout (a timestamped directory, ..data and
symlinks to it) with the volume's defaultMode; then, with a pod fsGroup, every
volume but a hostPath owned by that group, files' modes ORed with 0440
(read-only volumes: ConfigMap, Secret) or 0660, directories setgid. The
kubelet gives fsGroup to every container's processes as a supplementary
group; buildah run (1.28) has no option for that, but with `--user UID`
(no group) it gives the process the supplementary groups /etc/group lists
the user in. The test adds a group fsGroup whose one member is the user the
container starts as to the working container's /etc/group: the process's
credentials are then those of the pod's container (uid, gid, supplementary
fsGroup); what the image has as its own /etc/group is not what a process
run as another user (the entrypoint's setpriv from root) finds there. One extra mount is the test's own window: a host directory as
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
import stat
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
TLS_CN = "ebpfc-image-test"
# the kubelet's modes for a pod's fsGroup (pkg/volume/volume_linux.go)
FSGROUP_RO_MASK = 0o440
FSGROUP_RW_MASK = 0o660


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


def make_tls(directory):
    """A self-signed certificate and its key, as deploy/README.md makes them
    (CN the test's own); returns {Secret key: bytes}."""
    d = Path(directory)
    d.mkdir(parents=True)
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={TLS_CN}", "-keyout", str(d / "tls.key"), "-out", str(d / "tls.crt")])
    return {"tls.crt": (d / "tls.crt").read_bytes(), "tls.key": (d / "tls.key").read_bytes()}


def atomic_write(path, files, mode):
    """files ({relative path: bytes}) in the volume directory path the way the
    kubelet's atomic writer lays out ConfigMap and Secret volumes: the data in
    a timestamped directory, ..data a symlink to it, each item a symlink
    through ..data; each file with mode, owned by root (the kubelet)."""
    ts = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + f"{os.getpid()}"
    data = path / ts
    data.mkdir()
    data.chmod(0o755)
    for rel, content in files.items():
        f = data / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(content)
        os.chown(f, 0, 0)
        f.chmod(mode)
    (path / "..data").symlink_to(ts)
    for rel in files:
        (path / rel).symlink_to(Path("..data") / rel)


def set_volume_ownership(path, fs_group, read_only):
    """The kubelet's SetVolumeOwnership: group fs_group on everything below
    path (symlinks themselves, not followed), modes ORed with the read-only
    or read-write mask, directories also setgid and searchable by the
    group; symlinks' modes are left alone."""
    mask = FSGROUP_RO_MASK if read_only else FSGROUP_RW_MASK
    for top, dirs, files in os.walk(path):
        for p in [Path(top)] + [Path(top) / n for n in dirs + files]:
            if p != Path(top) and p.is_dir() and not p.is_symlink():
                continue  # when os.walk enters it
            os.lchown(p, -1, fs_group)
            if p.is_symlink():
                continue
            m = stat.S_IMODE(p.stat().st_mode) | mask
            if p.is_dir():
                m |= stat.S_ISGID | 0o110
            p.chmod(m)


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
        self.fs_group = self.spec.get("securityContext", {}).get("fsGroup")
        # the Secret ebpf-capture-tls: a certificate and key made here
        self.tls_dir = self.root / "tls"
        self.tls = make_tls(self.tls_dir)
        self.volumes = {}
        for vol in self.spec["volumes"]:
            path = self.root / "volumes" / vol["name"]
            path.mkdir(parents=True)
            read_only = False
            # 0777: the kubelet's emptyDir, which ConfigMap and Secret
            # volumes are made in too
            path.chmod(0o777)
            if "hostPath" in vol:
                path.chmod(0o755)  # as the kubelet's DirectoryOrCreate
            elif "emptyDir" in vol:
                pass
            elif "configMap" in vol:
                src = vol["configMap"]
                assert src["name"] == self.cm["metadata"]["name"], src
                atomic_write(path, {i["path"]: self.cm["data"][i["key"]].encode()
                                    for i in src["items"]}, src.get("defaultMode", 0o644))
                read_only = True
            elif "secret" in vol:
                src = vol["secret"]
                if src["secretName"] == "ebpf-capture-tls":
                    items = src.get("items") or [{"key": k, "path": k} for k in self.tls]
                    atomic_write(path, {i["path"]: self.tls[i["key"]] for i in items},
                                 src.get("defaultMode", 0o644))
                else:
                    # a Secret this pod does without (the hub's password on a
                    # cluster with no hub): the kubelet mounts an empty volume
                    assert src.get("optional"), f"a Secret the test does not make: {src}"
                    atomic_write(path, {}, src.get("defaultMode", 0o644))
                read_only = True
            else:
                raise AssertionError(f"volume kind not handled: {vol}")
            if self.fs_group is not None and "hostPath" not in vol:
                set_volume_ownership(path, self.fs_group, read_only)
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

    def user_of(self, ctr, user=None):
        """(uid, gid) the container starts as: user ("UID:GID") or its
        runAsUser and runAsGroup (the image's user when not set)."""
        if user is not None:
            uid, gid = user.split(":")
            return int(uid), int(gid)
        sc = ctr.get("securityContext", {})
        uid = sc.get("runAsUser")
        if uid is None:
            uid = self.image.config["User"]
        return uid, sc.get("runAsGroup")

    def new_container(self, ctr, user=None):
        """A working container for the DaemonSet's container ctr; returns its
        name and the --user for buildah run. With a pod fsGroup, the
        container's /etc/group gets a group fsGroup with the starting user
        as its one member, and --user is the uid alone, so that buildah
        gives the process fsGroup as a supplementary group (the module's
        docstring): the uid's primary group, from /etc/passwd, must then be
        the container's runAsGroup."""
        name = self.image.container(*self.from_opts(ctr))
        uid, gid = self.user_of(ctr, user)
        if self.fs_group is None:
            return name, f"{uid}:{gid if gid is not None else uid}"
        entry = self.image.run_in(name, "getent", "passwd", str(uid), check=False).stdout
        assert entry.count(":") == 6, f"uid {uid} has no entry in the image's /etc/passwd: {entry}"
        login, _, _, passwd_gid = entry.split(":")[:4]
        assert gid is None or int(passwd_gid) == int(gid), \
            f"uid {uid}'s group in /etc/passwd is {passwd_gid}, the container's is {gid}"
        taken = self.image.run_in(name, "getent", "group", str(self.fs_group), check=False)
        assert taken.returncode == 2, f"fsGroup {self.fs_group} is a group of the image: {taken}"
        self.image.run_in(name, "sh", "-c", 'echo "$1" >>/etc/group', "sh",
                          f"ebpfc-test-fsgroup:x:{self.fs_group}:{login}")
        return name, str(uid)

    def run_args(self, ctr, user, init_dir=None, env_drop=()):
        sc = ctr.get("securityContext", {})
        args = ["--isolation", "chroot", "--user", user]
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
            name, user = self.new_container(ctr)
            args, cmd = self.run_args(ctr, user)
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
        ctr, buildah_user = self.new_container(main, user)
        args, cmd = self.run_args(main, buildah_user, init_dir, env_drop)
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


def check_runs_as_postgres_with_caps(pid, uid, gid, fs_group):
    st = proc_status(pid)
    assert [int(x) for x in st["Uid"]] == [uid] * 4, (pid, st["Uid"])
    assert [int(x) for x in st["Gid"]] == [gid] * 4, (pid, st["Gid"])
    # the pod's fsGroup, through which the TLS key is readable; not root's
    groups = {int(x) for x in st["Groups"]}
    assert fs_group in groups and 0 not in groups, (pid, st["Groups"], fs_group)
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


def client_psql(password, sql, **conn):
    """psql from pod1 to the node's address, as a network client would; conn:
    more connection parameters (sslmode, sslrootcert)."""
    dsn = " ".join([f"host={NODE_ADDR} port=5432 user=postgres dbname=postgres",
                    *(f"{k}={v}" for k, v in conn.items())])
    return run(["ip", "netns", "exec", pod_ns(1), "psql", "-X", "-At", "-d", dsn, "-c", sql],
               check=False, env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"})


def check_serves_tls(pod, srv):
    """What Grafana's data source (deploy/grafana/datasource.yaml) needs: the
    server speaks TLS on the node's address, with the Secret's certificate.
    The key as the container sees it is the kubelet's: root's, group
    fsGroup, mode 0640, the mode PostgreSQL accepts for a root-owned key."""
    ds = yaml.safe_load((DEPLOY / "grafana" / "datasource.yaml").read_text())
    sslmode = ds["datasources"][0]["jsonData"]["sslmode"]
    assert sslmode == "require", sslmode
    key = pod.volume("tls") / "tls.key"
    st = key.stat()
    assert key.is_symlink() and (st.st_uid, st.st_gid) == (0, pod.fs_group), st
    assert stat.S_IMODE(st.st_mode) == 0o640, oct(st.st_mode)
    sql = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    res = client_psql(pod.password, sql, sslmode=sslmode)
    assert res.returncode == 0, res.stderr
    ssl, version = res.stdout.strip().split("|")
    assert ssl == "t" and version in ("TLSv1.2", "TLSv1.3"), res.stdout
    assert srv.db.value("SHOW ssl") == "on"
    assert srv.db.value("SHOW ssl_key_file") == "/etc/ebpf-capture-tls/tls.key"
    # the certificate is the Secret's: it verifies against itself (self-signed)
    res = client_psql(pod.password, "SELECT 1", sslmode="verify-ca",
                      sslrootcert=pod.tls_dir / "tls.crt")
    assert res.returncode == 0 and res.stdout.strip() == "1", res.stderr


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
    check_runs_as_postgres_with_caps(first.postmaster_pid(), uid, gid, pod.fs_group)
    check_runs_as_postgres_with_caps(st["pid"], uid, gid, pod.fs_group)

    connections_spanned(db, pods, [[100, 2000], None, [70_000, 5], [1, 1]])

    # network clients: the node's address, the Secret's password
    ok = client_psql(pod.password, "SELECT current_user")
    assert ok.returncode == 0 and ok.stdout.strip() == "postgres", ok.stderr
    bad = client_psql(pod.password + "x", "SELECT 1")
    assert bad.returncode != 0 and "password authentication failed" in bad.stderr, bad
    check_serves_tls(pod, first)

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
    the binary's capabilities and no others, and the pod's fsGroup (the TLS
    key's group) still among its groups."""
    main = pod.main()
    uid, gid = main["securityContext"]["runAsUser"], main["securityContext"]["runAsGroup"]
    srv = pod.start("as-root", user="0:0")
    st = srv.wait_capture()
    assert "is ready for the postgres user" in srv.log_text(), srv.log_text()
    pgdata = pod.data_mount()
    assert (pgdata.stat().st_uid, pgdata.stat().st_gid) == (uid, gid)
    check_runs_as_postgres_with_caps(srv.postmaster_pid(), uid, gid, pod.fs_group)
    check_runs_as_postgres_with_caps(st["pid"], uid, gid, pod.fs_group)
    connections_spanned(srv.db, pods, [[3, 4]])
    check_serves_tls(pod, srv)
    assert srv.stop() == 0
