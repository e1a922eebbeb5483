"""What every benchmark shares: an own broker on its own core, this process on another, and
the medians-and-ratios report. Figures are medians of several runs; ratios travel better."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from marketpipe.local.stack import LocalStack
from marketpipe.settings import KafkaSettings, LocalSettings, Settings, settings_with_env


@dataclass(frozen=True)
class Bench:
    settings: Settings  # pointing at the benchmark's own services
    folder: Path  # scratch space, removed afterwards

    @property
    def kafka(self) -> KafkaSettings:
        return self.settings.kafka


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=300_000)
    return parser.parse_args()


@contextlib.contextmanager
def own_stack(services: list[str], pin_self: bool = True) -> Iterator[Bench]:
    """Fresh local services pinned to the last CPU, with this process pinned to the first
    (``pin_self``). Spark benchmarks leave this process unpinned: its JVM and Python workers
    inherit the pinning, and local[2] on one core would measure half the machine."""
    folder = Path(tempfile.mkdtemp(prefix="marketpipe-bench-"))
    folder.chmod(0o755)
    base = Settings(_env_file=None, local=LocalSettings(data_dir=folder, services=services))  # type: ignore[call-arg]
    stack = LocalStack(base)
    try:
        statuses = stack.up()
        with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: unpinned
            cpus = sorted(os.sched_getaffinity(0))
            for status in statuses:
                if status.pid and len(cpus) > 1:
                    os.sched_setaffinity(status.pid, {cpus[-1]})
            if pin_self:
                os.sched_setaffinity(0, {cpus[0]})
        yield Bench(settings_with_env(base, stack.endpoint_env()), folder)
    finally:
        stack.down()
        shutil.rmtree(folder, ignore_errors=True)


def own_broker(pin_self: bool = True) -> contextlib.AbstractContextManager[Bench]:
    return own_stack(["kafka"], pin_self)


def report(title: str, rows: list[tuple[str, str]]) -> None:
    print(f"\n{title}")
    for label, value in rows:
        print(f"{label:<48}{value:>14}")
