"""Where the features job keeps its open windows between micro-batches.

After micro-batch ``N`` the job saves the windows still open (``aggregate.OpenWindows``) as
``<root>/<N>.partials.arrow`` and ``<root>/<N>.points.arrow`` (Arrow IPC, lz4), before Spark
commits the batch. Batch ``N`` starts from the windows saved after ``N - 1``: kept in memory
while the job runs, read back after a restart. A batch replayed after a crash (Spark had not
committed it) therefore starts from the same windows and writes the same rows. The files of
the two newest batches are kept; older ones are deleted.

The root is ``<features.state_dir>/<query>``, by default ``windows`` in the query's checkpoint
folder: a checkpoint and its state belong together (restore or delete both). An ``s3a://`` root (the
checkpoints' scheme for Spark) is read and written as ``s3://`` with the S3 settings.
"""

from __future__ import annotations

import logging

import pyarrow.fs as pafs
from pyarrow import ipc

from marketpipe.features.aggregate import PARTIAL_SCHEMA, POINT_SCHEMA, OpenWindows, Windows
from marketpipe.settings import ConfigError, S3Settings
from marketpipe.sinks.parquet import filesystem

log = logging.getLogger(__name__)

_PARTS = (("partials", PARTIAL_SCHEMA), ("points", POINT_SCHEMA))


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
    """The open windows of one query, one pair of files per micro-batch under ``root``."""

    name = "state"

    def __init__(self, root: str, windows: Windows, s3: S3Settings | None = None) -> None:
        self.root = self.endpoint = root
        self.windows = windows
        self._label = describe(windows)
        self.fs, self.base = filesystem(s3 or S3Settings() if root.startswith("s3://") else None,
                                        root)  # fmt: skip
        self._local = isinstance(self.fs, pafs.LocalFileSystem)

    def _path(self, batch_id: int, part: str) -> str:
        return f"{self.base}/{batch_id}.{part}.arrow"

    def save(self, batch_id: int, windows: OpenWindows) -> None:
        """The windows open after ``batch_id``; drops what is older than the batch before."""
        for part, schema in _PARTS:
            labelled = schema.with_metadata({_WINDOWS_KEY: self._label})
            table = getattr(windows, part).cast(labelled)
            path = self._path(batch_id, part)
            target = f"{path}.tmp" if self._local else path  # an S3 object appears whole
            with self.fs.open_output_stream(target) as out:
                options = ipc.IpcWriteOptions(compression="lz4")
                with ipc.new_file(out, labelled, options=options) as writer:
                    writer.write_table(table)
            if self._local:
                self.fs.move(target, path)
        self._prune(batch_id - 1)

    def load(self, batch_id: int) -> OpenWindows:
        """The windows saved after ``batch_id``; ``MissingState`` when there are none."""
        tables = []
        for part, schema in _PARTS:
            path = self._path(batch_id, part)
            try:
                with self.fs.open_input_file(path) as f:
                    table = ipc.open_file(f).read_all()
            except FileNotFoundError as exc:
                raise MissingState(
                    f"features: no saved windows for micro-batch {batch_id} in {self.root}: "
                    "the query's checkpoint and its state belong together: restore both, or "
                    "remove the checkpoint to start the query over"
                ) from exc
            saved_for = (table.schema.metadata or {}).get(_WINDOWS_KEY, b"").decode()
            if saved_for != self._label:
                raise MissingState(
                    f"features: the windows saved in {self.root} are {saved_for or 'unlabelled'}"
                    f", the settings now ask for {self._label}: a checkpoint resumes only with "
                    "the windows it was started with; remove the checkpoint to start over"
                )
            tables.append(table.cast(schema))
        log.debug("open windows after batch %d read from %s", batch_id, self.root)
        return OpenWindows.from_tables(*tables)

    def _prune(self, keep_from: int) -> None:
        selector = pafs.FileSelector(self.base, allow_not_found=True)
        for info in self.fs.get_file_info(selector):
            head = info.base_name.split(".", 1)[0]
            if head.isdigit() and int(head) < keep_from:
                self.fs.delete_file(info.path)
