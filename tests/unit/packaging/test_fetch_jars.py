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


@pytest.fixture
def maven(tmp_path: Path) -> Iterator[str]:
    """A repository holding org.example:lib:1.0 with its .sha1, served over HTTP."""
    folder = tmp_path / "repo" / "org" / "example" / "lib" / "1.0"
    folder.mkdir(parents=True)
    (folder / "lib-1.0.jar").write_bytes(JAR)
    (folder / "lib-1.0.jar.sha1").write_text(hashlib.sha1(JAR).hexdigest() + "  lib-1.0.jar\n")
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "repo"))
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
