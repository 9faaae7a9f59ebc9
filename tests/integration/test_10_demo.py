"""The README's demo command, `bash deploy/demo.sh`, run as written: the
bookinfo example (issue 5). It builds its own node and pods (namespace
prefix ebpfcdemo, a PostgreSQL cluster on port 5497), names the pods through
the fake Kubernetes API server, sends 200 page requests and prints the
service map; this test reads what it printed and checks the PNG it drew."""

import os
import re
import shutil
import subprocess

from conftest import REPO

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def table_after(text, heading):
    """The rows of the first psql table printed after a line containing
    heading, as lists of cells."""
    lines = text[text.index(heading):].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if re.match(r"^-+\+", line))
    rows = []
    for line in lines[start + 1:]:
        if not line.strip() or line.startswith("("):
            break
        rows.append([c.strip() for c in line.split("|")])
    return rows


def test_demo_bookinfo(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, EBPFC_DEMO_OUT=str(out), EBPFC_NS="ebpfcdemo")
    env.pop("EBPFC_DEMO_KEEP", None)
    res = subprocess.run(["bash", str(REPO / "deploy" / "demo.sh")], capture_output=True,
                         text=True, timeout=600, env=env)
    text = ANSI.sub("", res.stdout)
    assert res.returncode == 0, f"demo failed:\n{text[-6000:]}\n{res.stderr[-4000:]}"
    assert "HTTP spans recorded: 800 of 800" in text, text

    # one request, every hop, named through the Kubernetes API
    hops = table_after(text, "One request, every hop")
    assert [(h[0], h[1], h[4], h[6]) for h in hops] == [
        ("loadgen", "productpage-v1", "200", "1"), ("productpage-v1", "details-v1", "200", "2"),
        ("productpage-v1", "reviews-v1", "200", "2"), ("reviews-v1", "ratings-v1", "200", "3")], hops
    # a tree of depth three: productpage's two calls hang under the page
    # request, ratings under reviews (whose nginx copied the header)
    span, parent = {h[1]: h[7] for h in hops}, {h[1]: h[8] for h in hops}
    assert parent["productpage-v1"] == "", hops
    assert parent["details-v1"] == parent["reviews-v1"] == span["productpage-v1"], hops
    assert parent["ratings-v1"] == span["reviews-v1"] != span["ratings-v1"], hops

    # the edges: ratings fails the 20 book ids of 200 that end in 7, reviews
    # passes that on, productpage degrades the page instead of failing it
    edges = {(e[0], e[1]): e for e in table_after(text, "The service map:")}
    want = {("default/loadgen", "bookinfo/productpage-v1"): 0,
            ("bookinfo/productpage-v1", "bookinfo/details-v1"): 0,
            ("bookinfo/productpage-v1", "bookinfo/reviews-v1"): 10,
            ("bookinfo/reviews-v1", "bookinfo/ratings-v1"): 10}
    assert set(edges) == set(want), edges
    for key, errors in want.items():
        m = re.fullmatch(r"([\d.]+) req/s, ([\d.]+)% errors", edges[key][2])
        assert m and float(m.group(2)) == errors, edges[key]
        assert re.fullmatch(r"p50 [\d.]+ ms, p95 [\d.]+ ms", edges[key][3]), edges[key]

    # the picture
    png = out / "service_map.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = subprocess.run([shutil.which("dot"), "-Tsvg", str(out / "service_map.dot")],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert svg.count('class="node"') == 5 and svg.count('class="edge"') == 4, svg
    # and nothing left behind
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "ebpfcdemo-" not in left, left
