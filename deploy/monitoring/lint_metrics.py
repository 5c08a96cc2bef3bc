#!/usr/bin/env python3
"""Lint the Portcullis monitoring files against metrics.txt (stdlib only).

Checks:
  * metrics.txt: one metric name per line, each matching
    ^(portcullis|process)_[a-z_]+$ (the gateway's own metrics, and the
    standard process_* metrics of the Prometheus process collector), no
    duplicates.
  * the Grafana dashboard: valid JSON; schemaVersion present; every panel
    (rows excepted, panels nested in collapsed rows included) has a title and
    at least one target with a non-empty expr; panel ids are unique; panels
    and targets use the ${DS_PROMETHEUS} data source; the instance and route
    template variables exist.
  * metric names: every `portcullis_[a-z_]+` or `process_[a-z_]+` token in a PromQL expression of
    the dashboard (targets, template variable queries, annotation queries),
    of the alert rules (and anywhere else in the rules file outside comments:
    descriptions and runbooks), and in the series of the alert unit tests is a name in
    metrics.txt -- after mapping a histogram's _bucket/_sum/_count series back
    to the histogram's name.
  * every alert in the rules has a unit test that names it (alertname: X) at
    least twice (a firing and a silent case).
  * with --emit-dashboard-rules FILE: writes the dashboard's PromQL (Grafana
    variables replaced) as recording rules, so that check.sh can have
    promtool parse every dashboard expression.

Exit status 0 when all checks pass, 1 otherwise (every problem is printed).

Usage:
  lint_metrics.py --metrics metrics.txt --dashboard grafana/portcullis.json \
                  --rules alerts.yml [--tests alerts.test.yml] \
                  [--emit-dashboard-rules FILE]
"""

import argparse
import json
import re
import sys

NAME = re.compile(r"\b(?:portcullis|process)_[a-z_]+")
VALID_NAME = re.compile(r"^(?:portcullis|process)_[a-z_]+$")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
DATASOURCE_UID = "${DS_PROMETHEUS}"


class Problems:
    def __init__(self):
        self.items = []
        self.unknown = set()

    def add(self, where, what):
        self.items.append(f"{where}: {what}")


def load_metrics(path, problems):
    names = []
    seen = set()
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        problems.add(path, f"cannot read: {e}")
        return set()
    for n, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            continue
        if not VALID_NAME.match(name):
            problems.add(f"{path}:{n}", f"not a metric name: {line!r}")
            continue
        if name in seen:
            problems.add(f"{path}:{n}", f"duplicate name {name}")
        seen.add(name)
        names.append(name)
    if not names:
        problems.add(path, "no metric names")
    return set(names)


def resolve(token, known):
    """The metrics.txt name a series name stands for, or None."""
    if token in known:
        return token
    for suffix in HISTOGRAM_SUFFIXES:
        if token.endswith(suffix) and token[: -len(suffix)] in known:
            return token[: -len(suffix)]
    return None


def check_names(text, known, where, problems, used):
    for token in sorted(set(NAME.findall(text))):
        base = resolve(token, known)
        if base is None:
            if (where, token) not in problems.unknown:  # a rules line is read twice
                problems.unknown.add((where, token))
                problems.add(where, f"unknown metric {token} (not in metrics.txt) in: {text.strip()[:160]}")
        else:
            used.add(base)


# --- dashboard ---------------------------------------------------------------------


def walk_panels(panels):
    for p in panels:
        yield p
        # A collapsed row keeps its panels inside it.
        yield from walk_panels(p.get("panels") or [])


def datasource_ok(ds):
    if isinstance(ds, dict):
        return ds.get("uid") == DATASOURCE_UID
    return ds == DATASOURCE_UID


def check_dashboard(path, known, problems, used, exprs):
    """Checks the dashboard; appends (name, expr) of its PromQL to exprs."""
    try:
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
    except OSError as e:
        problems.add(path, f"cannot read: {e}")
        return
    except json.JSONDecodeError as e:
        problems.add(path, f"invalid JSON: {e}")
        return
    if not isinstance(dash, dict):
        problems.add(path, "top level is not an object")
        return
    if not isinstance(dash.get("schemaVersion"), int):
        problems.add(path, "no integer schemaVersion")
    if not dash.get("title"):
        problems.add(path, "dashboard has no title")

    variables = {v.get("name"): v for v in (dash.get("templating") or {}).get("list") or []}
    for required in ("DS_PROMETHEUS", "instance", "route"):
        if required not in variables:
            problems.add(path, f"template variable {required!r} missing")
    for name, var in variables.items():
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        if var.get("type") == "query":
            if not datasource_ok(var.get("datasource")):
                problems.add(path, f"template variable {name!r} does not use {DATASOURCE_UID}")
            check_names(query or "", known, f"{path}: variable {name!r}", problems, used)

    for ann in (dash.get("annotations") or {}).get("list") or []:
        if ann.get("expr"):
            check_names(ann["expr"], known, f"{path}: annotation {ann.get('name')!r}", problems, used)
            exprs.append((f"annotation_{len(exprs)}", ann["expr"]))

    panels = list(walk_panels(dash.get("panels") or []))
    if not panels:
        problems.add(path, "no panels")
    ids = {}
    graphs = 0
    for p in panels:
        pid = p.get("id")
        title = p.get("title")
        where = f"{path}: panel {pid} {title!r}"
        if pid in ids:
            problems.add(where, f"duplicate panel id (also {ids[pid]!r})")
        ids[pid] = title
        if not isinstance(title, str) or not title.strip():
            problems.add(where, "panel has no title")
        if p.get("type") == "row":
            continue
        graphs += 1
        if "gridPos" not in p:
            problems.add(where, "panel has no gridPos")
        if not datasource_ok(p.get("datasource")):
            problems.add(where, f"panel data source is not {DATASOURCE_UID}")
        targets = p.get("targets") or []
        if not targets:
            problems.add(where, "panel has no targets")
        for t in targets:
            expr = t.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                problems.add(where, f"target {t.get('refId')} has no expr")
                continue
            if "datasource" in t and not datasource_ok(t["datasource"]):
                problems.add(where, f"target {t.get('refId')} data source is not {DATASOURCE_UID}")
            check_names(expr, known, where, problems, used)
            exprs.append((f"panel_{pid}_{t.get('refId', 'X')}", expr))
    print(f"  dashboard: {graphs} panels (+ {len(panels) - graphs} rows) checked")


# Grafana's variables, replaced by plain values so promtool can parse the
# expressions.
GRAFANA_VARIABLES = [
    ("$__rate_interval", "1m"),
    ("$__interval", "1m"),
    ("$__range", "1h"),
    ("$instance", ".*"),
    ("$route", ".*"),
]


def write_rules(path, exprs, problems):
    """The dashboard's expressions as recording rules, for `promtool check rules`.

    JSON is YAML, so no YAML writer is needed.
    """
    rules = []
    for name, expr in exprs:
        for var, value in GRAFANA_VARIABLES:
            expr = expr.replace(var, value)
        if "$" in expr:
            problems.add(path, f"unknown Grafana variable left in {name}: {expr}")
        rules.append({"record": f"dashboard:{name}", "expr": expr})
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"groups": [{"name": "dashboard-expressions", "rules": rules}]}, f, indent=1)
    print(f"  dashboard: {len(rules)} expressions written to {path} for promtool")


# --- alert rules (a minimal YAML reader: enough for `expr:` scalars) ----------------

KEY = re.compile(r"^(?P<indent>\s*)(?:-\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?:\s+(?P<value>.*))?$")


def scalar_values(path, key):
    """(line number, text) of every value of `key` in a YAML file.

    Handles plain, quoted and block (| >) scalars, and plain scalars continued
    on more-indented lines; that is what rule and test files use.
    """
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    out = []
    i = 0
    while i < len(lines):
        m = KEY.match(lines[i])
        if not m or m.group("key") != key:
            i += 1
            continue
        start = i + 1
        key_col = len(m.group("indent"))
        if lines[i].lstrip().startswith("- "):
            key_col += 2
        value = (m.group("value") or "").strip()
        parts = [] if value[:1] in ("|", ">") else [value]
        i += 1
        while i < len(lines):
            line = lines[i]
            if line.strip() and (len(line) - len(line.lstrip())) <= key_col:
                break
            parts.append(line.strip())
            i += 1
        text = " ".join(p for p in parts if p)
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1]
        out.append((start, text))
    return out


def check_rules(path, known, problems, used):
    try:
        exprs = scalar_values(path, "expr")
        alerts = [v for _, v in scalar_values(path, "alert")]
    except OSError as e:
        problems.add(path, f"cannot read: {e}")
        return []
    if not exprs:
        problems.add(path, "no expr found")
    for line, expr in exprs:
        if not NAME.search(expr) and "up{" not in expr and not expr.startswith("up"):
            problems.add(f"{path}:{line}", f"expr uses no portcullis metric: {expr[:120]}")
        check_names(expr, known, f"{path}:{line}", problems, used)
    # Names mentioned in annotations (descriptions, runbooks) must exist too.
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.lstrip().startswith("#"):
                check_names(line, known, f"{path}:{n}", problems, used)
    print(f"  rules: {len(alerts)} alerts, {len(exprs)} expressions checked")
    return alerts


def check_tests(path, known, alerts, problems, used):
    try:
        series = scalar_values(path, "series")
        tested = [v for _, v in scalar_values(path, "alertname")]
    except OSError as e:
        problems.add(path, f"cannot read: {e}")
        return
    for line, s in series:
        check_names(s, known, f"{path}:{line}", problems, used)
    for alert in alerts:
        n = tested.count(alert)
        if n < 2:
            problems.add(path, f"alert {alert} is named by {n} test case(s); want a firing and a silent case")
    for name in sorted(set(tested) - set(alerts)):
        problems.add(path, f"tests name alert {name}, which is not in the rules")
    print(f"  tests: {len(series)} input series, {len(tested)} alert checks")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--rules", required=True)
    ap.add_argument("--tests")
    ap.add_argument("--emit-dashboard-rules", metavar="FILE",
                    help="write the dashboard's PromQL as recording rules to FILE (for promtool check rules)")
    args = ap.parse_args()

    problems = Problems()
    known = load_metrics(args.metrics, problems)
    used = set()
    exprs = []
    check_dashboard(args.dashboard, known, problems, used, exprs)
    if args.emit_dashboard_rules:
        write_rules(args.emit_dashboard_rules, exprs, problems)
    alerts = check_rules(args.rules, known, problems, used)
    if args.tests:
        check_tests(args.tests, known, alerts, problems, used)

    unused = sorted(known - used)
    if unused:
        # Not an error: a metric may be exported without a panel or rule.
        print(f"  note: in metrics.txt but used by no panel, rule or test: {', '.join(unused)}")

    if problems.items:
        for p in problems.items:
            print(f"lint_metrics: {p}", file=sys.stderr)
        print(f"lint_metrics: {len(problems.items)} problem(s)", file=sys.stderr)
        return 1
    print(f"  metric names: all {len(used)} used names are in {args.metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
