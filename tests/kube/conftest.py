"""Fixtures of the Kubernetes client tests: a fake API server (in this
process) and kube_probe, the client in an event loop of its own (a
subprocess), driven through its stdin/stdout line protocol."""

import json
import os
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_kube_api import FakeKubeAPI  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.environ.get("KUBE_PROBE", os.path.join(HERE, "build", "kube_probe"))


class Probe:
    """kube_probe, running: the Kubernetes client and its pod cache."""

    def __init__(self, api=None, token_file=None, ca_file=None, args=(), url=None):
        cmd = [PROBE]
        if api is not None or url is not None:
            cmd += ["--api-url", url or api.url]
        if token_file:
            cmd += ["--token-file", token_file]
        if ca_file or api is not None:
            cmd += ["--ca-file", ca_file or api.ca_file]
        cmd += list(args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)

    def cmd(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        out = self.proc.stdout.readline()
        if not out:
            raise AssertionError("kube_probe died: %s" % self.stop())
        return json.loads(out)

    def status(self):
        return self.cmd("status")

    def pods(self):
        return {p["name"]: p for p in self.cmd("pods")}

    def lookup(self, addr, at_us=None):
        return self.cmd("lookup %s" % addr if at_us is None else "lookup %s %d" % (addr, at_us))

    def wait(self, predicate, timeout=10.0, what="condition"):
        """Polls status until predicate(status) holds; returns the status."""
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            st = self.status()
            if predicate(st):
                return st
            time.sleep(0.05)
        raise AssertionError("timed out waiting for %s; last status: %s" % (what, json.dumps(st)))

    def wait_synced(self, timeout=10.0):
        return self.wait(lambda s: s["state"] == "synced", timeout, "state synced")

    def stop(self):
        """Ends the probe; its stderr (sanitizer reports) must be empty."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        err = self.proc.stderr.read()
        return self.proc.returncode, err


@pytest.fixture
def api(tmp_path):
    server = FakeKubeAPI(directory=str(tmp_path / "api"), bookmark_interval=0.5)
    server.start()
    yield server
    server.close()


@pytest.fixture
def client_token(tmp_path):
    """The client's token file, holding the token the server accepts."""
    path = tmp_path / "client-token"
    path.write_text("token-1\n")
    return path


@pytest.fixture
def probe_factory(api, client_token):
    probes = []

    def make(*args, token_file=None, ca_file=None, url=None):
        p = Probe(api, token_file=str(token_file or client_token), ca_file=ca_file, args=args,
                  url=url)
        probes.append(p)
        return p

    yield make
    for p in probes:
        rc, err = p.stop()
        assert rc == 0 and "ERROR" not in err and "runtime error" not in err, err


# Fast back-off for tests that do not measure it.
FAST = ("--backoff-initial-ms", "200", "--backoff-max-ms", "1000")
