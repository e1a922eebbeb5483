"""The Spark image's jars (images/spark/jars.lock) against the pyspark wheel they join.

Spark's jars come from the pyspark wheel; the image adds the Kafka connector and hadoop-aws with
its AWS SDK. Any of them built for another Scala, Spark or Hadoop fails only at run time on the
cluster (NoSuchMethodError, NoSuchFieldError, ClassNotFoundException), so the pairing is checked
here against the wheel installed in this venv, which the image's pin must equal. `make lock-jars`
checks the same lock against the POMs on Maven Central (the lock-jars job in ci.yml)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.packaging.conftest import ROOT

DOCKERFILE = ROOT / "images" / "spark" / "Dockerfile"
LOCK = ROOT / "images" / "spark" / "jars.lock"

# aws-java-sdk-v2.version of hadoop-project at each Hadoop release, i.e. the SDK bundle that
# hadoop-aws of that release is built and tested against. Hadoop's own rule: "Do not attempt to
# drop in a newer version of the AWS SDK than that which the Hadoop version was built with"
# (hadoop-aws troubleshooting_s3a.md). Sources:
#   3.4.1 -> 2.24.6  HADOOP-19082, apache/hadoop PR 6568 (Spark: SPARK-47695)
#   3.4.2 -> 2.29.52 HADOOP-19485, apache/hadoop PR 7479 (Spark: SPARK-51929)
#   3.5.0 -> 2.35.4  HADOOP-19654, apache/hadoop PR 7882 (Spark: SPARK-54642, "to be ready for
#                    Apache Hadoop 3.4.3 and 3.5.0"); 2.29.52 lacks ChecksumAlgorithm.CRC64_NVME
#                    that hadoop-aws 3.5.0 uses (apache/doris PR 62277)
# A wheel on another Hadoop fails the test below until its SDK is looked up and added here.
AWS_SDK_FOR_HADOOP = {"3.4.1": "2.24.6", "3.4.2": "2.29.52", "3.5.0": "2.35.4"}


def wheel_jars() -> dict[str, str]:
    """artifact -> version of the jars bundled in the installed pyspark wheel."""
    pyspark = pytest.importorskip("pyspark")
    folder = Path(pyspark.__file__).parent / "jars"
    out = {}
    for jar in folder.glob("*.jar"):
        match = re.fullmatch(r"(.+?)-(\d[\w.\-]*)\.jar", jar.name)
        if match:
            out[match.group(1)] = match.group(2)
    return out


def lock_entries(text: str) -> dict[str, str]:
    """group:artifact -> version of the lock's entries."""
    out = {}
    for line in text.splitlines():
        body = line.split("#", 1)[0].strip()
        if body:
            group, artifact, version = body.split()[0].split(":")
            out[f"{group}:{artifact}"] = version
    return out


def dockerfile_pin(text: str) -> str:
    match = re.search(r"^ARG PYSPARK_VERSION=(\S+)$", text, re.M)
    assert match, "the Spark image pins pyspark in ARG PYSPARK_VERSION"
    assert '"pyspark==${PYSPARK_VERSION}"' in text, "the pin reaches pip install"
    return match.group(1)


def mismatches(lock: dict[str, str], jars: dict[str, str], pinned: str) -> list[str]:
    scala = ".".join(jars["scala-library"].split(".")[:2])
    spark = jars[f"spark-core_{scala}"]
    hadoop = jars["hadoop-client-api"]
    problems = []
    if pinned != spark:
        problems.append(f"the image pins pyspark {pinned}, the wheel here is Spark {spark}")
    for ga, version in lock.items():
        group, artifact = ga.split(":")
        suffix = re.search(r"_(2\.\d+)$", artifact)
        if suffix and suffix.group(1) != scala:
            problems.append(f"{ga} is for Scala {suffix.group(1)}, the wheel has Scala {scala}")
        if group == "org.apache.spark" and version != spark:
            problems.append(f"{ga}:{version} joins Spark {spark}")
    if lock.get("org.apache.hadoop:hadoop-aws") != hadoop:
        problems.append(
            f"hadoop-aws {lock.get('org.apache.hadoop:hadoop-aws')} joins Hadoop {hadoop}"
        )
    sdk = AWS_SDK_FOR_HADOOP.get(hadoop)
    if sdk is None:
        problems.append(f"Hadoop {hadoop}: add its aws-java-sdk-v2.version to AWS_SDK_FOR_HADOOP")
    elif lock.get("software.amazon.awssdk:bundle") != sdk:
        problems.append(
            f"AWS SDK bundle {lock.get('software.amazon.awssdk:bundle')}: hadoop-aws {hadoop} "
            f"is built against {sdk}"
        )
    return problems


def test_wheel_has_what_the_check_reads() -> None:
    jars = wheel_jars()
    assert {"scala-library", "hadoop-client-api"} <= jars.keys()
    assert any(name.startswith("spark-core_") for name in jars)


def test_lock_and_pin_agree_with_the_pyspark_wheel() -> None:
    lock = lock_entries(LOCK.read_text())
    assert {"org.apache.spark:spark-sql-kafka-0-10_2.13", "org.apache.hadoop:hadoop-aws",
            "software.amazon.awssdk:bundle"} <= lock.keys()  # fmt: skip
    assert mismatches(lock, wheel_jars(), dockerfile_pin(DOCKERFILE.read_text())) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # The lock as it was: Hadoop 3.4.2's SDK beside hadoop-aws 3.5.0.
        (("software.amazon.awssdk:bundle", "2.29.52"), "hadoop-aws 3.5.0 is built against 2.35.4"),
        (("org.apache.hadoop:hadoop-aws", "3.4.2"), "hadoop-aws 3.4.2 joins Hadoop 3.5.0"),
        (("org.apache.spark:spark-sql-kafka-0-10_2.13", "4.2.0"), "joins Spark 4.3.0"),
    ],
)
def test_each_mispairing_is_caught(change: tuple[str, str], expected: str) -> None:
    lock = lock_entries(LOCK.read_text())
    lock[change[0]] = change[1]
    jars = {"scala-library": "2.13.18", "spark-core_2.13": "4.3.0", "hadoop-client-api": "3.5.0"}
    assert any(expected in p for p in mismatches(lock, jars, "4.3.0")), mismatches(
        lock, jars, "4.3.0"
    )


def test_a_scala_212_connector_or_another_pin_is_caught() -> None:
    lock = {
        "org.apache.spark:spark-sql-kafka-0-10_2.12": "4.3.0",
        "org.apache.hadoop:hadoop-aws": "3.5.0",
        "software.amazon.awssdk:bundle": "2.35.4",
    }
    jars = {"scala-library": "2.13.18", "spark-core_2.13": "4.3.0", "hadoop-client-api": "3.5.0"}
    problems = mismatches(lock, jars, "4.2.0")
    assert any("for Scala 2.12" in p for p in problems)
    assert any("pins pyspark 4.2.0" in p for p in problems)


def test_an_unpinned_pyspark_is_refused() -> None:
    """The image installed `.[spark]`, i.e. pyspark>=4.0: whatever PyPI had that day."""
    old = DOCKERFILE.read_text().replace(' "pyspark==${PYSPARK_VERSION}"', "")
    with pytest.raises(AssertionError, match="the pin reaches pip install"):
        dockerfile_pin(old)


def test_java_home_does_not_name_an_architecture() -> None:
    """JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 does not exist on arm64 (Apple-silicon
    kind): the driver could not start. The path must be one the build creates for any arch."""
    text = DOCKERFILE.read_text()
    match = re.search(r"JAVA_HOME=(\S+)", text)
    assert match
    home = match.group(1)
    assert not re.search(r"amd64|arm64|aarch64|x86_64", home), home
    run_lines = " ".join(re.findall(r"^RUN .*?(?<!\\)$", text, re.M | re.S))
    assert "ln -s" in run_lines
    assert home in run_lines, f"{home} is not created by the build"
    assert f"{home}/bin/java -version" in run_lines, "the build proves the link works"


def make_images_dry_run(*args: str) -> str:
    done = subprocess.run(["make", "-n", "images", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_make_images_works_with_the_lock_as_committed(tmp_path: Path) -> None:
    """`make images` with STRICT_JARS=1 stops at the first "-" entry: while the lock has any,
    the default is 0 (checked against Maven Central's .sha1), and it says so."""
    unpinned = sum(1 for line in LOCK.read_text().splitlines()
                   if line.strip() and not line.startswith("#")
                   and line.split()[1] == "-")  # fmt: skip
    out = make_images_dry_run()
    if unpinned:
        assert "--build-arg STRICT_JARS=0" in out
        assert f"{unpinned} jar(s) of images/spark/jars.lock not pinned" in out
    else:
        assert "--build-arg STRICT_JARS=1" in out
    pinned = tmp_path / "jars.lock"
    pinned.write_text("# all pinned\norg.example:lib:1.0 " + "a" * 64 + "\n")
    assert "--build-arg STRICT_JARS=1" in make_images_dry_run(f"JARS_LOCK={pinned}")
    assert "--build-arg STRICT_JARS=1" in make_images_dry_run("STRICT_JARS=1")
