"""Transient or permanent: the errors are the ones the real servers gave (messages copied from
runs against the local PostgreSQL, SeaweedFS and DuckDB)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import psycopg
import psycopg.errors
import pyarrow as pa
import pytest

from marketpipe.settings import ConfigError
from marketpipe.sinks.errors import SinkError, is_transient, transient_sink_error
from marketpipe.sinks.hub import calling
from marketpipe.sinks.parquet import ParquetSink
from marketpipe.sinks.tables import SchemaMismatch

REFUSED = (
    'connection failed: connection to server at "127.0.0.1", port 26904 failed: Connection '
    "refused\n\tIs the server running on that host and accepting TCP/IP connections?"
)
S3_DOWN = (
    "When initiating multiple part upload for key 'x/a.parquet' in bucket 'marketpipe': AWS Error "
    "NETWORK_CONNECTION during CreateMultipartUpload operation: curlCode: 7, Could not connect to "
    "server; Details: Failed to connect to 127.0.0.1:24263 after 0 ms: Could not connect to server"
)
S3_BAD_KEY = (
    "When initiating multiple part upload for key 'x/b.parquet' in bucket 'marketpipe': AWS Error "
    "SIGNATURE_DOES_NOT_MATCH during CreateMultipartUpload operation: The request signature we "
    "calculated does not match the signature you provided."
)
LOCKED = (
    'IO Error: Could not set lock on file "/tmp/l.duckdb": Conflicting lock is held in '
    "/usr/bin/python3.11 (PID 16943). See also https://duckdb.org/docs/current/connect/concurrency"
)


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg.errors.CrashShutdown("terminating connection because of crash of another server"),
        psycopg.errors.TooManyConnections("sorry, too many clients already"),
        psycopg.errors.SerializationFailure("could not serialize access"),
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        psycopg.OperationalError(REFUSED),
        psycopg.OperationalError("consuming input failed: server closed the connection"),
        psycopg.OperationalError("connection timeout expired"),
        OSError(S3_DOWN),
        OSError("AWS Error UNKNOWN (HTTP status 503) during PutObject operation: Slow down"),
        OSError("AWS Error SLOW_DOWN during UploadPart operation: reduce your request rate"),
        duckdb.IOException(LOCKED),
        ConnectionResetError("Connection reset by peer"),
        TimeoutError("timed out"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_outages_are_transient(exc: Exception) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.errors.UndefinedTable('relation "bars" does not exist'),
        psycopg.errors.SyntaxError('syntax error at or near "SELEC"'),
        psycopg.errors.InvalidPassword('password authentication failed for user "marketpipe"'),
        psycopg.errors.NotNullViolation('null value in column "symbol"'),
        psycopg.OperationalError(
            'connection failed: connection to server at "127.0.0.1", port 26904 failed: FATAL:  '
            'password authentication failed for user "marketpipe"'
        ),
        psycopg.OperationalError(
            'connection failed: connection to server at "127.0.0.1", port 26904 failed: FATAL:  '
            'database "nodb" does not exist'
        ),
        psycopg.ProgrammingError("the query has 3 placeholders but 2 parameters were passed"),
        OSError(S3_BAD_KEY),
        OSError("AWS Error ACCESS_DENIED during PutObject operation: Access Denied"),
        OSError("AWS Error UNKNOWN (HTTP status 404) during HeadObject operation"),
        PermissionError(13, "Permission denied"),
        duckdb.IOException('IO Error: Cannot open file "/nope/x.duckdb": No such file'),
        duckdb.CatalogException("Table with name bars does not exist!"),
        SchemaMismatch("PostgreSQL h:1/db: table bars lacks columns ['m2']: run migrate"),
        ConfigError("an s3:// root needs S3 settings"),
        ValueError("a bug"),
        pa.ArrowInvalid("Column 'symbol' is missing"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_mistakes_are_permanent(exc: Exception) -> None:
    assert not is_transient(exc)


def test_a_sink_error_names_the_sink_and_its_endpoint_and_keeps_the_cause(tmp_path: Path) -> None:
    sink = ParquetSink(str(tmp_path))

    def down() -> None:
        raise OSError(S3_DOWN)

    with pytest.raises(SinkError) as failed:
        calling(sink, down)
    error = failed.value
    assert str(error) == f"parquet at {tmp_path}: {S3_DOWN}"
    assert (error.sink, error.endpoint, error.transient) == ("parquet", str(tmp_path), True)
    assert isinstance(error.__cause__, OSError)
    assert transient_sink_error(error)
    assert not transient_sink_error(OSError(S3_DOWN))  # not through a sink: not the sinks' call

    def refused() -> None:
        raise psycopg.OperationalError(REFUSED)

    with pytest.raises(SinkError, match=r"^parquet at .*Connection refused$"):  # first line only
        calling(sink, refused)

    def bug() -> None:
        raise KeyError("symbol")

    with pytest.raises(SinkError) as failed:
        calling(sink, bug)
    assert not failed.value.transient
    assert not transient_sink_error(failed.value)
