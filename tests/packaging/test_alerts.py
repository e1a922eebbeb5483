"""The alert rules the chart ships, checked by Prometheus's own promtool: they parse, and each
alert fires (with its labels and rendered annotations) where it should and stays quiet where
it should not (prometheus/alerts_test.yaml)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.packaging.conftest import CHART, run, tool

RULES = CHART / "files" / "prometheus" / "alerts.yaml"
CASES = Path(__file__).parent / "prometheus" / "alerts_test.yaml"


def test_the_rules_parse() -> None:
    done = run(tool("promtool"), "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_fires_and_stays_quiet_where_it_should() -> None:
    done = run(tool("promtool"), "test", "rules", CASES.name, cwd=CASES.parent)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_case_and_a_runbook_line() -> None:
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    cases = yaml.safe_load(CASES.read_text())["tests"]
    fired = {t["alertname"] for case in cases for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert {r["alert"] for r in rules} == fired
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
