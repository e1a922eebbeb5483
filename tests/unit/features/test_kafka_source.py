"""The Python Kafka source's offset planning and tick decoding (no Spark, no broker)."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import KafkaError, KafkaException

from marketpipe.contracts import TICK_FIELDS, TickColumns, decode_tick
from marketpipe.features import kafka_source
from marketpipe.features.kafka_source import TICK_ARROW_SCHEMA, cap_offsets, decode_ticks


@pytest.mark.parametrize(
    ("lag", "budget"),
    [({"0": 100, "1": 100, "2": 100}, 30), ({"0": 5, "1": 1000}, 100), ({"0": 0, "1": 7}, 3),
     ({"0": 10, "1": 10}, 50), ({"0": 1, "1": 1, "2": 1}, 2)],
)  # fmt: skip
def test_the_offset_budget_is_shared_by_lag(lag: dict[str, int], budget: int) -> None:
    share = cap_offsets(lag, budget)
    assert sum(share.values()) == min(budget, sum(lag.values()))
    assert all(0 <= share[p] <= lag[p] for p in lag)
    total = sum(lag.values())
    if total > budget:  # proportional, give or take the one offset of rounding
        assert all(abs(share[p] - lag[p] * budget / total) <= 1 for p in lag)


def ticks(n: int) -> TickColumns:
    cols = TickColumns(source="synthetic")
    for i in range(n):
        cols.symbol.append(f"S{i % 3}")
        cols.event_time.append(1_700_000_000_000_000 + i)
        cols.seq.append(i + 1)
        cols.price.append(100.0 + i / 100)
        cols.size.append(None if i % 2 else float(i))
        cols.bid.append(99.99)
        cols.ask.append(100.01)
        cols.bid_size.append(5.0)
        cols.ask_size.append(None)
    return cols


def test_decoded_ticks_are_the_contract_columns_of_every_value_in_order() -> None:
    cols = ticks(50)
    table = decode_ticks(cols.encode())
    assert table.schema == TICK_ARROW_SCHEMA
    assert [f.name for f in TICK_ARROW_SCHEMA] == list(TICK_FIELDS)
    expected = [decode_tick(v).to_dict() for v in cols.encode()]
    assert table.to_pylist() == expected


def test_a_value_that_does_not_parse_is_a_row_of_nulls_in_its_place() -> None:
    values = ticks(3).encode()
    values.insert(1, b"not json")
    values.append(b'{"symbol": 5}')  # a field of the wrong type
    values.append(b"")
    got = decode_ticks(values).to_pylist()
    assert len(got) == 6
    for bad in (1, 4, 5):
        assert set(got[bad].values()) == {None}
    assert [r["seq"] for r in got if r["seq"] is not None] == [1, 2, 3]


def test_a_value_spread_over_lines_still_parses() -> None:
    values = ticks(2).encode()
    values[0] = json.dumps(json.loads(values[0]), indent=2).encode()
    assert [r["seq"] for r in decode_ticks(values).to_pylist()] == [1, 2]


def test_no_values_no_rows() -> None:
    assert decode_ticks([]).num_rows == 0


def test_planning_a_batch_waits_out_a_restarting_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[object] = [
        KafkaException(KafkaError(KafkaError._TRANSPORT)),  # refused: the broker is down
        RuntimeError("topic 'ticks.valid' not found"),  # up, its topics not loaded yet
        {"0": (0, 7), "1": (3, 9)},
    ]

    def watermarks(options: dict[str, str]) -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(kafka_source, "_watermarks", watermarks)
    slept: list[float] = []
    assert kafka_source._highs({}, 60, slept.append) == {"0": 7, "1": 9}
    assert slept == [1.0, 1.0]


def test_planning_a_batch_gives_up_after_its_time(monkeypatch: pytest.MonkeyPatch) -> None:
    def down(options: dict[str, str]) -> object:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT))

    monkeypatch.setattr(kafka_source, "_watermarks", down)
    with pytest.raises(KafkaException):
        kafka_source._highs({}, 0, lambda s: None)


class Message:
    """What ``queued`` reads of a confluent-kafka message (or event: ``error`` set)."""

    def __init__(self, offset: int, error: KafkaError | None = None) -> None:
        self._offset, self._error = offset, error

    def offset(self) -> int:
        return self._offset

    def error(self) -> KafkaError | None:
        return self._error


class Queue:
    """A consumer whose queue holds ``held`` (records and events), given out by consume()."""

    def __init__(self, held: list[Message]) -> None:
        self.held = held

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        assert timeout == 0  # only what is held already: never waits for the broker
        got, self.held = self.held[:num_messages], self.held[num_messages:]
        return got


def offsets_of(batches: object) -> list[int]:
    return [m.offset() for batch in batches for m in batch]  # type: ignore[attr-defined]


def test_queued_takes_records_held_already_up_to_its_limit() -> None:
    first = [Message(o) for o in (100, 101)]
    queue = Queue([Message(o) for o in range(102, 130)])
    assert offsets_of(kafka_source.queued(queue, first, 10)) == list(range(100, 110))
    assert offsets_of(kafka_source.queued(Queue([]), first, 1)) == [100]


def test_queued_stops_at_an_event_or_an_empty_queue() -> None:
    eof = KafkaError(KafkaError._PARTITION_EOF)
    queue = Queue([Message(5), Message(6), Message(7, eof), Message(8)])
    assert offsets_of(kafka_source.queued(queue, [], 100)) == [5, 6]  # not past the event
    assert offsets_of(kafka_source.queued(Queue([]), [Message(4)], 100)) == [4]
