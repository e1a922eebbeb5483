"""Stand-ins for the Kafka publisher and a WebSocket feed in unit tests (the integration tests
use the broker and a real WebSocket server)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from marketpipe.kafka import DeliveryReport


class ListPublisher:
    """Stands in for the Kafka publisher in unit tests (integration tests use the broker)."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes, int]] = []
        self.calls = 0

    def publish(
        self,
        topic: str,
        keys: Sequence[bytes | None],
        values: Sequence[bytes],
        timestamps_ms: Sequence[int] | None = None,
    ) -> int:
        self.calls += 1
        self.sent.extend(zip(keys, values, timestamps_ms or [0] * len(values), strict=True))
        return len(values)

    def close(self, timeout_s: float = 30.0) -> DeliveryReport:
        return DeliveryReport(queued=len(self.sent), queued_bytes=0)


class ScriptedFeed:
    """A WebSocket connection that receives ``frames`` in order, then nothing: ``recv`` times
    out and calls ``at_end`` (say, to stop the source). Records what the client sent."""

    def __init__(self, frames: list[str], at_end: Callable[[], None]) -> None:
        self.frames = list(frames)
        self.at_end = at_end
        self.sent: list[str] = []

    def __enter__(self) -> ScriptedFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def send(self, message: str) -> None:
        self.sent.append(message)

    def recv(self, timeout: float | None = None) -> str:
        if self.frames:
            return self.frames.pop(0)
        self.at_end()
        raise TimeoutError
