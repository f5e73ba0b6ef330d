"""promtool validates the Prometheus config and the alert rules, and fires every alert in its unit tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.observability.promql import ALERTS, PROMETHEUS_CONFIG, alert_rules, alert_signals
from tests.process_helpers import require_binary

ALERTS_TEST = ALERTS.parent / "alerts_test.yml"


def _promtool(*args: str | Path) -> str:
    result = subprocess.run(
        [require_binary("promtool"), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_config_and_rules_are_valid() -> None:
    assert "SUCCESS" in _promtool("check", "config", PROMETHEUS_CONFIG)
    assert f"SUCCESS: {len(alert_rules())} rules found" in _promtool("check", "rules", ALERTS)


def test_unit_tests_fire_every_alert() -> None:
    assert "SUCCESS" in _promtool("test", "rules", ALERTS_TEST)
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case.get("exp_alerts")}
    assert fired == {rule["alert"] for rule in alert_rules()}


def test_unit_tests_catch_a_wrong_expectation(tmp_path: Path) -> None:
    """A control: promtool fails when an expected alert does not match, so the success above means something."""
    broken = ALERTS_TEST.read_text().replace("6.667%", "7%")
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text())
    (tmp_path / "alerts_test.yml").write_text(broken)
    result = subprocess.run(
        [require_binary("promtool"), "test", "rules", str(tmp_path / "alerts_test.yml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0


def test_alert_signals_drop_thresholds_and_split_set_operators() -> None:
    assert alert_signals("sum(rate(a[5m])) / sum(rate(b[5m]))\n  > 0.05") == ["sum(rate(a[5m])) / sum(rate(b[5m]))"]
    assert alert_signals('up{job="r"} == 1 unless on (instance) info{job="r"} == 1') == ['up{job="r"}', 'info{job="r"}']
    assert alert_signals("max by (i) (x{a=~'b or c'}) > 0") == ["max by (i) (x{a=~'b or c'})"]
