"""scripts/fault-check.sh and scripts/cluster-diagnostics.sh, the deploy workflow's fault check
and failure dump, against a stand-in `kubectl`/`helm` that keeps a tiny cluster's state in a
JSON file (the scripts themselves run only on the kind cluster in deploy.yml)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parents[3] / "scripts"

# A stand-in kubectl: pods by component; `delete` gives a pod a new uid (its StatefulSet
# recreates it); `exec ... marketpipe smoke` answers with the row counts in the state, which
# grow by `growth` per call once the victims are back (0: the pipeline never recovers).
FAKE = r"""
import json, sys
state_file = sys.argv[1]
args = sys.argv[2:]
state = json.load(open(state_file))
state["calls"].append(list(args))
def save():
    json.dump(state, open(state_file, "w"))
if "-n" in args:
    i = args.index("-n"); del args[i:i + 2]
if args[:2] == ["get", "pod"] and "-l" in args:
    component = args[args.index("-l") + 1].rsplit("=", 1)[1]
    print(state["pods"][component], end="")
elif args[:2] == ["get", "pod"] and "{.metadata.uid}" in args[-1]:
    print(state["uids"][args[2]], end="")
elif args[:2] == ["get", "pod"] and "Ready" in args[-1]:
    print("True", end="")
elif args[:2] == ["get", "pods"]:
    print(" ".join(state["pods"].values()), end="")
elif args[:2] == ["get", "pod"] and "containers" in args[-1]:
    print("init main", end="")
elif args[:2] == ["delete", "pod"]:
    for pod in args[2:]:
        if not pod.startswith("--"):
            state["uids"][pod] += "-new"
elif args[0] == "exec":
    smoke = args[args.index("smoke"):]
    bars, features = state["rows"]
    if state["recovered"]:
        bars, features = bars + state["growth"], features + state["growth"]
        state["rows"] = [bars, features]
    want = int(smoke[smoke.index("--min-rows") + 1]) if "--min-rows" in smoke else 1
    print(f"postgres: bars {bars} rows, window_features {features} rows, ticks 9 rows")
    save()
    sys.exit(0 if min(bars, features) >= want else 1)
elif args[0] == "logs":
    print("log line of " + " ".join(args[1:]))
else:
    print("ok " + " ".join(args))
if args[:2] == ["delete", "pod"]:
    state["recovered"] = True
save()
"""


@pytest.fixture
def cluster(tmp_path: Path) -> tuple[dict[str, str], Path]:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({
        "pods": {"producer": "mp-producer-abc", "redpanda": "mp-redpanda-0",
                 "quality": "mp-quality-0"},
        "uids": {"mp-redpanda-0": "u1", "mp-quality-0": "u2", "mp-producer-abc": "u3"},
        "rows": [40, 25], "growth": 10, "recovered": False, "calls": [],
    }))  # fmt: skip
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "fake.py").write_text(FAKE)
    for name in ("kubectl", "helm"):
        exe = bin_dir / name
        exe.write_text(f'#!/bin/sh\nexec {sys.executable} {tmp_path / "fake.py"} {state} "$@"\n')
        exe.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "NAMESPACE": "ns", "RELEASE": "mp",
           "TIMEOUT_S": "20"}  # fmt: skip
    return env, state


def run(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPTS / script), *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_fault_check_kills_broker_and_checker_then_wants_new_rows(
    cluster: tuple[dict[str, str], Path],
) -> None:
    env, state = cluster
    done = run("fault-check.sh", env)
    assert done.returncode == 0, done.stderr
    calls = json.loads(state.read_text())["calls"]
    deletes = [c for c in calls if c[2:4] == ["delete", "pod"]]
    assert len(deletes) == 1
    assert {"mp-redpanda-0", "mp-quality-0"} <= set(deletes[0])
    last_smoke = next(c for c in reversed(calls) if "smoke" in c)
    # 25 rows in the smaller table before the faults: afterwards it must pass 25.
    assert last_smoke[last_smoke.index("--min-rows") + 1] == "26"
    assert "the pipeline recovered" in done.stderr


def test_fault_check_fails_when_no_new_rows_arrive(cluster: tuple[dict[str, str], Path]) -> None:
    env, state = cluster
    data = json.loads(state.read_text())
    data["growth"] = 0
    state.write_text(json.dumps(data))
    done = run("fault-check.sh", env)
    assert done.returncode != 0
    assert "the pipeline recovered" not in done.stderr


def test_diagnostics_save_every_containers_logs_and_previous_logs(
    cluster: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, _state = cluster
    out = tmp_path / "diag"
    done = run("cluster-diagnostics.sh", env, str(out))
    assert done.returncode == 0, done.stderr
    names = {p.name for p in (out / "logs").iterdir()}
    for pod in ("mp-producer-abc", "mp-redpanda-0", "mp-quality-0"):
        for container in ("init", "main"):
            assert f"{pod}.{container}.log" in names
            assert f"{pod}.{container}.previous.log" in names
    assert "--previous" in (out / "logs" / "mp-redpanda-0.main.previous.log").read_text()
    for name in ("helm-status.txt", "events.txt", "pods-describe.txt", "objects.txt"):
        assert (out / name).exists(), name
