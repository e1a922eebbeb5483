"""Download the jars of images/spark/jars.lock and check them (stdlib only: it runs inside
the image build, where nothing else is installed yet).

    python fetch_jars.py fetch LOCK DEST   # download into DEST, verify each sha256
    python fetch_jars.py lock LOCK         # download, write each sha256 into LOCK

STRICT_JARS=1 (the default) refuses an entry whose sha256 is "-"; STRICT_JARS=0 accepts it
after checking Maven Central's published .sha1, and prints the line to pin it with.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.request
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


def url(coordinate: str) -> str:
    group, artifact, version = coordinate.split(":")
    return f"{REPO}/{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.jar"


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


def write_lock(lock: Path) -> None:
    lines = []
    for line in lock.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            lines.append(line)
            continue
        coordinate = text.split()[0]
        lines.append(f"{coordinate} {hashlib.sha256(download(url(coordinate))).hexdigest()}")
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
