"""Linters over everything that is not Python: Dockerfiles, shell scripts, workflows, YAML,
Terraform, and checkov over the rendered chart."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.packaging.conftest import ROOT, render_text, run, tool

DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))
SHELL_SCRIPTS = sorted([*(ROOT / "scripts").glob("*.sh"), *(ROOT / "images").glob("*/*.sh"),
                        ROOT / ".ci" / "run"])  # fmt: skip


def test_there_is_one_image_per_runtime() -> None:
    assert [p.parent.name for p in DOCKERFILES] == ["python", "spark"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint(dockerfile: Path) -> None:
    done = run(tool("hadolint"), "--failure-threshold", "info", str(dockerfile))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_images_are_non_root_with_the_base_as_a_build_argument(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert re.search(r"^ARG PYTHON_BASE=\S+:\S+$", text, re.M), "base image as a build arg"
    assert re.findall(r"^FROM \$\{PYTHON_BASE\}", text, re.M), "FROM the build arg"
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "numeric USER (runAsNonRoot can only check numbers)"
    assert int(uid) > 0


def test_spark_image_jars_come_from_the_lock() -> None:
    text = (ROOT / "images" / "spark" / "Dockerfile").read_text()
    assert "fetch_jars.py fetch /tmp/jars/jars.lock" in text
    lock = (ROOT / "images" / "spark" / "jars.lock").read_text()
    coords = [line.split()[0] for line in lock.splitlines() if line and not line.startswith("#")]
    assert any(c.startswith("org.apache.spark:spark-sql-kafka-0-10_2.13:") for c in coords)
    assert any(c.startswith("org.apache.hadoop:hadoop-aws:") for c in coords)
    import pyspark

    assert f"org.apache.spark:spark-sql-kafka-0-10_2.13:{pyspark.__version__}" in coords


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck(script: Path) -> None:
    done = run(tool("shellcheck"), "--severity=style", str(script))
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint() -> None:
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    assert [Path(w).name for w in workflows] == ["ci.yml", "deploy.yml", "release.yml"]
    done = run(tool("actionlint"), "-shellcheck", tool("shellcheck"), *workflows)
    assert done.returncode == 0, done.stdout + done.stderr


def test_yamllint() -> None:
    done = run(tool("yamllint"), "--strict", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_terraform_fmt() -> None:
    env = {**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null", "CHECKPOINT_DISABLE": "1"}
    done = run(tool("terraform"), "-chdir=terraform", "fmt", "-check", "-diff", "-recursive",
               env=env)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_terraform_variables_are_validated() -> None:
    """`terraform validate` needs the kind and helm providers, which only CI can download
    (ci.yml runs it); here: every variable has a description, a type and a validation."""
    text = (ROOT / "terraform" / "variables.tf").read_text()
    blocks = re.split(r'^variable "', text, flags=re.M)[1:]
    assert len(blocks) >= 5
    for block in blocks:
        name = block.split('"', 1)[0]
        for part in ("description", "type", "validation"):
            assert re.search(rf"^\s+{part}\b", block, re.M), f"{name} lacks {part}"


def test_checkov_over_the_rendered_chart(scenario: str, tmp_path: Path) -> None:
    (tmp_path / "rendered.yaml").write_text(render_text(scenario))
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "PATH": os.environ.get("PATH", "")}
    done = run(tool("checkov"), "--config-file", str(ROOT / ".checkov.yaml"), "-d", str(tmp_path),
               env=env)  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    passed = re.search(r"Passed checks: (\d+)", done.stdout)
    assert passed, done.stdout  # checkov scanned something (it scans nothing silently otherwise)
    assert int(passed.group(1)) > 100
