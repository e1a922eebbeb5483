"""Ticks from Kafka-shaped rows: DataFrame in, DataFrame out, no I/O.

- ``TICK_SCHEMA``: the tick contract as a Spark schema.
- ``parse_ticks``: Kafka-shaped rows (``key, value, topic, partition, offset, timestamp``, as
  Spark's Kafka connector gives them) -> typed ticks with ``event_ts`` (the event time as a
  timestamp) and their ``partition`` (what the features job's watermark is kept per). The
  Python source decodes in its workers instead (``decode=ticks``).

Bars and window buckets are ``aggregate.step``'s, on Arrow tables.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F  # noqa: N812 - the PySpark convention
from pyspark.sql.pandas.types import from_arrow_schema

from marketpipe.contracts import tick_arrow_schema

#: The tick contract as a Spark schema (explicit, never inferred from data: derived from it).
TICK_SCHEMA = from_arrow_schema(tick_arrow_schema())


def parse_ticks(kafka_rows: DataFrame) -> DataFrame:
    """Decode ``value`` (JSON ticks, already validated upstream) into typed columns."""
    parsed = F.from_json(F.col("value").cast("string"), TICK_SCHEMA)
    return kafka_rows.select(
        parsed.alias("t"), F.col("timestamp").alias("kafka_ts"), F.col("partition")
    ).select(
        "t.*", "kafka_ts", F.timestamp_micros(F.col("t.event_time")).alias("event_ts"), "partition"
    )
