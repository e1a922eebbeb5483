"""The whole pipeline on a local stack of its own, run as a user runs it, with faults on call.

    with Pipeline(make_folder(), PipelineConfig(rate=2000, seconds=75)) as p:
        p.start()                   # checker, features job (ready), then the producer
        p.settle()                  # every stage within 10 s of input: past the JVM's warm-up
        fault = p.outage("kafka", 10, signal.SIGKILL)  # or p.kill_stage("checker"), ...
        report = p.finish([fault])  # drain to lag 0, SIGTERM the stages, account, check sinks
        assert report.ok, "\n".join(report.lines())

Services (the noida-db broker, PostgreSQL, SeaweedFS) are ``LocalStack``'s, in ``folder``;
stages are ``marketpipe`` subprocesses (see ``stages.Stage``) on topics, a consumer group, a
database and an S3 prefix of the run's own. The features job writes PostgreSQL (the
production hot sink) and Parquet on S3 (the cold sink and raw archive).
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg
from confluent_kafka import Producer

from benchmarks.pipeline.accounting import Accounting, Observer, account, final_ledger
from benchmarks.pipeline.env import service_env
from benchmarks.pipeline.lag import (
    LagProbe,
    LagSample,
    caught_up_after,
    producing_again_after,
)
from benchmarks.pipeline.sinkcheck import (
    SinkReport,
    archive_once,
    cold_duplicates,
    hot_duplicates,
    parse_validate,
)
from benchmarks.pipeline.stages import Argv, Stage
from marketpipe.kafka import ensure_topics, pipeline_topics, producer_config
from marketpipe.local.stack import LocalStack
from marketpipe.settings import FeaturesSettings, LocalSettings, Settings, settings_with_env

log = logging.getLogger(__name__)

US = 1_000_000
ACKED = re.compile(r"^delivery: (\d+) acknowledged", re.M)
FEATURES_READY = "streaming queries over"
#: The Spark queries of the features job, by checkpoint folder.
QUERIES = ("features", "archive")


@dataclass(frozen=True)
class PipelineConfig:
    rate: float = 2_000.0  # ticks/s offered by the producer
    seconds: float = 60.0  # how long the producer produces (over all its runs)
    symbols: int = 10
    partitions: int = 3
    seed: int = 7
    features: bool = True
    #: The product's default, so a benchmark measures what users run (it was pinned at 1.0
    #: here and kept the benchmarks on 1.0 after the product's default went to 0.5).
    trigger_s: float = FeaturesSettings.model_fields["trigger_s"].default
    #: Shorter than the product's default (10 s), so the fault tests see the archive and the
    #: cold exports move within their runs; a benchmark passes the default.
    cold_trigger_s: float = 2.0
    restart_delay_s: float = 2.0
    sample_every_s: float = 1.0
    #: Tail the topics all along: needed to tell broker losses apart, so only where the
    #: broker is restarted. The local broker answers a fetch at once when it has nothing (no
    #: long poll), so a tailing consumer's fetch thread kept a third of a core busy, and the
    #: broker more, taken from the stages measured (the features job's kill -9 recovery: 31.7 s
    #: with it, 18.2 s without, medians of 5, 2026-11-29). Without it, what a broker loses
    #: counts as marketpipe's loss. Its memory grows with the run (a soak turns it off).
    observe: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    what: str
    started: float  # time.monotonic()
    cleared: float  # when the fault was over: the service answered again, or the kill was sent


@dataclass
class Report:
    accounting: Accounting
    sinks: SinkReport | None
    stages: dict[str, str]
    exit_codes: dict[str, list[int | None]]
    restarts: dict[str, int]
    #: fault -> stage -> seconds from the fault clearing until the stage was caught up
    recovery: dict[str, dict[str, float | None]]
    #: fault -> stage -> its lag just before the fault, in seconds of input
    lag_before: dict[str, dict[str, float]]
    drain_s: float | None
    folder: Path

    @property
    def ok(self) -> bool:
        return self.accounting.ok and (self.sinks is None or self.sinks.ok)

    def lines(self) -> list[str]:
        out = [*self.accounting.lines()]
        if self.sinks is not None:
            out += self.sinks.lines()
        out += list(self.stages.values())
        for fault, stages in self.recovery.items():
            shown = ", ".join(
                f"{s} {'never' if v is None else f'{v:.1f}s'}" for s, v in stages.items()
            )
            out.append(f"after {fault}: caught up: {shown}")
            behind = ", ".join(f"{s} {v:g}s" for s, v in self.lag_before.get(fault, {}).items())
            out.append(f"  lag just before it, in seconds of input: {behind}")
        drained = "not within the limit" if self.drain_s is None else f"{self.drain_s:.1f}s"
        out.append(f"drained to lag 0 after the producer ended: {drained}")
        out.append(f"stage outputs and service logs: {self.folder}")
        return out


def stop_on_sigterm() -> None:
    """Make SIGTERM (``kill``, a CI job cancelled, ``timeout``) end a benchmark the way Ctrl-C
    does: as an exception in the main thread, so every ``with Pipeline`` block stops its
    stages and its local stack. Without it the process died at once and left the broker,
    PostgreSQL, the S3 server and the stages running."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def make_folder(prefix: str = "marketpipe-pipeline-") -> Path:
    """A fresh folder PostgreSQL's user can enter (pytest's tmp_path is 0700)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


class Pipeline:
    def __init__(self, folder: Path, cfg: PipelineConfig | None = None) -> None:
        self.folder = folder
        self.cfg = cfg or PipelineConfig()
        self.run_id = uuid.uuid4().hex[:8]
        local = LocalSettings(data_dir=folder / "stack")
        base = Settings(_env_file=None, local=local)
        self.stack = LocalStack(base)
        self.settings = base
        self.stages: dict[str, Stage] = {}
        self.samples: list[LagSample] = []
        self.injected_acks = 0
        self.first_event_us = 0
        self._producer_end = 0.0
        self._stop_sampling = threading.Event()
        self._sampler: threading.Thread | None = None
        self._observer: Observer | None = None
        self._probe: LagProbe | None = None

    # -- set-up and tear-down ------------------------------------------------------------------
    def __enter__(self) -> Pipeline:
        self.folder.chmod(0o755)
        self.stack.up()
        self.settings = self._run_settings(
            settings_with_env(self.settings, self.stack.endpoint_env())
        )
        kafka = self.settings.kafka
        ensure_topics(kafka, pipeline_topics(kafka))
        admin = self.settings.postgres.conninfo("postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.settings.postgres.database}")
        migrated = self.cli("db", "migrate")
        if migrated.returncode:
            raise RuntimeError(f"db migrate failed: {migrated.stderr}")
        if self.cfg.observe:
            roles = {"raw": kafka.topic_raw, "valid": kafka.topic_valid, "dlq": kafka.topic_dlq}
            self._observer = Observer(kafka, roles).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for stage in self.stages.values():
            with contextlib.suppress(Exception):
                stage.stop(timeout_s=10)
        self._stop_sampling.set()
        if self._sampler is not None:
            self._sampler.join(10)
        if self._observer is not None:
            self._observer.stop()
        if self._probe is not None:
            self._probe.close()
        self.stack.down()

    def _run_settings(self, settings: Settings) -> Settings:
        """Topics, group, database, S3 prefix and checkpoints of this run's own."""
        run, cfg = self.run_id, self.cfg
        kafka = settings.kafka.model_copy(update={
            "topic_raw": f"{run}.ticks.raw", "topic_valid": f"{run}.ticks.valid",
            "topic_dlq": f"{run}.ticks.dlq", "topic_quality_state": f"{run}.ticks.quality.state",
            "partitions": cfg.partitions,
        })  # fmt: skip
        quality = settings.quality.model_copy(
            update={"group_id": f"{run}.quality", "instance_id": f"checker-{run}"}
        )
        features = settings.features.model_copy(update={
            "sinks": ["postgres", "parquet"],
            "archive_root": f"s3://{settings.s3.bucket}/{run}",
            "checkpoint_dir": str(self.folder / "checkpoints"),
            "trigger_s": cfg.trigger_s, "cold_trigger_s": cfg.cold_trigger_s,
        })  # fmt: skip
        postgres = settings.postgres.model_copy(update={"database": f"p_{run}"})
        return settings.model_copy(
            update={"kafka": kafka, "quality": quality, "features": features, "postgres": postgres}
        )

    @property
    def env(self) -> dict[str, str]:
        return {**service_env(self.settings), **self.cfg.extra_env}

    def cli(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        """A one-shot ``marketpipe`` command against this run's services."""
        return subprocess.run(
            [sys.executable, "-m", "marketpipe", *args], env=self.env, capture_output=True,
            text=True, timeout=timeout_s, check=False,
        )  # fmt: skip

    # -- stages --------------------------------------------------------------------------------
    def start_stage(self, name: str, argv: Argv) -> Stage:
        """Any ``marketpipe`` command as a supervised stage (``argv(n)``: run n's arguments)."""
        stage = Stage(name, argv, self.env, self.folder, self.cfg.restart_delay_s)
        self.stages[name] = stage
        return stage.start()

    def start_checker(self) -> Stage:
        return self.start_stage("checker", lambda n: ["quality"])

    def start_features(self, ready_timeout_s: float = 120.0) -> Stage:
        stage = self.start_stage("features", lambda n: ["features"])
        deadline = time.monotonic() + ready_timeout_s
        while FEATURES_READY not in (stage.current.stderr() if stage.current else ""):
            if stage.done or time.monotonic() > deadline:
                raise RuntimeError(f"features job did not start:\n{stage.tail()}")
            time.sleep(0.5)
        return stage

    def start_producer(self, seconds: float | None = None) -> Stage:
        """Produce at ``cfg.rate`` for ``seconds`` over all runs: a restarted run produces
        for what is left, under a source of its own (``synthetic-<run>``), because a
        generator's seqs start again at 1 where a real feed's would go on."""
        cfg = self.cfg
        self._producer_end = time.monotonic() + (seconds or cfg.seconds)
        if not self.first_event_us:
            self.first_event_us = time.time_ns() // 1000 - US

        def argv(n: int) -> list[str]:
            left = max(1.0, self._producer_end - time.monotonic())
            return ["produce", "--tps", f"{cfg.rate:g}", "--duration", f"{left:.1f}",
                    "--symbol-count", str(cfg.symbols), "--seed", str(cfg.seed + n),
                    "--source", f"synthetic-{n}"]  # fmt: skip

        return self.start_stage("producer", argv)

    def start(self, seconds: float | None = None) -> None:
        """Checker and features job first (Spark takes its 10-20 s), then the producer; lag
        is sampled from here on."""
        self.start_checker()
        if self.cfg.features:
            self.start_features()
        self.start_sampling()
        self.start_producer(seconds)

    # -- faults --------------------------------------------------------------------------------
    def outage(self, service: str, down_s: float, sig: int = signal.SIGTERM) -> Fault:
        """Take a local service away (SIGTERM: its own clean stop; SIGKILL: a crash) for
        ``down_s`` seconds, then start it again on the same ports with its data."""
        started = time.monotonic()
        self.stack.stop_service(service, sig)
        time.sleep(max(0.0, started + down_s - time.monotonic()))
        self.stack.up()
        name = f"{service} {signal.Signals(sig).name}, down {time.monotonic() - started:.0f}s"
        log.info("fault over: %s", name)
        return Fault(name, started, time.monotonic())

    def kill_stage(self, stage: str, sig: int = signal.SIGKILL) -> Fault:
        now = time.monotonic()
        self.stages[stage].kill(sig)
        return Fault(f"{stage} {signal.Signals(sig).name}", now, now)

    def produce_raw(self, values: list[bytes], key: bytes | None = None) -> int:
        """Put records straight into the raw topic (what a misbehaving client might send),
        uncompressed so their size on the broker is the value's plus 72 bytes of framing;
        returns how many the broker acknowledged (counted with the producers' acks)."""
        conf = producer_config(self.settings.kafka)
        conf["compression.type"] = "none"
        conf["message.max.bytes"] = max(1_000_000, *(len(v) + 10_000 for v in values))
        failed: list[str] = []
        producer = Producer(conf)
        for value in values:
            producer.produce(
                self.settings.kafka.topic_raw, value, key,
                on_delivery=lambda err, _m: failed.append(err.str()) if err else None,
            )  # fmt: skip
        producer.flush(30)
        acked = len(values) - len(failed)
        self.injected_acks += acked
        return acked

    # -- lag -----------------------------------------------------------------------------------
    def process_roots(self) -> dict[str, int]:
        """Every process tree to measure: each stage's current run and each service."""
        out = {n: s.current.pid for n, s in self.stages.items() if s.current and s.running()}
        out.update({f"{st.name} (service)": st.pid for st in self.stack.status() if st.pid})
        return out

    def start_sampling(self) -> None:
        if self._sampler is not None:
            return
        self._probe = LagProbe(self.settings.kafka, self.settings.quality.group_id)
        self._sampler = threading.Thread(target=self._sample_loop, name="lag", daemon=True)
        self._sampler.start()

    def _checkpoints(self) -> dict[str, Path]:
        if not self.cfg.features:
            return {}
        root = Path(self.settings.features.checkpoint_dir)
        return {q: root / q for q in QUERIES}

    def _sample_loop(self) -> None:
        assert self._probe is not None
        while not self._stop_sampling.wait(self.cfg.sample_every_s):
            try:
                self.samples.append(self._probe.sample(self._checkpoints()))
            except Exception as exc:  # sampling must never end the run
                log.warning("lag sample failed: %s", exc)

    def lag_now(self) -> LagSample | None:
        return self.samples[-1] if self.samples else None

    def drain(self, timeout_s: float = 180.0, stages: Sequence[str] | None = None) -> float | None:
        """Wait for the producer to finish, then for every stage (or those of ``stages``) to
        reach lag 0 (two samples in a row); returns the seconds that took after the producer
        ended, None on timeout."""
        producer = self.stages.get("producer")
        deadline = time.monotonic() + timeout_s
        if producer is not None:
            producer.wait(max(1.0, self._producer_end - time.monotonic() + 60))
        ended = time.monotonic()
        names = [n for n in ["checker", *self._checkpoints()] if stages is None or n in stages]
        zero = 0
        while time.monotonic() < deadline:
            sample = self.lag_now()
            if sample and sample.t > ended and all(sample.lag(n) == 0 for n in names):
                zero += 1
                if zero >= 2:
                    return time.monotonic() - ended
            else:
                zero = 0
            time.sleep(self.cfg.sample_every_s)
        return None

    def set_topic_config(self, topic: str, config: dict[str, str]) -> None:
        """Converge one of the run's topics to extra configs (e.g. max.message.bytes)."""
        specs = [s for s in pipeline_topics(self.settings.kafka) if s.name == topic]
        ensure_topics(
            self.settings.kafka, [replace(s, config={**s.config, **config}) for s in specs]
        )

    def finish(self, faults: list[Fault] | None = None, drain_timeout_s: float = 180.0) -> Report:
        """Drain (producer done, every stage at lag 0), then stop and verify."""
        return self.verify(faults, self.drain(drain_timeout_s))

    def settle(self, within_s: float = 10.0, timeout_s: float = 120.0) -> float:
        """Wait until every stage has committed work and is within ``within_s`` seconds of
        input of the end (the features job's first micro-batches are slow while its JVM warms
        up; on a busy 2-core machine it then runs 2-6 s behind), so a fault's recovery is not
        measured against a warm-up; returns the seconds waited."""
        started = time.monotonic()
        names = ["checker", *self._checkpoints()]
        limit = self.cfg.rate * within_s
        while time.monotonic() - started < timeout_s:
            sample = self.lag_now()
            # Each has committed work (the job's slow first batch is done) and keeps up.
            if (
                sample
                and sample.t > started
                and all(
                    (got := sample.stages.get(n)) is not None and got[0] > 0 and got[1] <= limit
                    for n in names
                )
            ):
                return time.monotonic() - started
            time.sleep(self.cfg.sample_every_s)
        last = self.lag_now()
        lags = {n: last.lag(n) if last else None for n in names}
        raise RuntimeError(f"stages not within {within_s:g}s of input after {timeout_s:g}s: {lags}")

    def lag_before(self, fault: Fault) -> dict[str, float]:
        """Each stage's lag just before the fault, in seconds of input: what it ran behind
        anyway, to read recovery times against."""
        before = [s for s in self.samples if s.t <= fault.started and s.stages]
        if not before:
            return {}
        return {n: round(v[1] / self.cfg.rate, 1) for n, v in before[-1].stages.items() if v}

    def recovery(self, fault: Fault) -> dict[str, float | None]:
        """Per stage, seconds from the fault clearing until the stage had worked off the
        backlog it faced (for the features job: the one the checker passed on once it had
        caught up). None: it never did while sampled."""
        out: dict[str, float | None] = {
            "producer": producing_again_after(self.samples, fault.cleared)
        }
        checker = out["checker"] = caught_up_after(self.samples, "checker", fault.cleared)
        for name in self._checkpoints():
            out[name] = None
            if checker is not None:
                after = caught_up_after(self.samples, name, fault.cleared + checker)
                out[name] = None if after is None else checker + after
        return out

    # -- verdict -------------------------------------------------------------------------------
    def acknowledged(self) -> int | None:
        producer = self.stages.get("producer")
        total = self.injected_acks
        for run in producer.runs if producer else []:
            found = ACKED.search(run.stdout())
            if found is None:
                return None
            total += int(found.group(1))
        return total

    def stop_stages(self) -> None:
        for name in ("producer", "checker", "features"):
            if name in self.stages:
                self.stages[name].stop()

    def verify(self, faults: list[Fault] | None = None, drain_s: float | None = None) -> Report:
        """Stop every stage (SIGTERM), then account for every tick and check the sinks."""
        recovery = {f.what: self.recovery(f) for f in faults or []}
        behind = {f.what: self.lag_before(f) for f in faults or []}
        self.stop_stages()
        self._stop_sampling.set()
        if self._observer is not None:
            time.sleep(2.0)  # the observer's last reads
        ledger = final_ledger(self.settings.kafka, self._observer)
        ledger.acknowledged = self.acknowledged()
        sinks = self.check_sinks(ledger.valid) if self.cfg.features else None
        return Report(
            accounting=account(ledger),
            sinks=sinks,
            stages={n: s.describe() for n, s in self.stages.items()},
            exit_codes={n: s.exit_codes for n, s in self.stages.items()},
            restarts={n: s.restarts for n, s in self.stages.items()},
            recovery=recovery,
            lag_before=behind,
            drain_s=drain_s,
            folder=self.folder,
        )

    def check_sinks(self, valid: object) -> SinkReport:
        report = SinkReport()
        # From a window length before the first tick: the windows that hold the first ticks
        # are compared too (nothing came before them on the run's own topics).
        start = self.first_event_us - self.settings.features.window_length_s * US
        end = time.time_ns() // 1000 + US
        checked = self.cli(
            "validate", "--start", str(start), "--end", str(end), "--sink", "postgres"
        )
        report.validate_ok, report.validate_lines = parse_validate(
            checked.stdout + checked.stderr, checked.returncode
        )
        hot_duplicates(self.settings, report)
        cold_duplicates(self.settings, report)
        archive_once(self.settings, valid, start, end, report)  # type: ignore[arg-type]
        return report
