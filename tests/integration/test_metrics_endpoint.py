"""Every stage's /metrics, scraped by a real Prometheus while ticks flow: what it shows agrees
with what the stages themselves account for (their exit summaries, the topics)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from marketpipe.dashboard.health import SCALARS
from marketpipe.dashboard.health import Prometheus as WebPrometheus
from marketpipe.local.process import free_port
from marketpipe.settings import Settings
from tests.conftest import REPO_ROOT
from tests.integration.helpers import service_env
from tests.integration.prometheus import Prometheus, running_prometheus

TICKS = 3_000
GRAFANA = REPO_ROOT / "charts" / "marketpipe" / "files" / "grafana"
#: Pipeline-health panels with series while the features job runs (the checker has exited).
FED_BY_THE_JOB = {
    "Ticks per second by stage", "Event time -> row latency p50 / p99",
    "Micro-batch duration p99", "Rows written per second", "Stages ready",
    "Seconds since each stage's loop turned", "Memory (resident)",
}  # fmt: skip


def start(settings: Settings, port: int, log: Path, *args: str) -> subprocess.Popen[str]:
    env = service_env(settings) | {
        "MARKETPIPE_OTEL__METRICS_PORT": str(port),
        "MARKETPIPE_OTEL__METRICS_ADDRESS": "127.0.0.1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "marketpipe", *args], env=env, text=True,
        stdout=subprocess.PIPE, stderr=log.open("w"),
    )  # fmt: skip


def check_dashboard_queries(prom: Prometheus) -> None:
    """Every query of the pipeline-health dashboard runs (Grafana's variables filled in as
    Grafana would); the panels fed by the features job, still running, have series."""
    # A rate needs two samples in its window: wait until the newest series has a few.
    prom.wait_for(
        'count_over_time(marketpipe_features_latency_seconds_count{output="bars_1s"}[1m])',
        lambda n: n is not None and n >= 3,
    )
    board = json.loads((GRAFANA / "pipeline-health.json").read_text())
    empty = []
    for panel in board["panels"]:
        found = []
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$namespace", ".*")
            found += prom.query(expr)  # raises on a query Prometheus refuses
        if not found:
            empty.append(panel["title"])
    assert not set(empty) & FED_BY_THE_JOB, empty


def check_web_dashboard_health(prom: Prometheus, crossed: int) -> None:
    """`marketpipe dashboard`'s health figures, from the same Prometheus: every query runs, and
    the DLQ reasons and the features job's lag agree with the stages."""
    health = WebPrometheus(prom.url).health()
    assert set(health.scalars) == set(SCALARS)
    assert health.scalars["features lag"] == 0
    assert health.by_label["DLQ by reason (5 min)"].get("crossed", 0) > 0
    assert crossed > 0
    p99 = health.by_label["latency p99 s"]
    assert "bars_1s" in p99


def summary_number(text: str, pattern: str) -> int:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in:\n{text}"
    return int(found.group(1).replace(",", ""))


@pytest.mark.timeout(420)
def test_prometheus_sees_what_every_stage_accounts_for(settings: Settings, tmp_path: Path) -> None:
    features = settings.features.model_copy(update={
        "checkpoint_dir": str(tmp_path / "checkpoints"),
        "duckdb_path": str(tmp_path / "features.duckdb"),
        "archive_root": str(tmp_path / "archive"),
    })  # fmt: skip
    settings = settings.model_copy(update={"features": features})
    ports = {"producer": free_port(), "quality": free_port(), "features": free_port()}
    with running_prometheus(tmp_path / "prometheus", ports) as prom:
        job = start(settings, ports["features"], tmp_path / "features.err", "features")
        checker = start(settings, ports["quality"], tmp_path / "quality.err",
                        "quality", "--until-idle", "8")  # fmt: skip
        try:
            prom.wait_for('up{job="features"}', lambda v: v == 1, 120)
            producer = start(settings, ports["producer"], tmp_path / "producer.err",
                             "produce", "--count", str(TICKS), "--tps", "500",
                             "--symbol-count", "5", "--crossed", "0.02")  # fmt: skip
            # The producer exits once done: its counter is compared while it still runs.
            prom.wait_for('marketpipe_ticks_produced_total{job="producer"}', bool)
            produced_out, _ = producer.communicate(timeout=60)
            assert producer.returncode == 0
            acked = summary_number(produced_out, r"delivery: (\d+) acknowledged")
            checker_out, _ = checker.communicate(timeout=120)  # idles 8 s: scraped meanwhile
            assert checker.returncode == 0, (tmp_path / "quality.err").read_text()[-2000:]
            consumed = summary_number(checker_out, r"consumed (\d+) =")
            valid = summary_number(checker_out, r"valid (\d+)")
            dlq = summary_number(checker_out, r"dlq (\d+) \(")
            crossed = summary_number(checker_out, r"crossed=(\d+)")
            assert consumed == acked > 0
            assert dlq == crossed > 0

            def most(metric: str, labels: str = "") -> float | None:
                """The highest value the checker's series reached (it has exited)."""
                return prom.value(f'max_over_time({metric}{{job="quality"{labels}}}[5m])')

            assert most("marketpipe_quality_consumed_total") == consumed
            assert most("marketpipe_quality_valid_total") == valid
            assert most("marketpipe_quality_dlq_total") == dlq
            assert most("marketpipe_quality_reasons_total", ',reason="crossed"') == crossed
            assert most("marketpipe_quality_transactions_total", ',outcome="committed"')
            assert most("marketpipe_ready") == 1
            lag = prom.query('last_over_time(marketpipe_quality_lag{job="quality"}[5m])')
            assert {s["metric"]["partition"]: s["value"][1] for s in lag} == dict.fromkeys(
                ("0", "1", "2"), "0"
            )  # per partition, caught up when it went idle
            # The features job reads every valid tick: its input counters reach the count,
            # and its source lag falls to zero.
            for query in ("features", "archive"):
                prom.wait_for(f'marketpipe_features_input_total{{query="{query}"}}',
                              lambda v: v == valid, 120)  # fmt: skip
            prom.wait_for('marketpipe_features_source_lag{query="features"}',
                          lambda v: v == 0, 60)  # fmt: skip
            rows = prom.value('marketpipe_features_rows_written_total{output="bars_1s"}')
            assert rows is not None
            assert rows > 0
            # Since the job started (its first batch waits for Spark's start-up: tens of s).
            p99 = prom.value(
                "histogram_quantile(0.99, sum by (le) "
                '(marketpipe_features_latency_seconds_bucket{output="bars_1s"}))'
            )
            assert p99 is not None
            assert 0 < p99 < 300
            assert prom.value('marketpipe_features_batch_duration_seconds_count{query="features"}')
            beat = prom.value('marketpipe_heartbeat_timestamp_seconds{job="features"}')
            assert beat is not None
            assert beat > time.time() - 60
            check_dashboard_queries(prom)
            check_web_dashboard_health(prom, crossed)
        finally:
            for proc in (checker, job):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            job.communicate(timeout=90)
            checker.wait(30)
    assert job.returncode == 0, (tmp_path / "features.err").read_text()[-3000:]
