"""The driver JVM's options: the quick JIT tier, and the class-data archive written once, then
mapped (no Spark session needed: these are the options it would be started with)."""

from __future__ import annotations

from pathlib import Path

import pyspark
import pytest

from marketpipe.features.job import class_archive_path, driver_java_options
from marketpipe.settings import FeaturesSettings

#: The JVM's warnings go to stderr: stdout carries the command's output (--output json).
TO_STDERR = "-Xlog:disable -Xlog:all=warning:stderr"


def test_a_missing_archive_is_written_at_exit_then_mapped(tmp_path: Path) -> None:
    archive = tmp_path / "cache" / "classes.jsa"
    cfg = FeaturesSettings(class_archive=str(archive))
    first = driver_java_options(cfg).split()
    assert first[0] == "-XX:TieredStopAtLevel=1"
    assert f"-XX:ArchiveClassesAtExit={archive}" in first
    assert archive.parent.is_dir()  # made, so the JVM can write there
    assert " ".join(first).startswith("-XX:TieredStopAtLevel=1 " + TO_STDERR)
    archive.write_bytes(b"written by the first run's JVM")
    assert f"-XX:SharedArchiveFile={archive}" in driver_java_options(cfg).split()


def test_no_archive_where_it_cannot_be_written(tmp_path: Path) -> None:
    """A folder that cannot be made (here: a file is in the way; a read-only root file
    system in a pod) means no archive, not a failed start."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    cfg = FeaturesSettings(class_archive=str(blocker / "classes.jsa"))
    assert (
        driver_java_options(cfg) == "-XX:TieredStopAtLevel=1 -Xlog:disable -Xlog:all=warning:stderr"
    )


def test_options_without_an_archive() -> None:
    cfg = FeaturesSettings(class_archive="", driver_java_options="-Xss4m  -XX:+UseG1GC")
    assert driver_java_options(cfg) == "-Xss4m -XX:+UseG1GC " + TO_STDERR
    assert driver_java_options(FeaturesSettings(class_archive="", driver_java_options="")) == (
        TO_STDERR
    )


def test_auto_is_per_user_and_spark_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    expected = tmp_path / "marketpipe" / f"spark-{pyspark.__version__}-classes.jsa"
    assert class_archive_path("auto") == expected
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert class_archive_path("auto") == tmp_path / "home" / ".cache" / expected.relative_to(
        tmp_path
    )
    assert class_archive_path("") is None
