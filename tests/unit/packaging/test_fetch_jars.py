"""images/spark/fetch_jars.py: the Spark image build's jar download, against a local HTTP
server laid out like Maven Central."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[3] / "images" / "spark" / "fetch_jars.py"
JAR = b"PK\x03\x04 not really a jar"


POM = """<?xml version="1.0"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>{parent}
  <groupId>org.example</groupId><artifactId>{artifact}</artifactId><version>{version}</version>
  {body}
</project>
"""
# lib 1.0 is built against sdk 2.0: a version managed in its parent through a property, as
# hadoop-aws gets software.amazon.awssdk:bundle from hadoop-project's aws-java-sdk-v2.version.
PARENT = POM.format(
    parent="",
    artifact="parent",
    version="7",
    body="""
  <properties><sdk.version>2.0</sdk.version></properties>
  <dependencyManagement><dependencies>
    <dependency><groupId>org.example</groupId><artifactId>sdk</artifactId>
      <version>${sdk.version}</version></dependency>
  </dependencies></dependencyManagement>""",
)
LIB = POM.format(
    parent="<parent><groupId>org.example</groupId><artifactId>parent</artifactId>"
    "<version>7</version></parent>",
    artifact="lib",
    version="1.0",
    body="""<dependencies>
    <dependency><groupId>org.example</groupId><artifactId>sdk</artifactId></dependency>
    <dependency><groupId>org.example</groupId><artifactId>only-tests</artifactId>
      <version>9</version><scope>test</scope></dependency>
  </dependencies>""",
)


def publish(repo: Path, artifact: str, version: str, pom: str, jar: bytes | None) -> None:
    folder = repo / "org" / "example" / artifact / version
    folder.mkdir(parents=True)
    (folder / f"{artifact}-{version}.pom").write_text(pom)
    if jar is not None:
        name = f"{artifact}-{version}.jar"
        (folder / name).write_bytes(jar)
        (folder / f"{name}.sha1").write_text(hashlib.sha1(jar).hexdigest() + f"  {name}\n")


@pytest.fixture
def maven(tmp_path: Path) -> Iterator[str]:
    """A repository holding org.example:lib:1.0 (jar, .sha1, POM with a parent) and the two
    versions of org.example:sdk it might be paired with, served over HTTP."""
    repo = tmp_path / "repo"
    publish(repo, "parent", "7", PARENT, None)
    publish(repo, "lib", "1.0", LIB, JAR)
    for version in ("1.9", "2.0", "9"):
        body = POM.format(parent="", artifact="sdk", version=version, body="")
        publish(repo, "sdk", version, body, JAR + version.encode())
    handler = partial(SimpleHTTPRequestHandler, directory=str(repo))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def run(maven: str, *args: str, strict: str = "1") -> subprocess.CompletedProcess[str]:
    env = {"MAVEN_REPO": maven, "STRICT_JARS": strict, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def test_pinned_jar_is_downloaded_and_verified(maven: str, tmp_path: Path) -> None:
    lock = tmp_path / "jars.lock"
    lock.write_text(f"# comment\norg.example:lib:1.0 {hashlib.sha256(JAR).hexdigest()}\n")
    done = run(maven, "fetch", str(lock), str(tmp_path / "jars"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "jars" / "lib-1.0.jar").read_bytes() == JAR


def test_a_jar_that_does_not_match_its_pin_fails_the_build(maven: str, tmp_path: Path) -> None:
    lock = tmp_path / "jars.lock"
    lock.write_text("org.example:lib:1.0 " + "0" * 64 + "\n")
    done = run(maven, "fetch", str(lock), str(tmp_path / "jars"))
    assert done.returncode != 0
    assert "does not match the lock" in done.stderr
    assert not (tmp_path / "jars" / "lib-1.0.jar").exists()


def test_unpinned_entries_fail_strict_builds_and_pass_on_maven_sha1(
    maven: str, tmp_path: Path
) -> None:
    lock = tmp_path / "jars.lock"
    lock.write_text("org.example:lib:1.0 -\n")
    strict = run(maven, "fetch", str(lock), str(tmp_path / "a"))
    assert strict.returncode != 0
    assert "make lock-jars" in strict.stderr
    lenient = run(maven, "fetch", str(lock), str(tmp_path / "b"), strict="0")
    assert lenient.returncode == 0, lenient.stderr
    assert f"UNPINNED org.example:lib:1.0 {hashlib.sha256(JAR).hexdigest()}" in lenient.stdout


def test_lock_writes_the_sha256_and_keeps_comments(maven: str, tmp_path: Path) -> None:
    lock = tmp_path / "jars.lock"
    lock.write_text("# header\norg.example:lib:1.0 -\n")
    done = run(maven, "lock", str(lock))
    assert done.returncode == 0, done.stderr
    assert lock.read_text() == f"# header\norg.example:lib:1.0 {hashlib.sha256(JAR).hexdigest()}\n"


def test_a_malformed_lock_line_names_its_line(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("fetch_jars", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lock = tmp_path / "jars.lock"
    lock.write_text("org.example:lib:1.0 -\norg.example:lib\n")
    with pytest.raises(SystemExit, match=r"jars.lock:2: want"):
        module.entries(lock)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_lock_accepts_the_versions_the_poms_declare(maven: str, tmp_path: Path) -> None:
    lock = tmp_path / "jars.lock"
    lock.write_text("org.example:lib:1.0 -\norg.example:sdk:2.0 -\n")
    done = run(maven, "lock", str(lock))
    assert done.returncode == 0, done.stderr
    assert lock.read_text() == (
        f"org.example:lib:1.0 {sha(JAR)}\norg.example:sdk:2.0 {sha(JAR + b'2.0')}\n"
    )


def test_lock_refuses_a_version_its_neighbour_was_not_built_against(
    maven: str, tmp_path: Path
) -> None:
    """hadoop-aws 3.5.0 with the SDK bundle of Hadoop 3.4.2: NoSuchFieldError at run time."""
    lock = tmp_path / "jars.lock"
    before = "org.example:lib:1.0 -\norg.example:sdk:1.9 -\n"
    lock.write_text(before)
    done = run(maven, "lock", str(lock))
    assert done.returncode != 0
    assert "org.example:sdk:1.9 but org.example:lib:1.0 is built against org.example:sdk:2.0" in (
        done.stderr
    )
    assert lock.read_text() == before


def test_lock_ignores_what_a_pom_needs_only_for_its_tests(maven: str, tmp_path: Path) -> None:
    """lib's POM has only-tests:9 in test scope: the lock may pin another version of it."""
    publish(tmp_path / "repo", "only-tests", "8",
            POM.format(parent="", artifact="only-tests", version="8", body=""), b"t")  # fmt: skip
    lock = tmp_path / "jars.lock"
    lock.write_text("org.example:lib:1.0 -\norg.example:sdk:2.0 -\norg.example:only-tests:8 -\n")
    done = run(maven, "lock", str(lock))
    assert done.returncode == 0, done.stderr


def test_lock_refuses_a_pin_the_repository_no_longer_serves(maven: str, tmp_path: Path) -> None:
    lock = tmp_path / "jars.lock"
    before = f"org.example:lib:1.0 {'1' * 64}\norg.example:sdk:2.0 {sha(JAR + b'2.0')}\n"
    lock.write_text(before)
    done = run(maven, "lock", str(lock))
    assert done.returncode != 0
    assert f"org.example:lib:1.0: sha256 {sha(JAR)} does not match the lock's {'1' * 64}" in (
        done.stderr
    )
    assert lock.read_text() == before
