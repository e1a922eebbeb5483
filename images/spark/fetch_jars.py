"""Download the jars of images/spark/jars.lock and check them (stdlib only: it runs inside
the image build, where nothing else is installed yet).

    python fetch_jars.py fetch LOCK DEST   # download into DEST, verify each sha256
    python fetch_jars.py lock LOCK         # check the lock, write each sha256 into LOCK

STRICT_JARS=1 (the default) refuses an entry whose sha256 is "-"; STRICT_JARS=0 accepts it
after checking Maven Central's published .sha1, and prints the line to pin it with.

`lock` changes nothing and exits 1 when the lock disagrees with itself or with Maven Central:
a pinned sha256 that no longer matches the jar, or an entry whose version differs from the one
another entry's POM declares for it (e.g. hadoop-aws's AWS SDK bundle, spark-sql-kafka's
kafka-clients), versions resolved through the POMs' parents and dependencyManagement.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = os.environ.get("MAVEN_REPO", "https://repo1.maven.org/maven2").rstrip("/")


def entries(lock: Path) -> list[tuple[str, str]]:
    out = []
    for number, line in enumerate(lock.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) != 2 or parts[0].count(":") != 2:
            sys.exit(f"{lock}:{number}: want 'group:artifact:version sha256', got {line!r}")
        out.append((parts[0], parts[1]))
    return out


def url(coordinate: str, extension: str = "jar") -> str:
    group, artifact, version = coordinate.split(":")
    path = f"{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.{extension}"
    return f"{REPO}/{path}"


def download(address: str) -> bytes:
    with urllib.request.urlopen(address, timeout=120) as response:
        return bytes(response.read())


def fetch(lock: Path, dest: Path, strict: bool) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for coordinate, pinned in entries(lock):
        data = download(url(coordinate))
        digest = hashlib.sha256(data).hexdigest()
        if pinned != "-":
            if digest != pinned:
                sys.exit(f"{coordinate}: sha256 {digest} does not match the lock's {pinned}")
        elif strict:
            sys.exit(
                f"{coordinate} is not pinned in {lock}: run `make lock-jars` and commit it "
                "(or build with STRICT_JARS=0)"
            )
        else:
            published = download(url(coordinate) + ".sha1").decode().split()[0]
            if hashlib.sha1(data).hexdigest() != published:
                sys.exit(f"{coordinate}: sha1 does not match Maven Central's {published}")
            print(f"UNPINNED {coordinate} {digest}  (add this sha256 to {lock.name})")
        target = dest / url(coordinate).rsplit("/", 1)[1]
        target.write_bytes(data)
        print(f"{target.name} {len(data)} bytes ok")


class Pom:
    """What a POM and its parents say: properties, dependencyManagement, dependencies."""

    def __init__(self, coordinate: str) -> None:
        root = ET.fromstring(download(url(coordinate, "pom")))
        for element in root.iter():  # drop the POM namespace: <project>, not <{ns}project>
            element.tag = element.tag.rsplit("}", 1)[-1]
        group, artifact, version = coordinate.split(":")
        parent = root.find("parent")
        self.parent = None
        if parent is not None:
            self.parent = Pom(":".join(parent.findtext(k, "").strip()
                                       for k in ("groupId", "artifactId", "version")))  # fmt: skip
        self.properties: dict[str, str] = dict(self.parent.properties) if self.parent else {}
        props = root.find("properties")
        for prop in props if props is not None else []:
            self.properties[prop.tag] = (prop.text or "").strip()
        self.properties.update({"project.groupId": group, "project.artifactId": artifact,
                                "project.version": version, "pom.version": version})  # fmt: skip
        if self.parent:
            self.properties["project.parent.version"] = self.parent.properties["project.version"]
        self.managed: dict[str, str] = dict(self.parent.managed) if self.parent else {}
        for dep in root.findall("dependencyManagement/dependencies/dependency"):
            self.managed[key(dep)] = (dep.findtext("version") or "").strip()
        self.dependencies = [(key(dep), (dep.findtext("version") or "").strip())
                             for dep in root.findall("dependencies/dependency")
                             if (dep.findtext("scope") or "compile").strip() != "test"]  # fmt: skip

    def resolve(self, text: str) -> str:
        for _ in range(10):  # properties may name properties
            text = re.sub(r"\$\{([^}]+)\}", lambda m: self.properties.get(m[1], m[0]), text)
        return text

    def declared(self) -> dict[str, str]:
        """group:artifact -> version this POM's dependencies resolve to."""
        return {ga: self.resolve(version or self.managed.get(ga, ""))
                for ga, version in self.dependencies}  # fmt: skip


def key(dependency: ET.Element) -> str:
    return ":".join(dependency.findtext(k, "").strip() for k in ("groupId", "artifactId"))


def version_problems(coordinates: list[str]) -> list[str]:
    """Entries whose version is not the one another entry's POM declares for them."""
    pinned = {c.rsplit(":", 1)[0]: c.rsplit(":", 1)[1] for c in coordinates}
    problems = []
    for coordinate in coordinates:
        for ga, version in Pom(coordinate).declared().items():
            if ga not in pinned:
                continue
            if not version or "${" in version:
                problems.append(f"{coordinate} declares {ga} at an unresolvable {version!r}")
            elif version != pinned[ga]:
                problems.append(
                    f"{ga}:{pinned[ga]} but {coordinate} is built against {ga}:{version}"
                )
    return problems


def write_lock(lock: Path) -> None:
    coordinates = [c for c, _ in entries(lock)]
    problems = version_problems(coordinates)
    lines = []
    for line in lock.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            lines.append(line)
            continue
        coordinate, pinned = text.split()
        digest = hashlib.sha256(download(url(coordinate))).hexdigest()
        if pinned not in ("-", digest):
            problems.append(f"{coordinate}: sha256 {digest} does not match the lock's {pinned}")
        lines.append(f"{coordinate} {digest}")
    if problems:
        sys.exit(f"{lock} is inconsistent, left unchanged:\n  " + "\n  ".join(problems))
    lock.write_text("\n".join(lines) + "\n")
    print(f"wrote {lock}")


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "fetch":
        fetch(Path(argv[1]), Path(argv[2]), os.environ.get("STRICT_JARS", "1") != "0")
    elif len(argv) == 2 and argv[0] == "lock":
        write_lock(Path(argv[1]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
