"""Every PromQL expression the dashboards and alert rules use, and how to check one.

Dashboard template variables are substituted the way Grafana would:
``$__rate_interval`` by a range that holds several 1 s scrapes, ``$instance``
by ``.*`` (the "All" value) and ``$window`` by a value the ``window`` variable's
own query returns. An alert rule's expression is usually empty until it fires,
so for ``lhs > rhs`` both sides are queried on their own (each must return
data: the metrics exist) and the whole expression must evaluate without error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RATE_INTERVAL = "15s"
_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)")
_MODIFIERS = re.compile(r"^\s*(bool\s+)?((on|ignoring)\s*\([^)]*\)\s*)?((group_left|group_right)\s*(\([^)]*\))?\s*)?")


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((ROOT / "grafana/dashboards").glob("*.json"))}


def panel_exprs() -> list[tuple[str, str]]:
    """(where, expr) for every panel target of every dashboard."""
    return [(f"{name}: {panel['title']}", t["expr"]) for name, d in dashboards().items()
            for panel in d["panels"] for t in panel["targets"]]


def variable_queries() -> list[tuple[str, str, str]]:
    """(name, metric selector, label) of every ``label_values(selector, label)`` variable."""
    out = []
    for d in dashboards().values():
        for v in d["templating"]["list"]:
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"]["query"])
            assert m, f"unsupported variable query {v['query']['query']}"
            out.append((v["name"], m.group(1), m.group(2)))
    return out


def rule_exprs() -> list[tuple[str, str]]:
    doc = yaml.safe_load((ROOT / "prometheus/alerts.yml").read_text())
    return [(r["alert"], r["expr"]) for g in doc["groups"] for r in g["rules"]]


def substitute(expr: str, window: str) -> str:
    return (expr.replace("$__rate_interval", RATE_INTERVAL).replace("$instance", ".*")
            .replace("$window", window))


def split_comparison(expr: str) -> list[str]:
    """The two operands of a top-level comparison (modifiers dropped), or [expr]."""
    depth, quote = 0, ""
    for i, ch in enumerate(expr):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and _COMPARISON.match(expr, i) and expr[i - 1] not in "=!<>":
            op = _COMPARISON.match(expr, i)
            assert op is not None
            rhs = _MODIFIERS.sub("", expr[op.end():], count=1)
            return [expr[:i].strip(), rhs.strip()]
    return [expr]


def is_literal(expr: str) -> bool:
    return re.fullmatch(r"[-+]?\d+(\.\d+)?", expr.strip()) is not None
