"""A real Prometheus (Debian's package, installed by ``make install``) run as a process for a
test: it scrapes the given targets every second; ``query`` asks its HTTP API."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from marketpipe.local.process import free_port

CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
{jobs}
"""
JOB = """\
  - job_name: {name}
    static_configs:
      - targets: ["{target}"]
"""


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: `make install` installs Debian's prometheus package")
    return found


@dataclass
class Prometheus:
    url: str
    log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector: [{"metric": {...}, "value": [t, "v"]}, ...]."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single value of ``expr`` now (None: no series)."""
        found = self.query(expr)
        assert len(found) <= 1, found
        return float(found[0]["value"][1]) if found else None

    def wait_for(
        self, expr: str, ok: Callable[[float | None], bool], timeout_s: float = 60.0
    ) -> float | None:
        deadline = time.monotonic() + timeout_s
        got = self.value(expr)
        while not ok(got):
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr} = {got} after {timeout_s:g}s")
            time.sleep(0.5)
            got = self.value(expr)
        return got


@contextlib.contextmanager
def running_prometheus(folder: Path, targets: dict[str, int]) -> Iterator[Prometheus]:
    """Prometheus scraping ``127.0.0.1:<port>`` for each job name -> port."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = "".join(JOB.format(name=n, target=f"127.0.0.1:{p}") for n, p in targets.items())
    config = folder / "prometheus.yml"
    config.write_text(CONFIG.format(jobs=jobs))
    port = free_port()
    log = folder / "prometheus.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [binary("prometheus"), f"--config.file={config}",
             f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Prometheus(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response,
            ):
                if response.status == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
