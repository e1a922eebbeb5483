"""The driver JVM's options: the quick JIT tier, and the class-data archive written once, then
mapped (no Spark session needed: these are the options it would be started with)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pyspark
import pytest

from marketpipe.features.jvm import (
    TO_STDERR,
    class_archive_path,
    driver_java_options,
    pending_archive,
)
from marketpipe.features.pyworker import worker_env
from marketpipe.settings import FeaturesSettings


def options(cfg: FeaturesSettings, write_archive: bool = False) -> list[str]:
    return shlex.split(driver_java_options(cfg, write_archive))


def test_a_missing_archive_is_written_by_this_process_then_mapped(tmp_path: Path) -> None:
    archive = tmp_path / "cache" / "classes.jsa"
    cfg = FeaturesSettings(class_archive=str(archive))
    # Warnings to stderr first (the user's options may log more), then the user's.
    assert options(cfg)[:3] == [*TO_STDERR, "-XX:TieredStopAtLevel=1"]
    assert not [o for o in options(cfg) if "Archive" in o]  # only a caller that finishes it
    pending = pending_archive(archive)
    assert pending.name == f"classes.jsa.{os.getpid()}.tmp"  # never the file others map
    assert options(cfg, write_archive=True)[-2:] == [
        f"-XX:ArchiveClassesAtExit={pending}", "-Xlog:cds*=error:stderr"
    ]  # fmt: skip
    assert archive.parent.is_dir()  # made, so the JVM can write there
    archive.write_bytes(b"renamed into place after a clean JVM exit")
    assert options(cfg, write_archive=True)[-1] == f"-XX:SharedArchiveFile={archive}"


def test_no_archive_where_it_cannot_be_written(tmp_path: Path) -> None:
    """A folder that cannot be made (here: a file is in the way; a read-only root file
    system in a pod) means no archive, not a failed start."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    cfg = FeaturesSettings(class_archive=str(blocker / "classes.jsa"))
    assert options(cfg, write_archive=True) == [*TO_STDERR, "-XX:TieredStopAtLevel=1"]


def test_the_users_options_are_split_like_a_shell(tmp_path: Path) -> None:
    cfg = FeaturesSettings(
        class_archive="", driver_java_options="-Xss4m  '-Dmarketpipe.dir=/a b' -Xlog:gc"
    )
    assert options(cfg) == [*TO_STDERR, "-Xss4m", "-Dmarketpipe.dir=/a b", "-Xlog:gc"]
    assert options(FeaturesSettings(class_archive="", driver_java_options="")) == [*TO_STDERR]


def test_auto_is_per_user_jdk_and_jars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    found = class_archive_path("auto")
    assert found is not None
    assert found.parent == tmp_path / "marketpipe"
    assert found.name.startswith(f"spark-{pyspark.__version__}-")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert class_archive_path("auto") == tmp_path / "home" / ".cache" / "marketpipe" / found.name
    # Another JDK (or another set of jars) gets another archive: the JVM would reject this one.
    other = tmp_path / "other-jdk"
    (other / "bin").mkdir(parents=True)
    (other / "bin" / "java").write_text("")
    monkeypatch.setenv("JAVA_HOME", str(other))
    assert class_archive_path("auto") != tmp_path / "home" / ".cache" / "marketpipe" / found.name
    assert class_archive_path("") is None


def test_spark_workers_import_the_installed_pyspark_not_the_zip() -> None:
    """Spark puts its zips first on the workers' PYTHONPATH; compiled anew by every worker
    process (a zip holds no bytecode cache). The worker's Python drops them, keeps the rest."""
    path = os.pathsep.join([
        "/opt/spark/python/lib/pyspark.zip", "/work/app",
        "/opt/spark/python/lib/py4j-0.10.9.9-src.zip", "/srv/not-pyspark.zip",
    ])  # fmt: skip
    env = worker_env({"PYTHONPATH": path, "PYTHONHASHSEED": "0"})
    assert env == {"PYTHONPATH": f"/work/app{os.pathsep}/srv/not-pyspark.zip",
                   "PYTHONHASHSEED": "0"}  # fmt: skip
    assert worker_env({})["PYTHONPATH"] == ""
