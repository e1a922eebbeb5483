"""A Helm release's pods as the Kubernetes API reports them: `marketpipe cluster`.

What `make smoke` and the deploy workflow print after `helm test`: each pod of the release
with its component, phase, readiness and restarts, and for every pod that is not healthy the
reason and its last log lines. ``pod_health`` and ``verdict`` are pure (tested on the client's
own models); ``release_pods`` and ``tail_logs`` talk to the API server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"


@dataclass(frozen=True)
class PodHealth:
    name: str
    component: str
    phase: str
    ready: bool
    restarts: int
    #: Why a container is not running (CrashLoopBackOff, ImagePullBackOff, OOMKilled, ...).
    reason: str | None
    #: A finished Job pod (Succeeded) is healthy though not ready.
    finished: bool

    @property
    def healthy(self) -> bool:
        return self.finished or (self.phase == "Running" and self.ready)

    def line(self) -> str:
        state = "ok" if self.healthy else f"NOT HEALTHY ({self.reason or self.phase})"
        ready = "yes" if self.ready else "no"
        return (f"{self.name:<48} {self.component:<18} {self.phase:<10} "
                f"ready={ready:<3} restarts={self.restarts:<3} {state}")  # fmt: skip


def pod_health(pod: Any) -> PodHealth:
    """Health of a ``kubernetes.client.V1Pod``."""
    labels = pod.metadata.labels or {}
    status = pod.status
    statuses = [*(status.init_container_statuses or []), *(status.container_statuses or [])]
    reason = None
    for cs in statuses:
        waiting = cs.state.waiting if cs.state else None
        terminated = cs.last_state.terminated if cs.last_state else None
        if waiting and waiting.reason and waiting.reason != "PodInitializing":
            reason = waiting.reason
            if terminated and terminated.reason:
                reason += f", last exit {terminated.reason} ({terminated.exit_code})"
            break
    main = status.container_statuses or []
    return PodHealth(
        name=pod.metadata.name,
        component=labels.get(COMPONENT_LABEL, "-"),
        phase=status.phase or "Unknown",
        ready=bool(main) and all(cs.ready for cs in main),
        restarts=sum(cs.restart_count or 0 for cs in statuses),
        reason=reason or status.reason,
        finished=status.phase == "Succeeded",
    )


def verdict(pods: list[PodHealth]) -> tuple[list[str], bool]:
    """Lines to print and whether the release is healthy (it has pods, all of them healthy)."""
    lines = [p.line() for p in sorted(pods, key=lambda p: (p.component, p.name))]
    if not pods:
        return ["no pods found for this release"], False
    bad = [p for p in pods if not p.healthy]
    lines.append(f"{len(pods) - len(bad)}/{len(pods)} pods healthy")
    return lines, not bad


def core_api(kubeconfig: str | None = None) -> Any:
    """A CoreV1Api from the in-cluster service account, else the kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    return client.CoreV1Api()


def release_pods(api: Any, namespace: str, release: str) -> list[Any]:
    selector = f"{INSTANCE_LABEL}={release}"
    return list(api.list_namespaced_pod(namespace, label_selector=selector).items)


def tail_logs(api: Any, namespace: str, pod: Any, lines: int) -> list[str]:
    """The last ``lines`` log lines of each container of ``pod`` (previous run if it crashed)."""
    from kubernetes.client.exceptions import ApiException

    out = []
    for container in [*(pod.spec.init_containers or []), *pod.spec.containers]:
        for previous in (False, True):
            try:
                text = api.read_namespaced_pod_log(
                    pod.metadata.name, namespace, container=container.name,
                    tail_lines=lines, previous=previous,
                )  # fmt: skip
            except ApiException:
                continue
            label = f"{pod.metadata.name}/{container.name}{' (previous run)' if previous else ''}"
            out += [f"--- {label}"] + [f"  {line}" for line in (text or "").splitlines()]
    return out
