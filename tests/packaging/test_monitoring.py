"""What a Prometheus Operator and a Grafana sidecar find in the chart: a metrics port on every
marketpipe stage (and the setting that opens it), PodMonitors that select those pods, the
alert rules promtool checks, dashboards as labelled ConfigMaps, and NetworkPolicies that let
the scraper's namespace in on exactly those ports."""

from __future__ import annotations

import json

import yaml

from tests.packaging.conftest import CHART, Manifest, by_kind, containers, pod_specs, render

ALL_ON = (
    "--set", "metrics.podMonitor.enabled=true",
    "--set", "metrics.prometheusRule.enabled=true",
    "--set", "metrics.grafanaDashboards.enabled=true",
)  # fmt: skip
STAGES = {"producer", "quality", "features"}  # the long-running ones the default install runs


def component(doc: Manifest) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def metrics_ports(docs: list[Manifest]) -> dict[str, int]:
    """Component -> the port its pods name "metrics"."""
    out = {}
    for doc, spec in pod_specs(docs):
        for c in containers(spec):
            for port in c.get("ports", []):
                if port.get("name") == "metrics":
                    out[component(doc)] = port["containerPort"]
    return out


def settings(docs: list[Manifest]) -> dict[str, str]:
    (found,) = [d for d in docs if d["kind"] == "ConfigMap" and component(d) == "settings"]
    return dict(found["data"])


def test_every_stage_serves_metrics_on_the_port_its_setting_opens() -> None:
    docs = render("default")
    assert metrics_ports(docs) == dict.fromkeys(STAGES, 9464)
    assert settings(docs)["MARKETPIPE_OTEL__METRICS_PORT"] == "9464"
    assert not {"PodMonitor", "PrometheusRule"} & {d["kind"] for d in docs}
    assert not [d for d in docs if d["kind"] == "ConfigMap" and component(d) == "dashboards"]


def test_metrics_off_closes_the_ports() -> None:
    docs = render("default", "--set", "metrics.enabled=false")
    assert metrics_ports(docs) == {}
    assert "MARKETPIPE_OTEL__METRICS_PORT" not in settings(docs)
    for policy in by_kind(docs, "NetworkPolicy").values():
        for rule in policy["spec"].get("ingress", []):
            assert 9464 not in [p["port"] for p in rule.get("ports", [])]


def test_pod_monitors_select_every_stage_and_redpanda() -> None:
    docs = render("default", *ALL_ON)
    monitors = by_kind(docs, "PodMonitor")
    stages = monitors["mp-marketpipe-stages"]["spec"]
    assert stages["podMetricsEndpoints"][0]["port"] == "metrics"
    wanted = stages["selector"]["matchLabels"]
    selected = {
        component(doc) for doc, spec in pod_specs(docs)
        if wanted.items() <= doc["spec"].get("template", doc)["metadata"]["labels"].items()
        and any(p.get("name") == "metrics" for c in containers(spec) for p in c.get("ports", []))
    }  # fmt: skip
    assert selected == STAGES
    redpanda = monitors["mp-marketpipe-redpanda"]["spec"]["podMetricsEndpoints"][0]
    assert (redpanda["port"], redpanda["path"]) == ("admin", "/public_metrics")
    broker = by_kind(docs, "StatefulSet")["mp-marketpipe-redpanda"]["spec"]["template"]["spec"]
    assert "admin" in [p["name"] for c in containers(broker) for p in c.get("ports", [])]


def test_the_prometheus_rule_is_the_alerts_file() -> None:
    docs = render("default", *ALL_ON)
    (rule,) = by_kind(docs, "PrometheusRule").values()
    assert rule["spec"] == yaml.safe_load((CHART / "files/prometheus/alerts.yaml").read_text())


def test_dashboards_are_labelled_config_maps_of_valid_dashboards() -> None:
    docs = render("default", *ALL_ON, "--set", "metrics.grafanaDashboards.namespace=grafana")
    boards = [d for d in docs if d["kind"] == "ConfigMap" and component(d) == "dashboards"]
    assert {d["metadata"]["namespace"] for d in boards} == {"grafana"}
    uids = set()
    for board in boards:
        assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((name, text),) = board["data"].items()
        dashboard = json.loads(text)
        assert dashboard["panels"], name
        uids.add(dashboard["uid"])
    assert uids == {"marketpipe-health", "marketpipe-market"}


def test_the_scraper_namespace_reaches_exactly_the_metrics_ports() -> None:
    docs = render("default", *ALL_ON)
    # The replay Job and the live source are off by default; their policies are there for
    # when they run.
    ports = metrics_ports(docs) | {"redpanda": 9644, "replay": 9464, "live": 9464}
    policies = {component(p): p for p in by_kind(docs, "NetworkPolicy").values()}
    for name, port in ports.items():
        scrape = [
            rule for rule in policies[name]["spec"]["ingress"]
            if any("namespaceSelector" in f for f in rule["from"])
        ]  # fmt: skip
        assert len(scrape) == 1, name
        assert scrape[0]["from"][0]["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
        }
        assert [p["port"] for p in scrape[0]["ports"]] == [port], name
    unscraped = set(policies) - set(ports)
    for name in unscraped:
        for rule in policies[name]["spec"].get("ingress", []):
            assert not any("namespaceSelector" in f for f in rule.get("from", [])), name


def test_the_dashboard_serves_on_its_port_reading_timescaledb() -> None:
    docs = render("default", "--set", "dashboard.prometheusUrl=http://prom.monitoring:9090")
    deployment = by_kind(docs, "Deployment")["mp-marketpipe-dashboard"]
    (container,) = containers(deployment["spec"]["template"]["spec"])
    assert container["args"] == ["dashboard"]
    assert container["ports"] == [{"name": "http", "containerPort": 8501, "protocol": "TCP"}]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/_stcore/health", "port": "http"}
    # The root filesystem is read-only: Streamlit's home is the scratch volume.
    assert {"name": "HOME", "value": "/tmp"} in container["env"]
    assert "/tmp" in [m["mountPath"] for m in container["volumeMounts"]]
    service = by_kind(docs, "Service")["mp-marketpipe-dashboard"]
    assert service["spec"]["ports"][0]["port"] == 8501
    (own,) = [d for d in docs if d["kind"] == "ConfigMap" and component(d) == "dashboard"]
    assert own["data"] == {
        "MARKETPIPE_DASHBOARD__ADDRESS": "0.0.0.0",
        "MARKETPIPE_DASHBOARD__PORT": "8501",
        "MARKETPIPE_DASHBOARD__SINK": "postgres",
        "MARKETPIPE_DASHBOARD__PROMETHEUS_URL": "http://prom.monitoring:9090",
    }
    policy = {component(p): p for p in by_kind(docs, "NetworkPolicy").values()}["dashboard"]
    assert [p["port"] for p in policy["spec"]["ingress"][0]["ports"]] == [8501]
    off = render("default", "--set", "dashboard.enabled=false")
    assert "mp-marketpipe-dashboard" not in by_kind(off, "Deployment")
    assert "mp-marketpipe-dashboard" not in by_kind(off, "NetworkPolicy")
