"""How every long-running stage runs (produce, replay, live, quality, features): one place for
what they share, so each command only builds its service and reads its summary.

``service()`` owns, in order: a heartbeat from the first moment (MARKETPIPE_HEALTH_FILE; the
liveness probe must not kill a stage that waits for its broker), telemetry (the /metrics
endpoint, the readiness and heartbeat gauges), the broker and the topics it needs, and
SIGINT/SIGTERM turned into a stop flag the service's loop watches (its heartbeat from then
on). ``finish()`` prints the summary on stdout, a failure as one line on stderr, and returns
the exit code.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from marketpipe.runtime import Heartbeat, Readiness, StopFlag, stop_on_signals
from marketpipe.settings import Settings
from marketpipe.telemetry import Telemetry, setup_telemetry


@dataclass
class Context:
    """What a running service gets: its settings, meter, readiness and stop flag."""

    settings: Settings
    telemetry: Telemetry
    readiness: Readiness
    stop: StopFlag


@contextmanager
def service(
    settings: Settings, name: str, topics: Sequence[str] = (), broker: bool = True
) -> Iterator[Context]:
    """Run the body as service ``name``: heartbeat, telemetry, broker and ``topics``
    reachable, signals to a stop flag; torn down in reverse on every way out."""
    from marketpipe.kafka import require_topic, wait_for_broker

    health = settings.health_file
    startup = Heartbeat(health).beat_in_background() if health else None
    telemetry = setup_telemetry(settings.otel, name)
    try:
        if broker:
            wait_for_broker(settings.kafka)
            for topic in topics:
                require_topic(settings.kafka, topic)
        readiness = Readiness(health)
        if startup is not None:
            startup.set()  # the loop's own beat takes over
        with stop_on_signals(StopFlag(Heartbeat(health) if health else None)) as stop:
            telemetry.watch(stop, readiness)
            yield Context(settings, telemetry, readiness, stop)
    finally:
        if startup is not None:
            startup.set()
        telemetry.shutdown()


def finish(
    name: str, lines: Iterable[str], code: int, failure: str | None = None,
    summary: object = None, as_json: bool = False,
) -> int:  # fmt: skip
    """The summary on stdout (on every way out: what was done, what is left), or with
    ``as_json`` one object ``{command, exit_code, failure, summary}``; a failure as one line
    on stderr; the exit code."""
    if as_json:
        from marketpipe.output import emit

        emit({"command": name, "exit_code": code, "failure": failure, "summary": summary})
    else:
        for line in lines:
            print(line)
    if failure:
        print(f"marketpipe {name}: {failure}", file=sys.stderr)
    return code
