"""Packaging checks: the Helm chart rendered for every values scenario, and the linters of the
images, workflows, Terraform and scripts. The tools come from `make tools` (.tools/bin, put on
PATH by `make test`); a missing tool fails the test with that hint, it is never skipped."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "marketpipe"
TOOLS_BIN = ROOT / ".tools" / "bin"
SCENARIOS = ["default", *sorted(p.stem for p in (CHART / "ci").glob("*-values.yaml"))]
KUBERNETES_VERSIONS = ["1.29", "1.30", "1.31", "1.32", "1.33"]
RELEASE, NAMESPACE = "mp", "markets"

Manifest = dict[str, Any]


def tool(name: str) -> str:
    """Path of a packaging tool: on PATH, or in .tools/bin."""
    found = shutil.which(name) or shutil.which(name, path=str(TOOLS_BIN))
    if not found:
        pytest.fail(f"{name} is not installed: run `make tools` (scripts/install-tools.sh)")
    return found


def run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(list(args), cwd=cwd, env=env, input=stdin, capture_output=True,
                          text=True, timeout=600, check=False)  # fmt: skip


def values_args(scenario: str) -> list[str]:
    return [] if scenario == "default" else ["-f", str(CHART / "ci" / f"{scenario}.yaml")]


@functools.cache
def render_text(scenario: str, *extra: str) -> str:
    done = run(tool("helm"), "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
               *values_args(scenario), *extra)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def render(scenario: str, *extra: str) -> list[Manifest]:
    return [d for d in yaml.safe_load_all(render_text(scenario, *extra)) if d]


def by_kind(docs: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


WORKLOADS = ("Deployment", "StatefulSet", "Job", "Pod")


def pod_specs(docs: list[Manifest]) -> list[tuple[Manifest, Manifest]]:
    """(object, pod spec) of every workload."""
    out = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            out.append((doc, doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "Pod":
            out.append((doc, doc["spec"]))
    return out


def containers(spec: Manifest) -> list[Manifest]:
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.fixture(params=SCENARIOS)
def scenario(request: pytest.FixtureRequest) -> str:
    return str(request.param)
