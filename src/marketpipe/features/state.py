"""Where the features job keeps its open windows between micro-batches.

After micro-batch ``N`` the job saves, before Spark commits the batch:

- ``<root>/<N>.partials.arrow``: every open window's running aggregates (small: a row per
  window);
- ``<root>/<N>.points.<S>.arrow``: the bucket ticks batch ``N`` brought, ``S`` the latest
  bucket start among them. Only the batch's own ticks: a bucket's ticks are spread over the
  files of the batches that brought them, so saving costs what the batch holds, not what is
  open (a full snapshot of every open tick took 0.23 s per batch at 50k ticks/s).

Batch ``N`` starts from the windows saved after ``N - 1``: kept in memory while the job runs,
read back after a restart (the partials, and the ticks of every file up to ``N - 1`` that can
hold an open bucket, kept if their bucket is open). Each open bucket's tick count must match its
aggregate's, or the saved state is incomplete and the query stops saying so. A batch replayed
after a crash (Spark had not committed it) therefore starts from the same windows and writes the
same rows, and rewrites the same files. Files no longer needed by the two newest batches are
deleted: partials of older batches, ticks whose buckets were closed before the batch before.

Every file carries the windows it was made for (bar intervals, bucket length); state saved for
other windows is refused, not mixed in.

The root is ``<features.state_dir>/<query>``, by default ``windows`` in the query's checkpoint
folder: a checkpoint and its state belong together (restore or delete both). An ``s3a://`` root
(the checkpoints' scheme for Spark) is read and written as ``s3://`` with the S3 settings.
"""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from pyarrow import ipc

from marketpipe.features.aggregate import (
    BUCKET_KIND,
    PARTIAL_SCHEMA,
    POINT_SCHEMA,
    OpenWindows,
    Windows,
)
from marketpipe.settings import ConfigError, S3Settings
from marketpipe.sinks.parquet import filesystem

log = logging.getLogger(__name__)


class MissingState(ConfigError):
    """The windows a micro-batch starts from are not where they should be: waiting cannot
    bring them back (the message says what to do)."""


def state_root(checkpoint_dir: str, state_dir: str, query: str) -> str:
    """Where query ``query`` keeps its windows: ``<state_dir>/<query>``, or beside Spark's
    files in its checkpoint, ``<checkpoint_dir>/<query>/windows``; ``s3a://`` as ``s3://``."""
    if state_dir:
        root = f"{state_dir.rstrip('/')}/{query}"
    else:
        root = f"{checkpoint_dir.rstrip('/')}/{query}/windows"
    return "s3://" + root[len("s3a://") :] if root.startswith("s3a://") else root


_WINDOWS_KEY = b"marketpipe.windows"


def describe(windows: Windows) -> str:
    """``windows`` in a few words, saved with the state and compared when it is read back."""
    bars = ", ".join(f"{n}" for n in windows.bar_intervals_s) or "none"
    bucket = f"{windows.bucket_s} s buckets" if windows.bucket_s else "no buckets"
    return f"bars of {bars} s and {bucket}"


class StateStore:
    """The open windows of one query, files per micro-batch under ``root`` (see above)."""

    name = "state"

    def __init__(self, root: str, windows: Windows, s3: S3Settings | None = None) -> None:
        self.root = self.endpoint = root
        self.windows = windows
        self._label = describe(windows)
        self.fs, self.base = filesystem(s3 or S3Settings() if root.startswith("s3://") else None,
                                        root)  # fmt: skip
        self._local = isinstance(self.fs, pafs.LocalFileSystem)

    def save(
        self, batch_id: int, windows: OpenWindows, added: pa.Table, before: OpenWindows
    ) -> None:
        """After ``batch_id``: the ``windows`` open, the bucket ticks the batch ``added``;
        ``before`` the windows it started from (what a replay of it needs kept)."""
        self._write(f"{batch_id}.partials.arrow", windows.partials, PARTIAL_SCHEMA)
        if added.num_rows:
            latest = pc.max(added.column("start_us")).as_py()
            self._write(f"{batch_id}.points.{latest}.arrow", added, POINT_SCHEMA)
        oldest = min((start for _, start in (*before.buckets, *windows.buckets)), default=None)
        for info, (batch, part, latest) in self._files():
            if batch < batch_id - 1 and (part == "partials" or oldest is None or latest < oldest):
                self.fs.delete_file(info.path)

    def load(self, batch_id: int) -> OpenWindows:
        """The windows saved after ``batch_id``; ``MissingState`` when they are not all there."""
        partials = self._read(f"{self.base}/{batch_id}.partials.arrow", PARTIAL_SCHEMA)
        buckets = partials.filter(pc.equal(partials.column("kind"), BUCKET_KIND))
        oldest = pc.min(buckets.column("start_us")).as_py() if buckets.num_rows else None
        deltas = [
            self._read(info.path, POINT_SCHEMA)
            for info, (batch, part, latest) in self._files()
            if part == "points" and batch <= batch_id and oldest is not None and latest >= oldest
        ]
        points = pa.concat_tables([POINT_SCHEMA.empty_table(), *deltas])
        keys = buckets.select(["symbol", "start_us", "trades"])
        points = points.join(keys.select(["symbol", "start_us"]), ["symbol", "start_us"],
                             join_type="left semi")  # fmt: skip
        found = OpenWindows.from_tables(partials, points)
        expected = dict(zip(zip(keys.column("symbol").to_pylist(),
                                keys.column("start_us").to_pylist(), strict=True),
                            keys.column("trades").to_pylist(), strict=True))  # fmt: skip
        have = {k: len(v[0]) for k, v in found.buckets.items()}
        if have != expected:
            short = sorted(k for k in expected if have.get(k) != expected[k])[:3]
            raise MissingState(
                f"features: the saved windows after micro-batch {batch_id} in {self.root} lack "
                f"ticks of open buckets (e.g. {short}): the state is incomplete; remove the "
                "checkpoint to start the query over"
            )
        log.debug("open windows after batch %d read from %s", batch_id, self.root)
        return found

    def _files(self) -> list[tuple[pafs.FileInfo, tuple[int, str, int]]]:
        """The state's files, each with (batch id, ``partials`` or ``points``, latest start)."""
        out = []
        selector = pafs.FileSelector(self.base, allow_not_found=True)
        for info in self.fs.get_file_info(selector):
            parts = info.base_name.split(".")
            if len(parts) >= 3 and parts[-1] == "arrow" and parts[0].isdigit():
                latest = int(parts[2]) if parts[1] == "points" and len(parts) == 4 else 0
                out.append((info, (int(parts[0]), parts[1], latest)))
        return out

    def _write(self, name: str, table: pa.Table, schema: pa.Schema) -> None:
        labelled = schema.with_metadata({_WINDOWS_KEY: self._label})
        path = f"{self.base}/{name}"
        target = f"{self.base}/.{name}.tmp" if self._local else path  # S3: whole or nothing
        with self.fs.open_output_stream(target) as out:
            options = ipc.IpcWriteOptions(compression="lz4")
            with ipc.new_file(out, labelled, options=options) as writer:
                writer.write_table(table.cast(labelled))
        if self._local:
            self.fs.move(target, path)

    def _read(self, path: str, schema: pa.Schema) -> pa.Table:
        try:
            with self.fs.open_input_file(path) as f:
                table = ipc.open_file(f).read_all()
        except FileNotFoundError as exc:
            raise MissingState(
                f"features: no saved windows ({path.rsplit('/', 1)[-1]}) in {self.root}: the "
                "query's checkpoint and its state belong together: restore both, or remove "
                "the checkpoint to start the query over"
            ) from exc
        saved_for = (table.schema.metadata or {}).get(_WINDOWS_KEY, b"").decode()
        if saved_for != self._label:
            raise MissingState(
                f"features: the windows saved in {self.root} are {saved_for or 'unlabelled'}, "
                f"the settings now ask for {self._label}: a checkpoint resumes only with the "
                "windows it was started with; remove the checkpoint to start over"
            )
        return table.cast(schema)
