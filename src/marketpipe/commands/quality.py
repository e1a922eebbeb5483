"""``quality``: the checker, ticks.raw -> ticks.valid / ticks.dlq."""

from __future__ import annotations

import argparse
import logging

from marketpipe.commands.common import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE
from marketpipe.commands.options import QUALITY
from marketpipe.output import wants_json
from marketpipe.runner import finish
from marketpipe.settings import Settings

log = logging.getLogger("marketpipe")


def cmd_quality(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.kafka.transactions import Fenced, Unavailable
    from marketpipe.quality.service import QualityService
    from marketpipe.runner import service
    from marketpipe.telemetry import QualityInstruments

    cfg = QUALITY.apply(settings.quality, args)
    kafka = settings.kafka
    topics = [kafka.topic_raw, kafka.topic_valid, kafka.topic_dlq, kafka.topic_quality_state]
    checker: QualityService | None = None
    failure: str | None = None
    code = EXIT_OK
    try:
        with service(settings, "quality", topics) as ctx:
            instruments = QualityInstruments.create(ctx.telemetry.meter)
            checker = QualityService(kafka, cfg, instruments, readiness=ctx.readiness)
            log.info(
                "checking %s -> %s / %s (%s, group %s)",
                kafka.topic_raw, kafka.topic_valid, kafka.topic_dlq, cfg.delivery, cfg.group_id,
            )  # fmt: skip
            checker.run(ctx.stop, idle_exit_s=args.until_idle)
    except Fenced as exc:
        failure, code = f"fenced by another instance with the same id, stopping: {exc}", EXIT_FAILED
    except Unavailable as exc:
        failure, code = str(exc), EXIT_UNAVAILABLE
    if checker is None:  # failed while it was being built: no report to print
        return finish("quality", [], code, failure, None, wants_json(args))
    if failure is None and not checker.report.balanced:
        code = EXIT_FAILED
    # On every way out: what was committed, what is left.
    return finish(
        "quality", checker.report.lines(), code, failure, checker.report, wants_json(args)
    )
