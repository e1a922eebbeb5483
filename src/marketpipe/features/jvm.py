"""The Spark driver's JVM: its options, and the class-data archive (CDS) that lets it start
sooner.

The archive is written by a JVM as it exits (``-XX:ArchiveClassesAtExit``) and mapped by later
starts (``-XX:SharedArchiveFile``). A JVM killed while writing leaves a file that later JVMs
reject without a word, for good; one from another JDK or another set of jars is rejected too.
So the JVM writes to a file of its own process (``<archive>.<pid>.tmp``), which ``stop_session``
renames into place only once the JVM has exited cleanly, and the ``auto`` location's name
carries a fingerprint of the JDK and the jars.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyspark
from pyspark import SparkContext
from pyspark.sql import SparkSession

from marketpipe.settings import FeaturesSettings

log = logging.getLogger(__name__)

#: The JVM's own warnings (an archive it cannot use, say) to stderr: stdout is the command's
#: (--output json). First, so the user's options can log more.
TO_STDERR = ("-Xlog:disable", "-Xlog:all=warning:stderr")
#: How long ``stop_session`` waits for an exiting JVM to write the archive.
ARCHIVE_WRITE_S = 60.0


def _fingerprint() -> str:
    """The JDK (the java that will run) and the jars (names, sizes, times): what a class-data
    archive is only good for."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java") or ""
    jars = Path(pyspark.__file__).parent / "jars"
    parts = [os.path.realpath(java) if java else "", str(jars)]
    with contextlib.suppress(OSError):
        for entry in sorted(os.scandir(jars), key=lambda e: e.name):
            st = entry.stat()
            parts.append(f"{entry.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def class_archive_path(setting: str) -> Path | None:
    """Where the class-data archive is (see ``FeaturesSettings.class_archive``)."""
    if not setting:
        return None
    if setting != "auto":
        return Path(setting).absolute()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    name = f"spark-{pyspark.__version__}-{_fingerprint()}.jsa"
    return Path(cache) / "marketpipe" / name


def pending_archive(archive: Path) -> Path:
    """The file this process's JVM writes the archive to, until it is known to be whole."""
    return archive.with_name(f"{archive.name}.{os.getpid()}.tmp")


def driver_java_options(cfg: FeaturesSettings, write_archive: bool = False) -> str:
    """The driver JVM's options: warnings to stderr, ``cfg.driver_java_options``, and the
    class-data archive: mapped if it exists; else, with ``write_archive`` (the caller ends
    with ``stop_session``), written as the JVM exits, if its folder can be written."""
    options = [*TO_STDERR, *shlex.split(cfg.driver_java_options)]
    archive = class_archive_path(cfg.class_archive)
    if archive is None:
        return shlex.join(options)
    if archive.is_file():
        options.append(f"-XX:SharedArchiveFile={archive}")
    elif write_archive:
        folder = archive.parent
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
        if folder.is_dir() and os.access(folder, os.W_OK):
            # Writing, the JVM warns of every class it leaves out (hundreds): errors only.
            options += [
                f"-XX:ArchiveClassesAtExit={pending_archive(archive)}", "-Xlog:cds*=error:stderr"
            ]  # fmt: skip
        else:
            log.debug("no class-data archive: %s cannot be written", folder)
    return shlex.join(options)


@contextlib.contextmanager
def sigterm_to_the_driver_only() -> Iterator[None]:
    """While entered, a JVM that PySpark launches starts with SIGTERM ignored, as PySpark
    already starts it with SIGINT ignored. A SIGTERM to the whole process group (``timeout``,
    systemd's default stop, ``kill -TERM -PGID``) then reaches only the Python driver, which
    stops the queries and then the JVM, in order (the JVM exits when its stdin ends). Before,
    the JVM's shutdown hook stopped Spark under the running job: a page of py4j tracebacks
    and no summary. SIGKILL still takes the whole group; in a pod only the driver's process
    gets the SIGTERM anyway. (PySpark sets its own ``preexec_fn``, so this wraps its
    ``Popen``: a JVM ignoring a signal at start keeps ignoring it.)"""
    from pyspark import java_gateway

    names = vars(java_gateway)  # where launch_gateway looks Popen up
    launch = names["Popen"]

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        pyspark_preexec = kwargs.get("preexec_fn")

        def preexec() -> None:
            if pyspark_preexec is not None:
                pyspark_preexec()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

        kwargs["preexec_fn"] = preexec
        proc: subprocess.Popen[bytes] = launch(*args, **kwargs)
        return proc

    names["Popen"] = popen
    try:
        yield
    finally:
        names["Popen"] = launch


def stop_session(spark: SparkSession, cfg: FeaturesSettings) -> None:
    """Stop the session. If its JVM was asked to write the class-data archive, end the JVM,
    wait for it (up to ``ARCHIVE_WRITE_S``), and keep the archive only if it exited cleanly."""
    spark.stop()
    archive = class_archive_path(cfg.class_archive)
    if archive is None:
        return
    pending = pending_archive(archive)
    gateway = SparkContext._gateway
    proc = getattr(gateway, "proc", None)
    if proc is None or not isinstance(proc, subprocess.Popen):
        return
    with contextlib.suppress(Exception):
        gateway.shutdown()  # type: ignore[union-attr]
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # the JVM exits when its stdin ends
    try:
        code = proc.wait(ARCHIVE_WRITE_S)
    except subprocess.TimeoutExpired:
        log.info("the JVM did not exit within %.0fs: no class-data archive", ARCHIVE_WRITE_S)
        return
    # 143: the JVM had a SIGTERM of its own (a process group stopped as a whole) and still
    # went through its exit, which writes the archive; a JVM killed while writing has no exit.
    if code in (0, 143) and pending.is_file():
        os.replace(pending, archive)
        log.info("class-data archive written: %s (later starts map it)", archive)
    else:
        pending.unlink(missing_ok=True)
