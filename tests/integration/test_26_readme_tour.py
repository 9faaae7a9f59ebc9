"""The README's short tour, run as written.

Every SQL statement in the ```sql blocks of README.md's "A short tour" runs
against a capture that saw a little traffic of the kind the tour talks about
(connections, a request that failed with a 500, a request carrying the trace
id the tour queries), and each must return at least one row: a statement the
README shows users must work on the schema they get, and show something.
"""
import re
from pathlib import Path

import pytest

from conftest import Pods, now_utc, pod_ip4, pod_run
from httpenv import Nginx, wait_http

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_statements():
    text = README.read_text()
    start = text.index("## A short tour")
    end = text.index("\n## ", start + 1)
    blocks = re.findall(r"```sql\n(.*?)```", text[start:end], re.S)
    statements = []
    for block in blocks:
        for stmt in block.split(";"):
            lines = [line.split("--")[0].rstrip() for line in stmt.splitlines()]
            stmt = "\n".join(line for line in lines if line.strip())
            if stmt:
                statements.append(stmt)
    return statements


def test_the_readme_has_a_tour():
    statements = tour_statements()
    assert len(statements) >= 6, statements
    assert any("trace_tree(" in s for s in statements), statements


@pytest.fixture(scope="module")
def backend(topology):
    port = Pods.new_port()
    server = Nginx(3, port, "backend")
    try:
        yield server
    finally:
        server.stop()


def test_every_tour_statement_returns_rows(cluster, capture, backend):
    statements = tour_statements()
    trace_ids = {m for s in statements for m in re.findall(r"trace_tree\('([0-9a-f]{32})'\)", s)}
    assert len(trace_ids) == 1, trace_ids
    trace_id = trace_ids.pop()
    t0 = now_utc()
    url = f"http://{pod_ip4(3)}:{backend.port}"
    pod_run(1, "curl", "-sS", "-o", "/dev/null", "-H",
            f"traceparent: 00-{trace_id}-00f067aa0ba902b7-01", f"{url}/ok", f"{url}/e500",
            f"{url}/ok?id=1")
    pod_run(1, "curl", "-sS", "-o", "/dev/null", "-H", "Connection: close", f"{url}/ok")
    wait_http(cluster, 4, "dst_port = %s AND start_time >= %s", (backend.port, t0))
    for stmt in statements:
        rows = cluster.sql(stmt)
        assert rows, f"no rows from the README's\n{stmt}"
