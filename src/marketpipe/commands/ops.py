"""Operating it: topics, summary, the local stack, contracts, settings, health, cluster,
bucket, fetch, secrets."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from marketpipe.commands.common import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE
from marketpipe.output import emit, wants_json
from marketpipe.settings import ConfigError, Settings

if TYPE_CHECKING:
    from marketpipe.local.stack import ServiceStatus


def cmd_fetch(args: argparse.Namespace, settings: Settings) -> int:
    """Copy objects under an s3:// prefix into a folder (the replay Job's input)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from marketpipe.objectstore import download_prefix, s3_client

    dest = Path(args.dest)
    try:
        count, size = download_prefix(s3_client(settings.s3), args.url, dest)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    except (BotoCoreError, ClientError) as exc:
        print(f"marketpipe fetch: {args.url}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if count == 0:
        print(f"marketpipe fetch: nothing under {args.url}", file=sys.stderr)
        return EXIT_FAILED
    print(f"fetched {count} objects, {size / 1e6:.2f} MB, from {args.url} into {dest}")
    return EXIT_OK


def cmd_bucket(args: argparse.Namespace, settings: Settings) -> int:
    """Create the object store bucket unless it exists (idempotent; a Helm hook runs it)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from marketpipe.objectstore import ensure_bucket, s3_client
    from marketpipe.runtime import wait_for

    s3 = settings.s3
    client = s3_client(s3)
    where = f"object store at {s3.endpoint_url or 'AWS S3'}"
    try:
        wait_for(where, client.list_buckets, 60.0)  # MinIO may still be starting
        print(ensure_bucket(client, s3.bucket, s3.region))
    except (BotoCoreError, ClientError) as exc:
        print(f"marketpipe bucket: {where}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK


def cmd_cluster(args: argparse.Namespace, settings: Settings) -> int:
    """The release's pods through the Kubernetes API; logs of the unhealthy ones."""
    from marketpipe import cluster

    try:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config import ConfigException
        from urllib3.exceptions import HTTPError
    except ImportError:
        raise ConfigError(
            "`marketpipe cluster` needs the k8s extra: pip install marketpipe[k8s]"
        ) from None
    try:
        api = cluster.core_api(args.kubeconfig)
        pods = cluster.release_pods(api, args.namespace, args.release)
    except (ConfigException, ApiException, HTTPError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"marketpipe cluster: Kubernetes API: {first}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    health = [cluster.pod_health(p) for p in pods]
    lines, healthy = cluster.verdict(health)
    if wants_json(args):
        emit({
            "namespace": args.namespace, "release": args.release, "healthy": healthy,
            "pods": [{**dataclasses.asdict(h), "healthy": h.healthy} for h in health],
        })  # fmt: skip
        return EXIT_OK if healthy else EXIT_FAILED
    for line in lines:
        print(line)
    if args.logs:
        for pod, h in zip(pods, health, strict=True):
            if not h.healthy:
                for line in cluster.tail_logs(api, args.namespace, pod, args.logs):
                    print(line)
    return EXIT_OK if healthy else EXIT_FAILED


def cmd_secrets(args: argparse.Namespace, settings: Settings) -> int:
    """Create the chart's generated Secrets once; never overwrite a value (a Helm hook)."""
    from marketpipe import cluster
    from marketpipe.k8s_secrets import ensure, parse_spec

    try:
        specs = [parse_spec(text) for text in args.secrets]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    labels = dict(label.split("=", 1) for label in args.label)
    try:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config import ConfigException
    except ImportError:
        raise ConfigError(
            "`marketpipe secrets` needs the k8s extra: pip install marketpipe[k8s]"
        ) from None
    try:
        api = cluster.core_api(args.kubeconfig)
        for spec in specs:
            print(ensure(api, args.namespace, spec, labels))
    except (ConfigException, ApiException, OSError) as exc:
        reason = getattr(exc, "reason", None) or str(exc).strip().splitlines()[0]
        print(f"marketpipe secrets: Kubernetes API: {reason}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.kafka import ensure_topics, pipeline_topics, wait_for_broker

    wait_for_broker(settings.kafka)
    for line in ensure_topics(settings.kafka, pipeline_topics(settings.kafka)):
        print(line)
    return EXIT_OK


def cmd_summary(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.kafka import read_to_end, wait_for_broker
    from marketpipe.topicstats import TopicSummary

    topic = args.topic or settings.kafka.topic_raw
    wait_for_broker(settings.kafka)
    summary = TopicSummary()
    since_ms = None if args.since is None else args.since // 1000
    for msg in read_to_end(settings.kafka, topic, since_ms=since_ms):
        summary.add(msg.value(), msg.headers())
    if wants_json(args):
        emit(summary.as_dict(topic))
        return EXIT_OK
    for line in summary.lines(topic):
        print(line)
    return EXIT_OK


def cmd_local(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.local.stack import LocalStack

    services = args.only.split(",") if args.only else None
    stack = LocalStack(settings, services)
    if args.action == "down":
        for line in stack.down(purge=args.purge):
            print(line)
        return EXIT_OK
    statuses = stack.up() if args.action == "up" else stack.status()
    if not statuses:
        print(f"no local stack at {stack.data_dir}: run `marketpipe local up`", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if wants_json(args):
        emit({
            "data_dir": stack.data_dir, "healthy": all(s.healthy for s in statuses),
            "services": [
                {"name": st.name, "state": _state(st), "pid": st.pid, "detail": st.detail}
                for st in statuses
            ],
        })  # fmt: skip
        return EXIT_OK if all(s.healthy for s in statuses) else EXIT_UNAVAILABLE
    for st in statuses:
        pid = f"pid {st.pid}" if st.pid else ""
        print(f"{st.name:<9}{_state(st):<15}{pid:<12}{st.detail}")
    if args.action == "up":
        print(f"endpoints written to {stack.endpoints_path}")
    return EXIT_OK if all(s.healthy for s in statuses) else EXIT_UNAVAILABLE


def _state(st: ServiceStatus) -> str:
    return "up" if st.healthy else ("not answering" if st.running else "down")


def cmd_contracts(args: argparse.Namespace, settings: Settings) -> int:
    from marketpipe.contracts import SCHEMA_PATH, export_schema, render_schema

    path = Path(args.path or SCHEMA_PATH)
    if args.check:
        if not path.exists() or path.read_bytes() != render_schema():
            print(f"{path} is stale: run `marketpipe contracts`", file=sys.stderr)
            return EXIT_FAILED
        print(f"{path} is up to date")
        return EXIT_OK
    print(f"wrote {export_schema(path)}")
    return EXIT_OK


def cmd_health(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 while the service's heartbeat is fresh: the Kubernetes liveness probe. With
    ``--ready``, also while no part of it is in trouble: the readiness probe (a stage retrying
    through an outage is alive, and not ready)."""
    from marketpipe.runtime import READY, heartbeat_age, read_readiness

    path = args.file or settings.health_file
    if not path:
        raise ConfigError("no heartbeat file: set MARKETPIPE_HEALTH_FILE or pass --file")
    age = heartbeat_age(path)
    if age is None:
        print(f"unhealthy: no heartbeat at {path}", file=sys.stderr)
        return EXIT_FAILED
    if age > args.max_age:
        limit = f"{args.max_age:g}s"
        print(f"unhealthy: last heartbeat {age:.0f}s ago (limit {limit})", file=sys.stderr)
        return EXIT_FAILED
    if args.ready:
        state = read_readiness(path) or READY
        if state != READY:
            print(f"not ready: {state}", file=sys.stderr)
            return EXIT_FAILED
        print(f"ready: last heartbeat {age:.1f}s ago")
        return EXIT_OK
    print(f"healthy: last heartbeat {age:.1f}s ago")
    return EXIT_OK


def cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    """Print the effective settings as environment lines, secrets masked."""
    from marketpipe.settings import flatten_env

    if args.reference:
        from marketpipe.settings_doc import markdown

        print(markdown(), end="")
        return EXIT_OK
    values = flatten_env(settings)
    if wants_json(args):
        emit(values)
        return EXIT_OK
    for name, value in values.items():
        print(f"{name}={value}")
    return EXIT_OK
