"""The rendered chart against what the real components do on a first `helm install --wait`
(issue 11): facts about Redpanda, Spark and Helm that rendering and schema validation alone
do not catch. Each fact is cited where it comes from the component's source or documentation."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.packaging.conftest import (
    RELEASE,
    ROOT,
    Manifest,
    by_kind,
    containers,
    pod_specs,
    render,
)

GIB = 1 << 30
MIB = 1 << 20
PREFIX = f"{RELEASE}-marketpipe"


def k8s_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (Mi, Gi, M, G, plain bytes) in bytes."""
    units = {"Ki": 1 << 10, "Mi": MIB, "Gi": GIB, "Ti": 1 << 40, "k": 10**3, "M": 10**6,
             "G": 10**9, "T": 10**12}  # fmt: skip
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i?|k)?", str(quantity))
    assert match, quantity
    return int(float(match.group(1)) * units.get(match.group(2) or "", 1))


def binary_bytes(size: str) -> int:
    """A Seastar --memory or JVM/Spark size (768m, 1g, 1280M, 1G): binary units either way
    (Seastar's parse_memory_size and the JVM's -Xmx both read K/M/G as powers of 1024)."""
    match = re.fullmatch(r"(\d+)([kKmMgGtT])?[bB]?", size)
    assert match, size
    return (
        int(match.group(1))
        << {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[(match.group(2) or "").lower()]
    )


def test_size_parsers() -> None:
    assert k8s_bytes("1536Mi") == 1536 * MIB
    assert k8s_bytes("2Gi") == 2 * GIB
    assert k8s_bytes("1G") == 10**9
    assert binary_bytes("768m") == 768 * MIB
    assert binary_bytes("1G") == GIB


# --- Redpanda ----------------------------------------------------------------------------

# Defaults of the node properties when neither redpanda.yaml nor an rpk flag sets them:
# redpanda-data/redpanda src/v/config/node_config.cc (kafka_api 127.0.0.1:9092, admin
# 127.0.0.1:9644, rpc_server 127.0.0.1:33145), also listed in Redpanda's node-properties docs.
NODE_DEFAULTS = {"kafka_api": [("127.0.0.1", 9092)], "admin": [("127.0.0.1", 9644)],
                 "rpc_server": [("127.0.0.1", 33145)]}  # fmt: skip
# `rpk redpanda start` flags that write these properties before Redpanda reads the file.
FLAGS = {"--kafka-addr": "kafka_api", "--rpc-addr": "rpc_server"}


def broker(docs: list[Manifest]) -> tuple[Manifest, Manifest, dict[str, object]]:
    """(pod spec, redpanda container, the `redpanda:` section of the rendered redpanda.yaml)."""
    sts = by_kind(docs, "StatefulSet")[f"{PREFIX}-redpanda"]
    spec = sts["spec"]["template"]["spec"]
    container = next(c for c in spec["containers"] if c["name"] == "redpanda")
    config = yaml.safe_load(by_kind(docs, "ConfigMap")[f"{PREFIX}-redpanda-config"]["data"]
                            ["redpanda.yaml"])  # fmt: skip
    return spec, container, config["redpanda"]


def flag(args: list[str], name: str) -> str | None:
    return next((a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")), None)


def listeners(container: Manifest, node: dict[str, object]) -> dict[int, list[str]]:
    """Port -> addresses Redpanda binds there, as `rpk redpanda start` would configure it."""
    bound = {name: list(default) for name, default in NODE_DEFAULTS.items()}
    for prop in NODE_DEFAULTS:
        value = node.get(prop)
        if value:
            items = value if isinstance(value, list) else [value]
            bound[prop] = [(str(i["address"]), int(i["port"])) for i in items]
    for name, prop in FLAGS.items():
        value = flag(container["args"], name)
        if value:
            bound[prop] = []
            for item in value.split(","):
                host, port = item.split("://")[-1].rsplit(":", 1)
                bound[prop].append((host, int(port)))
    out: dict[int, list[str]] = {}
    for pairs in bound.values():
        for host, port in pairs:
            out.setdefault(port, []).append(host)
    return out


def probe_ports(container: Manifest) -> set[int]:
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    ports = set()
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(kind, {})
        for action in ("httpGet", "tcpSocket", "grpc"):
            if action in probe:
                port = probe[action]["port"]
                ports.add(named[port] if isinstance(port, str) else int(port))
    return ports


def used_broker_ports(docs: list[Manifest], container: Manifest) -> dict[int, str]:
    """Every broker port something connects to from outside the container, and who."""
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    used = dict.fromkeys(probe_ports(container), "a probe")
    for svc in by_kind(docs, "Service").values():
        if svc["spec"]["selector"].get("app.kubernetes.io/component") != "redpanda":
            continue
        for p in svc["spec"]["ports"]:
            target = p["targetPort"]
            used[named[target] if isinstance(target, str) else int(target)] = (
                f"Service {svc['metadata']['name']}"
            )
    for _doc, spec in pod_specs(docs):
        for c in containers(spec):
            for env in c.get("env", []):
                for url in re.findall(r"redpanda[\w.-]*:(\d+)", str(env.get("value", ""))):
                    used[int(url)] = f"{c['name']} ({env['name']})"
    return used


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def loopback_problems(docs: list[Manifest]) -> list[str]:
    _spec, container, node = broker(docs)
    bound = listeners(container, node)
    problems = []
    for port, who in sorted(used_broker_ports(docs, container).items()):
        hosts = bound.get(port)
        if not hosts:
            problems.append(f"port {port} (used by {who}) has no listener")
        elif all(is_loopback(h) for h in hosts):
            problems.append(f"port {port} (used by {who}) listens on {hosts} only")
    return problems


def test_every_broker_port_in_use_listens_beyond_loopback(scenario: str) -> None:
    """The admin API's probes, Services and Console reach podIP:9644, Kafka clients 9092,
    brokers each other on 33145: each must bind a non-loopback address."""
    docs = render(scenario)
    used = used_broker_ports(docs, broker(docs)[1])
    assert {9092, 9644, 33145} <= used.keys()
    assert loopback_problems(docs) == []


def test_a_config_without_admin_listener_is_caught() -> None:
    """The check above fails on the chart as it was: no `admin:` in redpanda.yaml."""
    docs = render("kind-minimal-values")
    cm = by_kind(docs, "ConfigMap")[f"{PREFIX}-redpanda-config"]
    config = yaml.safe_load(cm["data"]["redpanda.yaml"])
    del config["redpanda"]["admin"]
    cm["data"]["redpanda.yaml"] = yaml.safe_dump(config)
    problems = loopback_problems(docs)
    assert any(p.startswith("port 9644") and "127.0.0.1" in p for p in problems), problems


def memory_problems(docs: list[Manifest]) -> list[str]:
    _spec, container, node = broker(docs)
    args = container["args"]
    smp, memory = int(flag(args, "--smp") or 0), flag(args, "--memory")
    assert smp > 0, args
    assert memory, args
    seastar = binary_bytes(memory)
    problems = []
    # syschecks::memory() in redpanda-data/redpanda src/v/syschecks/syschecks.cc throws below
    # 1 << 30 bytes per shard unless `ignore`, which application.cc passes as developer_mode.
    if seastar // smp < GIB and not node.get("developer_mode"):
        problems.append(f"--memory={memory} over --smp={smp} is below Redpanda's 1 GiB per core")
    if node.get("developer_mode"):
        problems.append("developer_mode is on (the chart relies on production defaults)")
    # Redpanda's Helm chart gives Redpanda 80% of the container's memory by default, the rest
    # being Seastar's and the container's overhead (docs.redpanda.com, "Manage Pod Resources
    # in Kubernetes": "allocates 80% of the configured memory ... to Redpanda").
    limit = k8s_bytes(container["resources"]["limits"]["memory"])
    if seastar > 0.8 * limit:
        problems.append(f"--memory={memory} is over 80% of the container limit {limit} B")
    return problems


def test_redpanda_gets_its_per_core_memory_floor(scenario: str) -> None:
    assert memory_problems(render(scenario)) == []


def test_the_old_kind_memory_is_refused() -> None:
    docs = render("kind-minimal-values", "--set", "redpanda.memory=768M")
    assert any("below Redpanda's 1 GiB per core" in p for p in memory_problems(docs))
    docs = render("kind-minimal-values", "--set", "redpanda.smp=2")
    assert any("below Redpanda's 1 GiB per core" in p for p in memory_problems(docs))


# --- start-up order against `helm install --wait` ----------------------------------------


def deploy_timeout_s() -> int:
    """`make deploy`'s --timeout (also what the deploy workflow runs)."""
    text = (ROOT / "Makefile").read_text()
    deploy = text.split("\ndeploy:", 1)[1].split("\n\n", 1)[0]
    match = re.search(r"--timeout (\d+)m", deploy)
    assert match, deploy
    return int(match.group(1)) * 60


def startup_budget_s(container: Manifest) -> int:
    probe = container["startupProbe"]
    return (
        int(probe.get("initialDelaySeconds", 0))
        + probe["periodSeconds"] * probe["failureThreshold"]
    )


def test_services_wait_for_the_broker_and_topics_longer_than_helm_waits(scenario: str) -> None:
    """Post-install hooks (migrate, bucket, topics) only run once `--wait` saw every pod ready,
    and the broker may still be pulling its image when the services start: a service that gave
    up sooner would exit and back off (CrashLoopBackOff) instead of waiting, beating its
    heartbeat, as long as Helm itself waits."""
    docs = render(scenario)
    settings = by_kind(docs, "ConfigMap")[f"{PREFIX}-settings"]["data"]
    _spec, redpanda, _node = broker(docs)
    need = max(deploy_timeout_s(), startup_budget_s(redpanda))
    assert float(settings["MARKETPIPE_KAFKA__CONNECT_TIMEOUT_S"]) >= need
    assert float(settings["MARKETPIPE_KAFKA__TOPIC_WAIT_S"]) >= need


def test_no_hook_runs_before_the_release_exists_or_waits_for_a_pod() -> None:
    """pre-install hooks run before the release's Services and Secrets exist, so a Job there
    could not reach the broker or read its credentials; and only `post-*` hooks may depend on
    the pods `--wait` waits for."""
    docs = render("default")
    for doc in docs:
        hook = doc["metadata"].get("annotations", {}).get("helm.sh/hook")
        if hook is None:
            continue
        kinds = set(hook.split(","))
        component = doc["metadata"]["labels"]["app.kubernetes.io/component"]
        if component == "secrets":
            # The one exception: it creates the Secrets others read, through the Kubernetes
            # API alone (no ConfigMap, Secret or Service of the release; it waits for no pod).
            assert kinds == {"pre-install", "pre-upgrade"}
            if doc["kind"] == "Job":
                (c,) = doc["spec"]["template"]["spec"]["containers"]
                assert "env" not in c
                assert "envFrom" not in c
            continue
        if component == "migrate":
            # Before an upgrade the database, its Secret and the release's ConfigMaps exist
            # (the old release's); never before an install, where the database does not yet.
            assert kinds == {"post-install", "pre-upgrade"}
            continue
        assert not kinds & {"pre-install", "pre-upgrade"}, doc["metadata"]["name"]
        assert kinds <= {"post-install", "post-upgrade", "test"}, doc["metadata"]["name"]


# --- Spark -------------------------------------------------------------------------------


def test_driver_pod_fits_the_jvm_and_the_python_sinks(scenario: str) -> None:
    """Client mode: the driver pod holds the JVM (spark.driver.memory plus Spark's own
    overhead, max(384 MiB, 10%): spark.driver.memoryOverhead in Spark's configuration docs)
    and CPython with pyarrow, DuckDB and psycopg writing the sinks (about 190 MiB resident
    idle, measured with the features modules imported; 512 MiB allowed)."""
    docs = render(scenario)
    driver = by_kind(docs, "Deployment").get(f"{PREFIX}-features")
    if driver is None:
        pytest.skip("operator mode: the operator sizes the driver pod from spark.driver.memory")
    text = by_kind(docs, "ConfigMap")[f"{PREFIX}-features-spark-conf"]["data"][
        "spark-defaults.conf"
    ]
    conf = dict(line.split(" ", 1) for line in text.splitlines() if line)
    heap = binary_bytes(conf["spark.driver.memory"])
    limit = k8s_bytes(driver["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
                      ["memory"])  # fmt: skip
    assert limit >= heap + max(384 * MIB, heap // 10) + 512 * MIB, (heap, limit)


def test_operator_mode_gives_driver_and_executors_writable_scratch() -> None:
    """readOnlyRootFilesystem in the SparkApplication: S3A buffers (fs.s3a.buffer.dir, under
    hadoop.tmp.dir = /tmp), java.io.tmpdir and Python's temp files need a writable /tmp, and
    relative paths land in /work (the image's WORKDIR). The volumes are given as Spark's own
    spark.kubernetes.{driver,executor}.volumes.emptyDir.* properties ("Using Kubernetes
    Volumes" in Spark's running-on-kubernetes docs), which spark-submit applies itself:
    they do not depend on the operator's mutating webhook."""
    docs = render("spark-operator-values")
    app = next(d for d in docs if d["kind"] == "SparkApplication")
    assert app["spec"]["driver"]["securityContext"]["readOnlyRootFilesystem"] is True
    conf = app["spec"]["sparkConf"]
    for role in ("driver", "executor"):
        key = re.compile(rf"spark\.kubernetes\.{role}\.volumes\.emptyDir\.[\w-]+\.mount\.path")
        mounts = {v for k, v in conf.items() if key.fullmatch(k)}
        assert {"/tmp", "/work"} <= mounts, (role, sorted(conf))
