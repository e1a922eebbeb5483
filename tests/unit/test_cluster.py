"""`marketpipe cluster`: pod health from the Kubernetes client's own models (no API server
here; the deploy workflow runs the command against kind)."""

from __future__ import annotations

import pytest
from kubernetes.client import (
    V1ContainerState,
    V1ContainerStateTerminated,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodStatus,
)

from marketpipe.cli import main
from marketpipe.cluster import pod_health, verdict


def status(name: str, ready: bool, restarts: int = 0, waiting: str | None = None,
           last_exit: tuple[str, int] | None = None) -> V1ContainerStatus:  # fmt: skip
    state = V1ContainerState(waiting=V1ContainerStateWaiting(reason=waiting) if waiting else None)
    last = V1ContainerState(terminated=V1ContainerStateTerminated(
        reason=last_exit[0], exit_code=last_exit[1])) if last_exit else None  # fmt: skip
    return V1ContainerStatus(name=name, ready=ready, restart_count=restarts, image="i",
                             image_id="", state=state, last_state=last)  # fmt: skip


def pod(name: str, component: str, phase: str, statuses: list[V1ContainerStatus]) -> V1Pod:
    return V1Pod(
        metadata=V1ObjectMeta(name=name, labels={"app.kubernetes.io/component": component}),
        status=V1PodStatus(phase=phase, container_statuses=statuses),
    )


def test_running_and_ready_is_healthy() -> None:
    h = pod_health(pod("mp-producer-1", "producer", "Running", [status("producer", True)]))
    assert h.healthy
    assert (h.component, h.restarts, h.reason) == ("producer", 0, None)


def test_a_crash_loop_names_its_reason_and_last_exit() -> None:
    crashing = status("quality", False, restarts=5, waiting="CrashLoopBackOff",
                      last_exit=("Error", 3))  # fmt: skip
    h = pod_health(pod("mp-quality-0", "quality", "Running", [crashing]))
    assert not h.healthy
    assert h.restarts == 5
    assert h.reason == "CrashLoopBackOff, last exit Error (3)"
    assert "NOT HEALTHY (CrashLoopBackOff" in h.line()


def test_a_finished_job_pod_is_healthy_a_failed_one_is_not() -> None:
    done = pod_health(pod("mp-topics-x", "topics", "Succeeded", [status("topics", False)]))
    failed = pod_health(pod("mp-topics-y", "topics", "Failed", [status("topics", False)]))
    assert done.healthy
    assert not failed.healthy


def test_one_unready_container_makes_the_pod_unready() -> None:
    h = pod_health(pod("p", "features", "Running", [status("a", True), status("b", False)]))
    assert not h.healthy


def test_verdict_counts_and_an_empty_release_is_not_healthy() -> None:
    good = pod_health(pod("a", "producer", "Running", [status("c", True)]))
    bad = pod_health(pod("b", "quality", "Pending", []))
    lines, healthy = verdict([good, bad])
    assert not healthy
    assert lines[-1] == "1/2 pods healthy"
    assert verdict([]) == (["no pods found for this release"], False)


def test_unreachable_api_is_one_line_and_exit_3(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = f"{tmp_path}/kubeconfig"
    with open(kubeconfig, "w") as fh:
        fh.write(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:9'}}]\n"
            "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
            "users: [{name: u, user: {token: t}}]\n"
        )
    assert main(["cluster", "--kubeconfig", kubeconfig, "--logs", "0"]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("marketpipe cluster: Kubernetes API:")
    assert len(err.splitlines()) == 1
