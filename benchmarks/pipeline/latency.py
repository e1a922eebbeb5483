"""Event time -> row latency of what the features job wrote to PostgreSQL, per output.

Every bars and window_features row carries ``written_at`` (stamped just before its last write)
and ``last_event_time`` (the newest tick it holds); their difference is how long the newest
tick took from its event time to the row. Outputs are ``bars_<n>s`` and ``window_features``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

_CUTS = "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY s), count(*)"
_SQL = f"""
    SELECT 'bars_' || interval_seconds || 's', {_CUTS}
    FROM (SELECT interval_seconds, extract(epoch FROM written_at - last_event_time) AS s
          FROM bars WHERE {{where}}) b GROUP BY interval_seconds
    UNION ALL
    SELECT 'window_features', {_CUTS}
    FROM (SELECT extract(epoch FROM written_at - last_event_time) AS s
          FROM window_features WHERE {{where}}) w HAVING count(*) > 0"""
#: Rows whose newest tick is at or after a time (``%(since)s``).
EVENT_SINCE = "last_event_time >= %(since)s"
#: Rows written in the last ``%(within_s)s`` seconds.
WRITTEN_WITHIN = "written_at > now() - make_interval(secs => %(within_s)s)"


@dataclass(frozen=True)
class Latency:
    p50_s: float
    p95_s: float
    p99_s: float
    rows: int


def row_latency(
    conninfo: str, *, since: datetime | None = None, within_s: float | None = None
) -> dict[str, Latency]:
    """Per output, the latency percentiles of the rows whose newest tick is from ``since`` on,
    or that were written in the last ``within_s`` seconds. Empty if the database does not
    answer (a sample taken during an outage)."""
    if (since is None) == (within_s is None):
        raise ValueError("give since or within_s")
    where = EVENT_SINCE if since is not None else WRITTEN_WITHIN
    try:
        with psycopg.connect(conninfo, connect_timeout=3) as conn:
            rows = conn.execute(
                _SQL.format(where=where), {"since": since, "within_s": within_s}
            ).fetchall()
    except psycopg.Error:
        return {}
    return {
        name: Latency(float(cuts[0]), float(cuts[1]), float(cuts[2]), int(n))
        for name, cuts, n in rows
        if cuts is not None
    }
