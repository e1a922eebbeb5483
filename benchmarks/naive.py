"""A naive baseline: the Kafka -> Python -> PostgreSQL pipeline of a typical tutorial, run on the
same machine as marketpipe so that its figures can be given as ratios to this one.

- producer (one process): per tick, ``json.dumps`` a dict, ``produce`` it, ``flush()``;
- consumer (one process): ``poll()`` one message, ``json.loads``, INSERT the tick (autocommit:
  a commit per row), update the tick's 1 s bar in a dict, upsert that bar with one statement.

Latency is event time -> the tick's bar row committed (the consumer's clock once the upsert
returns), the counterpart of marketpipe's ``written_at - last_event_time`` for 1 s bars.
Offered rates follow marketpipe's own producer schedule (``Pacer``). Tables and topic have names
of their own and are dropped afterwards. ``run_naive`` is the entry point for other benchmarks.

    python benchmarks/naive.py [--seconds 20 | --count N] [--tps 2000] [--warmup 0] [--drain 10]
        [--runs 1] [--smoke] [--running-services]
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import random
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any

import psycopg
from confluent_kafka import Consumer, Producer

from harness import parse, parser, report, stack, unique
from marketpipe.ingest.pacing import Pacer
from marketpipe.kafka import TopicSpec, admin_client, ensure_topics
from marketpipe.settings import Settings

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0  # consumer group join on a cold broker


@dataclass(frozen=True)
class Usage:
    """One process's CPU (user + system, whole process life) and peak resident set."""

    cpu_s: float
    peak_rss_bytes: int

    @staticmethod
    def of_self() -> Usage:
        own = resource.getrusage(resource.RUSAGE_SELF)
        return Usage(own.ru_utime + own.ru_stime, own.ru_maxrss * 1024)  # Linux: KiB


@dataclass(frozen=True)
class NaiveResult:
    rate_offered: float  # ticks/s asked for; 0 means as fast as possible
    ticks: int  # produced and acknowledged by the broker
    rows: int  # ticks whose bar row was written before the consumer was stopped
    produced_tps: float  # ticks over the producer's time
    sustained_tps: float  # rows over (last row written - first event time)
    drained: bool  # every tick written within drain_s after the producer finished
    catch_up_s: float  # last row written - producer done: ~0 when the consumer kept up
    latency_p50_s: float  # event time -> bar row, ticks after the warm-up (nan: none)
    latency_p95_s: float
    latency_p99_s: float
    cpu_s: float  # both processes
    peak_rss_bytes: int  # sum of both processes' peaks
    processes: dict[str, Usage] = field(default_factory=dict)

    def lines(self) -> list[tuple[str, str]]:
        mib = 1024 * 1024
        return [
            ("offered", f"{self.rate_offered:>10,.0f} /s" if self.rate_offered else "max"),
            ("ticks produced (produce + flush each)", f"{self.ticks:>12,}"),
            ("producer rate", f"{self.produced_tps:>10,.0f} /s"),
            ("rows written (INSERT + upsert each)", f"{self.rows:>12,}"),
            ("sustained end to end", f"{self.sustained_tps:>10,.0f} /s"),
            ("every tick written (within the drain time)", f"{self.drained!s:>12}"),
            ("consumer still writing after the producer", f"{self.catch_up_s:>10.2f} s"),
            ("latency p50 / p95 / p99 (s)", f"{self.latency_p50_s:.3f} / "
             f"{self.latency_p95_s:.3f} / {self.latency_p99_s:.3f}"),
            ("CPU, both processes", f"{self.cpu_s:>10.1f} s"),
            *((f"  {name}: CPU / peak RSS", f"{u.cpu_s:.1f} s / {u.peak_rss_bytes / mib:.0f} MiB")
              for name, u in self.processes.items()),
        ]  # fmt: skip


@dataclass(frozen=True)
class _Names:
    bootstrap: str
    conninfo: str
    topic: str
    ticks_table: str
    bars_table: str


def run_naive(
    settings: Settings,
    tps: float,
    *,
    seconds: float | None = None,
    count: int | None = None,
    symbols: int = 50,
    warmup_s: float = 0.0,
    drain_s: float = 10.0,
) -> NaiveResult:
    """Run the naive pipeline against ``settings``' broker and PostgreSQL: the producer offers
    ``tps`` ticks/s (0: as fast as it can) for ``seconds`` or ``count`` ticks; the consumer gets
    ``drain_s`` after that to catch up (ticks still unwritten then are in no percentile: see
    ``drained``). Latencies of ticks in the first ``warmup_s`` of event time are not counted."""
    if (seconds is None) == (count is None):
        raise ValueError("give seconds or count")
    suffix = unique("naive").replace("-", "_")
    names = _Names(
        settings.kafka.bootstrap_servers, settings.postgres.conninfo(),
        suffix.replace("_", "-"), f"{suffix}_ticks", f"{suffix}_bars",
    )  # fmt: skip
    kafka = settings.kafka
    ensure_topics(kafka, [TopicSpec(names.topic, kafka.partitions, kafka.replication_factor)])
    with psycopg.connect(names.conninfo, autocommit=True) as conn:
        conn.execute(_ddl(names))
    try:
        return _run(names, tps, seconds, count, symbols, warmup_s, drain_s)
    finally:
        with psycopg.connect(names.conninfo, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {names.ticks_table}, {names.bars_table}")
        admin_client(kafka).delete_topics([names.topic])


def _ddl(names: _Names) -> str:
    return f"""
        CREATE TABLE {names.ticks_table} (
            symbol text, event_time timestamptz, seq bigint, price double precision,
            size double precision, bid double precision, ask double precision,
            bid_size double precision, ask_size double precision, source text);
        CREATE TABLE {names.bars_table} (
            symbol text, window_start timestamptz, open double precision,
            high double precision, low double precision, close double precision,
            volume double precision, trades integer, last_event_time timestamptz,
            PRIMARY KEY (symbol, window_start));"""


def _run(
    names: _Names,
    tps: float,
    seconds: float | None,
    count: int | None,
    symbols: int,
    warmup_s: float,
    drain_s: float,
) -> NaiveResult:
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: their own CPU and RSS
    ready, stop = ctx.Event(), ctx.Event()
    total: Synchronized[int] = ctx.Value("q", -1)  # type: ignore[assignment]
    from_consumer, to_parent = ctx.Pipe(duplex=False)
    consumer = ctx.Process(
        target=consume, args=(names, warmup_s, ready, stop, total, to_parent), name="consumer"
    )
    consumer.start()
    to_parent.close()  # the child holds it now: its death ends our recv() with EOFError
    try:
        _wait_ready(ready, consumer)
        from_producer, to_parent_p = ctx.Pipe(duplex=False)
        producer = ctx.Process(
            target=produce, args=(names, tps, seconds, count, symbols, to_parent_p),
            name="producer",
        )  # fmt: skip
        producer.start()
        to_parent_p.close()
        produced = _receive(from_producer, producer)
        producer.join()
        total.value = produced["ticks"]
        from_consumer.poll(drain_s)  # until the consumer is done, or drain_s
        stop.set()
        consumed = _receive(from_consumer, consumer)
        consumer.join()
    finally:
        stop.set()
        consumer.join(10)
        if consumer.is_alive():
            consumer.kill()
    rows = consumed["rows"]
    span = consumed["last_write"] - produced["first_event"]
    catch_up = max(0.0, consumed["last_write"] - produced["first_event"] - produced["elapsed"])
    usage = {"producer": produced["usage"], "consumer": consumed["usage"]}
    p50, p95, p99 = consumed["latency"]
    return NaiveResult(
        rate_offered=tps,
        ticks=produced["ticks"],
        rows=rows,
        produced_tps=produced["ticks"] / produced["elapsed"],
        sustained_tps=rows / span if rows and span > 0 else 0.0,
        drained=rows == produced["ticks"] and catch_up <= drain_s,
        catch_up_s=catch_up,
        latency_p50_s=p50,
        latency_p95_s=p95,
        latency_p99_s=p99,
        cpu_s=sum(u.cpu_s for u in usage.values()),
        peak_rss_bytes=sum(u.peak_rss_bytes for u in usage.values()),
        processes=usage,
    )


def _receive(conn: Connection, process: BaseProcess) -> dict[str, Any]:
    try:
        received: dict[str, Any] = conn.recv()
        return received
    except EOFError:
        process.join(10)
        raise RuntimeError(f"naive {process.name} died (exit code {process.exitcode})") from None


def _wait_ready(ready: Event, consumer: BaseProcess) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready.wait(0.2):
        if consumer.exitcode is not None:
            raise RuntimeError(f"naive consumer exited with {consumer.exitcode} before starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"naive consumer got no partitions in {READY_TIMEOUT_S:.0f} s")


def produce(
    names: _Names,
    tps: float,
    seconds: float | None,
    count: int | None,
    symbols: int,
    out: Connection,
) -> None:
    """The tutorial producer: a dict per tick, json.dumps, produce, flush."""
    producer = Producer({"bootstrap.servers": names.bootstrap})
    pacer = Pacer(tps)
    rng = random.Random(1)
    prices = [100.0] * symbols
    produced = 0
    started = time.time()
    end = started + seconds if seconds is not None else math.inf
    while (count is None or produced < count) and time.time() < end:
        left = None if count is None else count - produced
        for event_us in pacer.next_times(left).tolist():
            i = produced % symbols
            prices[i] = round(max(1.0, prices[i] + rng.choice((-0.01, 0.0, 0.01))), 2)
            tick = {
                "symbol": f"SYM{i:03d}", "event_time": event_us, "seq": produced // symbols,
                "price": prices[i], "size": 100.0, "bid": round(prices[i] - 0.01, 2),
                "ask": round(prices[i] + 0.01, 2), "bid_size": 500.0, "ask_size": 500.0,
                "source": "naive",
            }  # fmt: skip
            producer.produce(names.topic, json.dumps(tick).encode(), tick["symbol"].encode())
            if producer.flush(30):
                raise RuntimeError("naive producer: a message was not acknowledged in 30 s")
            produced += 1
            if time.time() >= end:
                break
    out.send(
        {
            "ticks": produced,
            "first_event": started,
            "elapsed": time.time() - started,
            "usage": Usage.of_self(),
        }
    )


def consume(
    names: _Names,
    warmup_s: float,
    ready: Event,
    stop: Event,
    total: Synchronized[int],
    out: Connection,
) -> None:
    """The tutorial consumer: one message, json.loads, INSERT, 1 s bar in a dict, upsert."""
    consumer = Consumer(
        {
            "bootstrap.servers": names.bootstrap,
            "group.id": names.topic,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([names.topic], on_assign=lambda _c, _p: ready.set())
    insert_tick = f"INSERT INTO {names.ticks_table} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    upsert_bar = (
        f"INSERT INTO {names.bars_table} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (symbol, window_start) DO UPDATE SET high = excluded.high, "
        "low = excluded.low, close = excluded.close, volume = excluded.volume, "
        "trades = excluded.trades, last_event_time = excluded.last_event_time"
    )
    bars: dict[str, dict[str, Any]] = {}  # symbol -> its current 1 s bar
    event_times: list[float] = []
    latencies: list[float] = []
    last_write = 0.0
    with psycopg.connect(names.conninfo, autocommit=True) as conn:
        try:
            while not stop.is_set() and not 0 <= total.value <= len(latencies):
                msg = consumer.poll(0.1)
                if msg is None:
                    continue
                if msg.error():
                    log.warning("consumer error: %s", msg.error())
                    continue
                tick = json.loads(msg.value())  # type: ignore[arg-type]
                event_time = tick["event_time"] / 1e6
                at = datetime.fromtimestamp(event_time, UTC)
                conn.execute(
                    insert_tick,
                    (tick["symbol"], at, tick["seq"], tick["price"], tick["size"], tick["bid"],
                     tick["ask"], tick["bid_size"], tick["ask_size"], tick["source"]),
                )  # fmt: skip
                second = datetime.fromtimestamp(math.floor(event_time), UTC)
                bar = bars.get(tick["symbol"])
                if bar is None or bar["window_start"] != second:
                    bar = bars[tick["symbol"]] = {
                        "window_start": second, "open": tick["price"], "high": tick["price"],
                        "low": tick["price"], "volume": 0.0, "trades": 0,
                    }  # fmt: skip
                bar["high"] = max(bar["high"], tick["price"])
                bar["low"] = min(bar["low"], tick["price"])
                bar["volume"] += tick["size"]
                bar["trades"] += 1
                conn.execute(
                    upsert_bar,
                    (tick["symbol"], second, bar["open"], bar["high"], bar["low"], tick["price"],
                     bar["volume"], bar["trades"], at),
                )  # fmt: skip
                last_write = time.time()
                event_times.append(event_time)
                latencies.append(last_write - event_time)
        finally:
            consumer.close()
    since = min(event_times, default=0.0) + warmup_s  # once: in the comprehension it was n^2
    counted = [lat for t, lat in zip(event_times, latencies, strict=True) if t >= since]
    out.send(
        {
            "rows": len(latencies),
            "last_write": last_write,
            "latency": percentiles(counted),
            "usage": Usage.of_self(),
        }
    )


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """p50, p95, p99 (linear between closest ranks); nan when there is nothing to rank."""
    if len(values) < 2:
        return (values[0],) * 3 if values else (math.nan,) * 3
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def main() -> int:
    options = parser(__doc__.split("\n", 1)[0], runs=1, count=None)
    amount = options.add_mutually_exclusive_group()
    amount.add_argument("--seconds", type=float, default=None, help="default 20")
    amount.add_argument("--count", type=int, default=None)
    options.add_argument("--tps", type=float, default=2000, help="offered rate; 0: max")
    options.add_argument("--warmup", type=float, default=0.0)
    options.add_argument("--drain", type=float, default=10.0, help="catch-up time after the end")
    args = parse(options, seconds=1.0, count=None, tps=200)
    if args.seconds is None and args.count is None:
        args.seconds = 20.0
    logging.basicConfig(level=logging.WARNING)
    results = []
    with stack(args, ["kafka", "postgres"], pin_self=False) as bench:
        for i in range(args.runs):
            results.append(
                run_naive(bench.settings, args.tps, seconds=args.seconds, count=args.count,
                          warmup_s=args.warmup, drain_s=args.drain)
            )  # fmt: skip
            report(f"naive pipeline, run {i + 1}/{args.runs}", results[-1].lines())
    if args.runs > 1:
        med = statistics.median
        report(
            f"medians of {args.runs} runs",
            [
                ("sustained end to end", f"{med(r.sustained_tps for r in results):>10,.0f} /s"),
                ("latency p50", f"{med(r.latency_p50_s for r in results):>10.2f} s"),
                ("latency p99", f"{med(r.latency_p99_s for r in results):>10.2f} s"),
            ],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
