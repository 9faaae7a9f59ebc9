"""Overload: the worker limited to a tenth of a CPU (a cgroup v1 CPU quota on
its process) under keep-alive HTTP load it cannot keep up with. Its memory
stays bounded, every loss is counted, it keeps running, and once the limit
is gone every exchange of a fresh burst is recorded again.

(bench/overload_bench.sh measures the same for a minute, with the figures.)"""

import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import pod_ip4, pod_run, wait_for
from httpenv import Nginx

CPU_CGROUP = Path("/sys/fs/cgroup/cpu")
RSS_LIMIT_MIB = 128


def rss_anon_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def losses(st):
    return st["spans_dropped"] + st["http_bound_hits"] + st["events_dropped"] + \
        st["payload_dropped"]


@pytest.fixture
def cpu_quota():
    """A cgroup v1 CPU group of its own; its processes go back at the end."""
    if not (CPU_CGROUP / "cgroup.procs").exists():
        pytest.skip("no cgroup v1 cpu controller at /sys/fs/cgroup/cpu to limit the worker with")
    group = CPU_CGROUP / f"ebpfc-test-{os.getpid()}"
    group.mkdir()
    try:
        yield group
    finally:
        for pid in (group / "cgroup.procs").read_text().split():
            try:
                (CPU_CGROUP / "cgroup.procs").write_text(pid)
            except OSError:
                pass
        group.rmdir()


def test_a_worker_short_of_cpu_stays_bounded_and_recovers(cluster, capture, cpu_quota):
    pid = capture["pid"]
    nginx = Nginx(2, 18090)
    try:
        url = f"http://{pod_ip4(2)}:18090/ok"
        before = cluster.status()
        load = subprocess.Popen(
            ["ip", "netns", "exec", f"{os.environ['EBPFC_NS']}-pod1", "wrk", "-t2", "-c32",
             "-d25s", url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(3)
        (cpu_quota / "cpu.cfs_quota_us").write_text("10000")  # 10 % of one CPU
        (cpu_quota / "cgroup.procs").write_text(str(pid))
        peak = 0
        deadline = time.monotonic() + 18
        while time.monotonic() < deadline:
            peak = max(peak, rss_anon_kib(pid))
            time.sleep(0.5)
        (cpu_quota / "cpu.cfs_quota_us").write_text("-1")  # the limit is gone
        out = load.communicate(timeout=60)[0]
        assert " requests in " in out, out
        st = wait_for(lambda: (s := cluster.status()) and losses(s) > losses(before) and s, 15,
                      desc="the losses counted")
        assert st["pid"] == pid and st["state"] == "running", st
        assert peak < RSS_LIMIT_MIB * 1024, f"anonymous RSS reached {peak / 1024:.1f} MiB"

        # Back to complete within a few seconds: once the losses stop moving,
        # a burst on fresh connections has every exchange recorded.
        last = [losses(cluster.status()), time.monotonic()]

        def settled():
            now = losses(cluster.status())
            if now != last[0]:
                last[:] = [now, time.monotonic()]
            return time.monotonic() - last[1] >= 2

        wait_for(settled, 20, interval=0.5, desc="the losses to stop")
        res = pod_run(1, "wrk", "-t1", "-c4", "-d2s", f"http://{pod_ip4(2)}:18090/ok/after",
                      timeout=60)
        served = sum(1 for line in nginx.access_log().splitlines() if "GET /ok/after " in line)
        assert served > 1000, res.stdout

        def recorded():
            return cluster.value("SELECT count(*) FROM spans WHERE protocol = 'http' "
                                 "AND http_target = '/ok/after'")

        wait_for(lambda: recorded() >= served, 20, desc="the spans of the burst")
        time.sleep(1)
        assert recorded() == served, (recorded(), served)
        assert cluster.status()["pid"] == pid
        assert not cluster.unexpected_crashes()
    finally:
        nginx.stop()
