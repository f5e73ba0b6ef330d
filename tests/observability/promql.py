"""PromQL expressions of the deploy files, and a small client of Prometheus' HTTP query API."""

from __future__ import annotations

import json
import math
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "retrieval-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"

_COMPARISON = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*-?[0-9.]+(e-?[0-9]+)?\s*$")
_MODIFIER = re.compile(r"^\s*(on|ignoring)\s*\([^)]*\)\s*(group_left|group_right)?\s*(\([^)]*\))?")


def dashboard_queries(rate_interval: str) -> list[tuple[str, str]]:
    """(panel title, expr) of every panel target, `$__rate_interval` replaced by `rate_interval`."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", rate_interval))
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def alert_signals(expr: str) -> list[str]:
    """The measured parts of an alert expression: its top-level `unless`/`and`/`or` operands without their
    trailing threshold comparison, e.g. `a / b > 0.05` -> [`a / b`]; `up == 1 unless on (i) x == 1` -> [up, x]."""
    return [_COMPARISON.sub("", _MODIFIER.sub("", part)).strip() for part in _split_top_level(" ".join(expr.split()))]


def _split_top_level(expr: str) -> list[str]:
    parts, depth, start, i = [], 0, 0, 0
    while i < len(expr):
        char = expr[i]
        depth += {"(": 1, "{": 1, "[": 1, ")": -1, "}": -1, "]": -1}.get(char, 0)
        match = re.match(r" (unless|and|or) ", expr[i:]) if depth == 0 else None
        if match:
            parts.append(expr[start:i])
            i += match.end()
            start = i
            continue
        i += 1
    parts.append(expr[start:])
    return parts


class PrometheusApi:
    """Instant queries against http://127.0.0.1:port."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector of `expr` (at unix time `at`, default now)."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.get("/api/v1/query", **params)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return list(data["result"])

    def finite_values(self, expr: str, at: float | None = None) -> list[float]:
        return [v for v in (float(s["value"][1]) for s in self.query(expr, at)) if math.isfinite(v)]


def config_scraping(target: str, rules: Path) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with a 1 s scrape of `target` instead of DNS discovery."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(rules)]
    (job,) = config["scrape_configs"]
    job.pop("dns_sd_configs")
    job["static_configs"] = [{"targets": [target]}]
    return config
