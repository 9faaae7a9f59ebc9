"""The Grafana dashboard of deploy/grafana: its panels' SQL, and Grafana's
PostgreSQL macros expanded as Grafana does, for tests that run the queries
against a node (test_07) or a hub (test_21)."""
import json
import re

from conftest import REPO

DASHBOARD = REPO / "deploy" / "grafana" / "dashboard.json"


def dashboard_targets():
    dash = json.loads(DASHBOARD.read_text())
    out = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                if t.get("rawSql"):
                    out.append((p, t))

    walk(dash["panels"])
    return dash, out


# The dashboard's variables, as they stand when nothing was clicked.
DASHBOARD_VARIABLES = {"trace_id": "", "edge_source": "", "edge_target": ""}


def expand_macros(sql, t_from, t_to, interval_s, variables=None):
    """Grafana's PostgreSQL macros, expanded as Grafana does, to a literal
    time range, and the dashboard's variables. A macro or variable not
    handled here fails the test rather than passing through unexpanded."""
    for name, value in (variables or DASHBOARD_VARIABLES).items():
        sql = sql.replace(f"${name}", value)
    f = t_from.isoformat()
    t = t_to.isoformat()

    def group(m, alias):
        args = [a.strip() for a in m.group(1).split(",")]
        col = args[0]
        expr = f"floor(extract(epoch from {col})/{interval_s})*{interval_s}"
        return f'{expr} AS "time"' if alias else expr

    sql = re.sub(r"\$__timeFilter\(([^)]*)\)",
                 lambda m: f"{m.group(1).strip()} BETWEEN '{f}' AND '{t}'", sql)
    sql = re.sub(r"\$__timeGroupAlias\(([^)]*)\)", lambda m: group(m, True), sql)
    sql = re.sub(r"\$__timeGroup\(([^)]*)\)", lambda m: group(m, False), sql)
    sql = sql.replace("$__timeFrom()", f"'{f}'").replace("$__timeTo()", f"'{t}'")
    sql = sql.replace("$__interval_ms", str(interval_s * 1000))
    sql = sql.replace("$__interval", f"{interval_s}s")
    sql = sql.replace("$__unixEpochFrom()", str(int(t_from.timestamp())))
    sql = sql.replace("$__unixEpochTo()", str(int(t_to.timestamp())))
    left = re.findall(r"\$\w+", sql)
    assert not left, f"unexpanded Grafana macros or variables {left} in:\n{sql}"
    return sql
