"""Which sink failed, where, and whether retrying can help.

Transient: the server is away or busy and will be back (PostgreSQL refusing connections,
shutting down, restarting or out of connections; an S3 server unreachable, timing out, 5xx or
throttling; a DuckDB file locked by another process). Permanent: waiting cannot fix it (SQL and
programming errors, a missing table or database, failed authentication, a schema from another
version), so the job fails at once.
"""

from __future__ import annotations

import re

import duckdb
import psycopg

from marketpipe.retry import first_line
from marketpipe.settings import ConfigError

# SQLSTATE classes and codes that go away by themselves (PostgreSQL appendix A): connection
# exceptions, insufficient resources (too many connections), operator intervention (admin or
# crash shutdown, cannot connect now, query canceled), serialization failures and deadlocks.
_PG_TRANSIENT_CLASSES = ("08", "53", "57", "40")
# libpq's refusals at connect time carry no SQLSTATE: these say the request itself is wrong.
_PG_PERMANENT_CONNECT = re.compile(
    r"password authentication failed|authentication failed|no pg_hba\.conf entry|"
    r"does not exist|permission denied|SSL .*(required|not supported)|"
    r"invalid (dsn|connection option)",
    re.IGNORECASE,
)
# pyarrow's S3 errors read "AWS Error <NAME> during <op> operation: ..." (NAME "UNKNOWN" comes
# with "(HTTP status N)"): connection problems, throttling and 5xx are worth retrying.
_S3_TRANSIENT = re.compile(
    r"AWS Error (NETWORK_CONNECTION|SERVICE_UNAVAILABLE|SLOW_DOWN|THROTTLING|INTERNAL_FAILURE|"
    r"REQUEST_TIMEOUT)|\(HTTP status (5\d\d|429|408)\)"
)
_DUCKDB_LOCKED = "Could not set lock on file"


def is_transient(exc: BaseException) -> bool:
    """True if ``exc``, raised by a sink's client library, may go away by itself."""
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        if state is not None:
            return state.startswith(_PG_TRANSIENT_CLASSES)
        if isinstance(exc, psycopg.OperationalError):  # from libpq: connect, socket
            return not _PG_PERMANENT_CONNECT.search(str(exc))
        return False
    if isinstance(exc, duckdb.Error):
        return isinstance(exc, duckdb.IOException) and _DUCKDB_LOCKED in str(exc)
    if isinstance(exc, ConnectionError | TimeoutError):  # the socket-level OSErrors
        return True
    if isinstance(exc, OSError):  # pyarrow's filesystems raise plain OSError
        return bool(_S3_TRANSIENT.search(str(exc)))
    return False


class SinkError(Exception):
    """A sink call failed: the message is the sink, its endpoint and the error's first line;
    ``transient`` says whether retrying may help. The library's exception is ``__cause__``."""

    def __init__(self, sink: str, endpoint: str, cause: Exception) -> None:
        self.sink, self.endpoint = sink, endpoint
        self.transient = is_transient(cause)
        why = first_line(cause)
        # Our own errors (a schema from another version) name the place already.
        super().__init__(why if isinstance(cause, ConfigError) else f"{sink} at {endpoint}: {why}")


def transient_sink_error(exc: Exception) -> bool:
    """The retry policy of the sinks: only a ``SinkError`` that is transient."""
    return isinstance(exc, SinkError) and exc.transient
