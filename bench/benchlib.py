"""What the reports of the benchmarks in bench/ share: reading the key<TAB>value
results file, capture_status() rows and wrk's output, and the per-run figures
that bench/lib.sh's wrk_run records."""
import base64
import re


def load_tsv(path):
    raw = {}
    with open(path) as fh:
        for line in fh:
            k, _, v = line.rstrip("\n").partition("\t")
            raw[k] = v
    return raw


def parse_status(s, cols):
    """A capture_status() row as status_row prints it (| separated, last_error
    last and possibly holding |) into a dict; counters as ints."""
    if not s:
        return None
    vals = s.split("|", len(cols) - 1)
    out = dict(zip(cols, vals))
    for k in cols[1:-1]:
        if k in out:
            out[k] = int(out[k])
    out["last_error"] = out.get("last_error") or None
    return out


def unit(v, u):
    mult = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "us": 1e-3, "ms": 1, "s": 1e3,
            "m": 6e4, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
    return float(v) * mult.get(u, 1)


def parse_wrk(text):
    r = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", text)
    if m:
        r["requests"] = int(m.group(1))
        r["seconds"] = unit(m.group(2), m.group(3)) / 1000.0
        r["bytes_read"] = int(unit(m.group(4), m.group(5)))
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    r["requests_per_s"] = float(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    r["socket_errors"] = dict(zip(["connect", "read", "write", "timeout"],
                                  map(int, m.groups()))) if m else {
        "connect": 0, "read": 0, "write": 0, "timeout": 0}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    r["non_2xx_3xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Latency\s+([\d.]+)(\w+)\s+([\d.]+)(\w+)\s+([\d.]+)(\w+)", text)
    if m:
        r["latency_avg_ms"] = round(unit(m.group(1), m.group(2)), 3)
        r["latency_max_ms"] = round(unit(m.group(5), m.group(6)), 3)
    for p in ("50", "90", "99"):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(\w+)" % p, text, re.M)
        if m:
            r["latency_p%s_ms" % p] = round(unit(m.group(1), m.group(2)), 3)
    return r


def load_runs(g, names, clk):
    """The figures wrk_run recorded for each run in names that took place."""
    runs = {}
    for name in names:
        if not g(name + ".t0"):
            continue
        text = base64.b64decode(g(name + ".wrk_output")).decode("utf-8", "replace")
        run = parse_wrk(text)
        run["window"] = [float(g(name + ".t0")), float(g(name + ".t1"))]
        run["tcp_active_opens_pod1"] = int(g(name + ".active_opens"))
        run["tcp_attempt_fails_pod1"] = int(g(name + ".attempt_fails"))
        run["tcp_estab_resets_pod1"] = int(g(name + ".estab_resets"))
        run["tcp_passive_opens_pod2"] = int(g(name + ".passive_opens"))
        al = (g(name + ".access_log") or "0 0").split()
        run["nginx_access_log"] = {"lines": int(al[0]), "status_200": int(al[1])}
        b0, t0, s0, b1, t1, s1 = map(int, g(name + ".host_cpu").split())
        run["wrk_cpu_s"] = float(g(name + ".wrk_cpu_s"))
        run["nginx_cpu_s"] = int(g(name + ".nginx_ticks")) / clk
        run["cluster_cpu_s"] = int(g(name + ".cluster_ticks_run")) / clk
        run["host_softirq_s"] = (s1 - s0) / clk
        run["ksoftirqd_cpu_s"] = int(g(name + ".ksoftirqd_ticks")) / clk
        run["loadavg_before"] = g(name + ".loadavg_before")
        iw0, rs0, iw1, rs1 = map(int, g(name + ".irqs").split())
        run["host_irq_work_interrupts"] = iw1 - iw0
        run["host_reschedule_interrupts"] = rs1 - rs0
        run["host_cpu_busy_pct"] = round(100.0 * (b1 - b0) / max(1, t1 - t0), 1)
        runs[name] = run
    return runs


def host_busy_s(g, name, clk):
    """CPU seconds all CPUs were busy during a run (from /proc/stat)."""
    b0, _, _, b1, _, _ = map(int, g(name + ".host_cpu").split())
    return (b1 - b0) / clk


def server_log_lines(g):
    """The server log while the capture ran: lines worth a look, and problems."""
    log_text = base64.b64decode(g("capture.server_log") or "").decode("utf-8", "replace")
    interesting = [l for l in log_text.splitlines()
                   if re.search(r"WARNING|ERROR|FATAL|PANIC|terminated by signal|ebpf_capture", l)]
    problems = [l for l in interesting
                if re.search(r"WARNING|ERROR|FATAL|PANIC|terminated by signal|failed", l)]
    return interesting, problems


def ratio(a, b):
    return round(a / b, 4) if b else None
