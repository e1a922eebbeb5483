"""The pipeline's health as Prometheus sees it: rates per stage, lag, DLQ by reason, latency.

The same series as the Grafana "pipeline health" dashboard (charts/marketpipe/files/grafana),
over every scraped pod; instant queries through the HTTP API, one keep-alive session."""

from __future__ import annotations

from dataclasses import dataclass, field

import requests

#: Figure -> PromQL giving one number (summed over pods and partitions).
SCALARS = {
    "produced /s": "sum(rate(marketpipe_ticks_produced_total[1m]))",
    "checked /s": "sum(rate(marketpipe_quality_consumed_total[1m]))",
    "valid /s": "sum(rate(marketpipe_quality_valid_total[1m]))",
    "DLQ /s": "sum(rate(marketpipe_quality_dlq_total[1m]))",
    "features input /s": 'sum(rate(marketpipe_features_input_total{query="features"}[1m]))',
    "checker lag": "sum(marketpipe_quality_lag)",
    "features lag": "max(marketpipe_features_source_lag)",
    "aborted transactions (5 min)": (
        'sum(increase(marketpipe_quality_transactions_total{outcome="aborted"}[5m]))'
    ),
}
#: Figure -> (PromQL by one label, the label).
BY_LABEL = {
    "DLQ by reason (5 min)": (
        "sum by (reason) (increase(marketpipe_quality_reasons_total[5m]))",
        "reason",
    ),
    "latency p50 s": (
        "histogram_quantile(0.5, sum by (output, le) "
        "(rate(marketpipe_features_latency_seconds_bucket[5m])))",
        "output",
    ),
    "latency p99 s": (
        "histogram_quantile(0.99, sum by (output, le) "
        "(rate(marketpipe_features_latency_seconds_bucket[5m])))",
        "output",
    ),
}


class PrometheusUnavailable(Exception):
    """Prometheus did not answer a query; the message is one line for the page."""


@dataclass
class Health:
    scalars: dict[str, float | None] = field(default_factory=dict)
    by_label: dict[str, dict[str, float]] = field(default_factory=dict)


class Prometheus:
    def __init__(self, url: str, timeout_s: float = 3.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: each series' labels and value."""
        try:
            response = self.session.get(
                f"{self.url}/api/v1/query", params={"query": promql}, timeout=self.timeout_s
            )
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise PrometheusUnavailable(f"Prometheus at {self.url}: {exc}") from exc
        if body.get("status") != "success":
            raise PrometheusUnavailable(f"Prometheus at {self.url}: {body.get('error', body)}")
        return [(s["metric"], float(s["value"][1])) for s in body["data"]["result"]]

    def health(self) -> Health:
        out = Health()
        for name, promql in SCALARS.items():
            result = self.query(promql)
            out.scalars[name] = result[0][1] if result else None
        for name, (promql, label) in BY_LABEL.items():
            out.by_label[name] = {
                labels.get(label, "?"): value for labels, value in self.query(promql)
            }
        return out
