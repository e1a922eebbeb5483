"""The sources: ``produce``, ``replay``, ``live`` (each publishes to ticks.raw)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from marketpipe.commands.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from marketpipe.commands.options import FAULTS, LIVE, PRODUCE, REPLAY
from marketpipe.output import wants_json
from marketpipe.runner import finish
from marketpipe.settings import ConfigError, Settings, with_overrides

if TYPE_CHECKING:
    from marketpipe.kafka import Publisher
    from marketpipe.runtime import StopFlag

log = logging.getLogger("marketpipe")
_SummaryT = TypeVar("_SummaryT")


def _publish(
    settings: Settings,
    topic: str,
    service: str,
    source: str,
    run: Callable[[Publisher, StopFlag], _SummaryT],
) -> _SummaryT:
    """What every source command adds to the runner: a counting publisher to ``topic``."""
    from marketpipe.kafka import Publisher
    from marketpipe.runner import service as running
    from marketpipe.telemetry import ProducerInstruments

    with running(settings, service, [topic]) as ctx:
        publisher = Publisher(
            settings.kafka,
            ProducerInstruments.create(ctx.telemetry.meter),
            {"source": source, "topic": topic},
            stopping=ctx.stop.is_set,
            give_up=lambda reason: ctx.stop.set("give-up"),
            readiness=ctx.readiness,
        )
        summary = run(publisher, ctx.stop)
    if publisher.report.gave_up:
        print(
            f"marketpipe {service}: gave up: {publisher.report.gave_up} (is the broker up? "
            "MARKETPIPE_KAFKA__GIVE_UP_S sets how long to wait)",
            file=sys.stderr,
        )
    return summary


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.ingest.producer import ProduceSummary, SyntheticProducer
    from marketpipe.ingest.resume import resume_points

    cfg = PRODUCE.apply(settings.producer, args)
    faults = FAULTS.apply(cfg.faults, args)
    cfg = with_overrides(cfg, {"faults": "fault options"}, faults=faults.model_dump())
    topic = args.topic or settings.kafka.topic_raw
    log.info(
        "producing %s symbols to %s at %s",
        len(cfg.symbol_names()),
        topic,
        f"{cfg.tps:g} tps" if cfg.tps else "full speed",
    )

    def produce(publisher: Publisher, stop: StopFlag) -> ProduceSummary:
        resume = {}
        if cfg.resume:
            resume = resume_points(settings.kafka, topic, cfg.source, cfg.symbol_names())
            if resume:
                log.info("continuing %d symbols from their newest ticks in %s", len(resume), topic)
        return SyntheticProducer(cfg, publisher, topic, resume).run(stop)

    summary = _publish(settings, topic, "producer", cfg.source, produce)
    code = EXIT_OK if summary.delivery.ok else EXIT_FAILED
    return finish("produce", summary.lines(), code, None, summary, wants_json(args))


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.ingest.progress import Progress
    from marketpipe.ingest.readers import FileError
    from marketpipe.ingest.replay import Replayer, check_files

    cfg = REPLAY.apply(settings.replay, args)
    paths = [Path(p) for p in args.files]
    try:
        check_files(paths, cfg)
    except FileError as exc:
        print(f"marketpipe replay: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    topic = args.topic or settings.kafka.topic_raw
    summary = _publish(
        settings, topic, "replay", cfg.source,
        lambda publisher, stop: Replayer(cfg, publisher, topic, Progress()).run(paths, stop),
    )  # fmt: skip
    rejected = sum(summary.accounting.rejected.values())
    failed = not summary.ok or (args.strict and rejected)
    code = EXIT_FAILED if failed else EXIT_OK
    return finish("replay", summary.lines(), code, None, summary, wants_json(args))


def cmd_live(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.ingest.live import LiveSource, LiveSummary
    from marketpipe.ingest.polygon import AuthError, PolygonClient
    from marketpipe.ingest.resume import resume_points
    from marketpipe.ingest.stream import StreamSource, StreamSummary

    cfg = LIVE.apply(settings.live, args)
    if not cfg.symbols:
        raise ConfigError("no symbols: pass --symbols or set MARKETPIPE_LIVE__SYMBOLS")
    try:
        client = PolygonClient(cfg)
    except AuthError as exc:
        raise ConfigError(str(exc)) from None
    topic = args.topic or settings.kafka.topic_raw

    def stream(publisher: Publisher, stop: StopFlag) -> StreamSummary:
        # Where each symbol stands comes from the topic: a restarted pod resumes right.
        resume = resume_points(settings.kafka, topic, cfg.source, cfg.symbols)
        return StreamSource(cfg, client, publisher, topic, resume).run(stop)

    def poll(publisher: Publisher, stop: StopFlag) -> LiveSummary:
        return LiveSource(cfg, client, publisher, topic).run(stop)

    summary: LiveSummary | StreamSummary
    try:
        if cfg.mode == "stream":
            summary = _publish(settings, topic, "live", cfg.source, stream)
        else:
            summary = _publish(settings, topic, "live", cfg.source, poll)
    except AuthError as exc:
        return finish("live", [], EXIT_CONFIG, str(exc), None, wants_json(args))
    code = EXIT_OK if summary.delivery.ok else EXIT_FAILED
    return finish("live", summary.lines(), code, None, summary, wants_json(args))
