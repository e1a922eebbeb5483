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
from marketpipe.settings import KafkaSettings, LocalSettings, Settings


@dataclass(frozen=True)
class Bench:
    kafka: KafkaSettings
    folder: Path  # scratch space, removed afterwards


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=300_000)
    return parser.parse_args()


@contextlib.contextmanager
def own_broker() -> Iterator[Bench]:
    """A fresh local broker pinned to the last CPU, with this process pinned to the first."""
    folder = Path(tempfile.mkdtemp(prefix="marketpipe-bench-"))
    folder.chmod(0o755)
    settings = Settings(_env_file=None, local=LocalSettings(data_dir=folder, services=["kafka"]))  # type: ignore[call-arg]
    stack = LocalStack(settings)
    try:
        (broker,) = stack.up()
        with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: unpinned
            cpus = sorted(os.sched_getaffinity(0))
            if broker.pid and len(cpus) > 1:
                os.sched_setaffinity(broker.pid, {cpus[-1]})
            os.sched_setaffinity(0, {cpus[0]})
        kafka = settings.kafka.model_copy(update={"bootstrap_servers": broker.detail.split()[-1]})
        yield Bench(kafka, folder)
    finally:
        stack.down()
        shutil.rmtree(folder, ignore_errors=True)


def report(title: str, rows: list[tuple[str, str]]) -> None:
    print(f"\n{title}")
    for label, value in rows:
        print(f"{label:<48}{value:>14}")
