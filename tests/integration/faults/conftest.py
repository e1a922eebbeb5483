"""Each fault test runs on a stack of its own (it stops services); its folder, with every
stage's output and the services' logs, is kept when the test fails (or KEEP_FAULT_FOLDERS=1)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.pipeline import make_folder

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.failed:  # type: ignore[attr-defined]
        item.stash[_FAILED] = True
    return report


@pytest.fixture
def folder(request: pytest.FixtureRequest) -> Iterator[Path]:
    path = make_folder("marketpipe-fault-")
    yield path
    if request.node.stash.get(_FAILED, False) or os.environ.get("KEEP_FAULT_FOLDERS"):
        print(f"\nkept {path} (stage outputs *.out/*.err, service logs under stack/)")
    else:
        shutil.rmtree(path, ignore_errors=True)
