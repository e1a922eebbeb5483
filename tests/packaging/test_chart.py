"""The Helm chart, rendered for every values scenario (default and ci/*-values.yaml)."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from marketpipe.cli import build_parser
from marketpipe.settings import ConfigError, known_env_names, load_settings
from tests.packaging.conftest import (
    CHART,
    KUBERNETES_VERSIONS,
    NAMESPACE,
    RELEASE,
    ROOT,
    WORKLOADS,
    Manifest,
    by_kind,
    containers,
    pod_specs,
    render,
    render_text,
    run,
    tool,
    values_args,
)

SUBSET_SCHEMA = Path(__file__).parent / "crd_schemas" / "sparkapplication.v1beta2.subset.json"
LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
          "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by", "helm.sh/chart")  # fmt: skip
OUR_IMAGES = re.compile(r"(^|/)marketpipe(-spark)?:")


def is_ours(container: Manifest) -> bool:
    return bool(OUR_IMAGES.search(container["image"]))


# --- what the tools say ------------------------------------------------------------------


def test_helm_lint_strict(scenario: str) -> None:
    done = run(tool("helm"), "lint", "--strict", str(CHART), *values_args(scenario))
    assert done.returncode == 0, done.stdout + done.stderr


def test_manifests_validate_strictly_for_each_kubernetes_version(
    scenario: str, tmp_path: Path
) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(render_text(scenario))
    for version in KUBERNETES_VERSIONS:
        done = run(tool("kubernetes-validate"), "-k", version, "--strict", "--quiet",
                   str(rendered))  # fmt: skip
        assert done.returncode == 0, f"Kubernetes {version}:\n{done.stdout}{done.stderr}"


def test_strict_validation_catches_an_unknown_field(tmp_path: Path) -> None:
    """The check above can fail: a misspelt field in a Deployment is refused."""
    docs = render("default")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(deployment))
    done = run(tool("kubernetes-validate"), "-k", "1.31", "--strict", "--quiet", str(bad))
    assert done.returncode != 0
    assert "imagePullPolicyy" in done.stdout + done.stderr


def test_custom_resources_match_their_schema(scenario: str) -> None:
    schema = json.loads(SUBSET_SCHEMA.read_text())
    custom = [d for d in render(scenario) if "sparkoperator.k8s.io" in d["apiVersion"]]
    for doc in custom:
        jsonschema.validate(doc, schema)
    if scenario == "spark-operator-values":
        assert len(custom) == 1
        broken = json.loads(json.dumps(custom[0]))
        broken["spec"]["driver"]["coress"] = 1
        with pytest.raises(jsonschema.ValidationError, match="coress"):
            jsonschema.validate(broken, schema)


def test_values_schema_is_current_and_refuses_unknown_values() -> None:
    done = run(str(ROOT / ".venv" / "bin" / "python"), "scripts/values_schema.py", "--check")
    assert done.returncode == 0, done.stderr
    for bad in ("bogus=1", "redpanda.replica=3", "features.mode=standalone"):
        lint = run(tool("helm"), "lint", "--strict", str(CHART), "--set", bad)
        assert lint.returncode != 0, bad


def test_every_value_is_documented() -> None:
    """values_schema.py refuses undocumented keys; every leaf also gets a description."""
    schema = json.loads((CHART / "values.schema.json").read_text())

    def leaves(node: dict[str, object], path: str) -> list[tuple[str, dict[str, object]]]:
        props = node.get("properties")
        if isinstance(props, dict) and node.get("additionalProperties") is False:
            return [leaf for k, v in props.items() for leaf in leaves(v, f"{path}.{k}")]
        return [(path, node)]

    undocumented = [p for p, node in leaves(schema, "") if not node.get("description")]
    assert undocumented == [] or all(".resources." in p for p in undocumented), undocumented


# --- what every object looks like --------------------------------------------------------


def test_every_object_is_labelled_and_namespaced(scenario: str) -> None:
    for doc in render(scenario):
        meta = doc["metadata"]
        missing = [k for k in LABELS if k not in meta.get("labels", {})]
        assert not missing, f"{doc['kind']}/{meta['name']} lacks {missing}"
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert meta.get("namespace") == NAMESPACE, f"{doc['kind']}/{meta['name']}"


def test_selectors_match_their_pod_templates(scenario: str) -> None:
    docs = render(scenario)
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            selector = doc["spec"]["selector"]["matchLabels"]
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= labels.items(), doc["metadata"]["name"]
    for svc in by_kind(docs, "Service").values():
        selected = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")
                    and svc["spec"]["selector"].items()
                    <= d["spec"]["template"]["metadata"]["labels"].items()]  # fmt: skip
        assert selected, f"Service {svc['metadata']['name']} selects no workload"


def test_long_running_containers_have_probes(scenario: str) -> None:
    for doc, spec in pod_specs(render(scenario)):
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for c in spec["containers"]:
            where = f"{doc['metadata']['name']}/{c['name']}"
            assert "livenessProbe" in c, where
            assert "readinessProbe" in c or "startupProbe" in c, where


def test_stages_are_alive_while_healing_and_not_ready_while_retrying(scenario: str) -> None:
    """Every marketpipe stage: liveness on the heartbeat (which beats on while the stage waits
    out an outage), readiness on `health --ready` (false while it retries)."""
    stages = 0
    for doc, spec in pod_specs(render(scenario)):
        for c in spec["containers"]:
            live = c.get("livenessProbe", {}).get("exec", {}).get("command", [])
            if live[:2] != ["marketpipe", "health"]:
                continue
            stages += 1
            where = f"{doc['metadata']['name']}/{c['name']}"
            ready = c.get("readinessProbe", {}).get("exec", {}).get("command", [])
            assert ready[:3] == ["marketpipe", "health", "--ready"], where
            assert "--ready" not in live, where  # liveness must not fail on a retrying stage
    assert stages >= 2  # producer and quality at least


def test_every_container_has_resources(scenario: str) -> None:
    for doc, spec in pod_specs(render(scenario)):
        for c in containers(spec):
            res = c.get("resources", {})
            where = f"{doc['metadata']['name']}/{c['name']}"
            assert {"cpu", "memory"} <= res.get("requests", {}).keys(), where
            assert "memory" in res.get("limits", {}), where


def test_pods_run_non_root_with_a_locked_down_container(scenario: str) -> None:
    for doc, spec in pod_specs(render(scenario)):
        pod = spec["securityContext"]
        name = doc["metadata"]["name"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] > 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, f"{name}/{c['name']}"
            assert sc["readOnlyRootFilesystem"] is True, f"{name}/{c['name']}"
            assert sc["capabilities"]["drop"] == ["ALL"], f"{name}/{c['name']}"


def test_only_the_spark_driver_gets_an_api_token(scenario: str) -> None:
    for doc, spec in pod_specs(render(scenario)):
        # The Spark driver starts executors; the secrets hook creates the generated Secrets.
        component = doc["metadata"]["labels"]["app.kubernetes.io/component"]
        wants_token = component in ("features", "secrets")
        assert spec.get("automountServiceAccountToken") is wants_token, doc["metadata"]["name"]


def test_every_workload_has_a_network_policy(scenario: str) -> None:
    docs = render(scenario)
    policies = by_kind(docs, "NetworkPolicy").values()
    for doc, _spec in pod_specs(docs):
        labels = (doc["spec"]["template"]["metadata"]["labels"] if doc["kind"] != "Pod"
                  else doc["metadata"]["labels"])  # fmt: skip
        assert any(p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
                   for p in policies), doc["metadata"]["name"]  # fmt: skip


# --- secrets and settings ----------------------------------------------------------------

SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", re.IGNORECASE)


def test_no_secret_is_written_into_a_manifest(scenario: str) -> None:
    docs = render(scenario)
    for cm in by_kind(docs, "ConfigMap").values():
        for key in cm.get("data") or {}:
            assert not SECRET_WORDS.search(key), f"{cm['metadata']['name']}: {key}"
    # The generated credentials appear in their Secret (base64) and nowhere else, in any form.
    generated = [base64.b64decode(v).decode() for s in by_kind(docs, "Secret").values()
                 for v in s["data"].values()]  # fmt: skip
    others = yaml.safe_dump_all([d for d in docs if d["kind"] != "Secret"])
    for value in generated:
        assert len(value) >= 16 or value.startswith("marketpipe-")  # the MinIO root user
        assert value not in others
        assert base64.b64encode(value.encode()).decode() not in others
    for doc, spec in pod_specs(docs):
        for c in containers(spec):
            for env in c.get("env", []):
                if SECRET_WORDS.search(env["name"]):
                    assert "secretKeyRef" in env.get("valueFrom", {}), (
                        f"{doc['metadata']['name']}/{c['name']}: {env['name']} is not from a Secret"
                    )
    for secret in by_kind(docs, "Secret").values():
        assert "stringData" not in secret, secret["metadata"]["name"]


def test_existing_secrets_mean_no_rendered_secret() -> None:
    docs = render("production-like-values")
    assert by_kind(docs, "Secret") == {}
    refs = {env["valueFrom"]["secretKeyRef"]["name"]
            for _, spec in pod_specs(docs) for c in containers(spec)
            for env in c.get("env", []) if "secretKeyRef" in env.get("valueFrom", {})}  # fmt: skip
    assert refs == {"marketpipe-postgres", "marketpipe-s3", "marketpipe-minio-root"}


def known_secrets(docs: list[Manifest]) -> dict[str, set[str]]:
    """Secrets and their keys: rendered ones, and those the secrets hook creates (its args)."""
    found = {name: set(s["data"]) for name, s in by_kind(docs, "Secret").items()}
    hook = by_kind(docs, "Job").get(f"{RELEASE}-marketpipe-secrets")
    if hook is not None:
        (c,) = hook["spec"]["template"]["spec"]["containers"]
        for spec in (a for a in c["args"][1:] if not a.startswith("--")):
            name, keys = spec.split(":", 1)
            found[name] = {k.split("=")[0] for k in keys.split(",")}
    return found


def test_generated_secrets_cover_every_reference() -> None:
    docs = render("default")
    assert by_kind(docs, "Secret") == {}  # generated in the cluster, not rendered: GitOps-safe
    secrets = known_secrets(docs)
    for doc, spec in pod_specs(docs):
        for c in containers(spec):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets.get(ref["name"], set()), (doc["metadata"]["name"],
                                                                            ref)  # fmt: skip


def container_env(docs: list[Manifest], c: Manifest) -> dict[str, str]:
    """The container's environment as Kubernetes would give it (secrets as placeholders)."""
    configmaps = by_kind(docs, "ConfigMap")
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]].get("data", {}))
    for item in c.get("env", []):
        if "value" in item:
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
            env[item["name"]] = value
        elif "secretKeyRef" in item["valueFrom"]:
            env[item["name"]] = "from-a-secret"
        else:
            env[item["name"]] = "pod-0"
    return env


def settings_problems(docs: list[Manifest], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """ConfigMap keys that are not Settings names, and containers whose environment the
    Settings model refuses (loaded exactly as the services load it)."""
    known = known_env_names()
    problems = [f"{cm['metadata']['name']}: unknown setting {k}"
                for cm in by_kind(docs, "ConfigMap").values() for k in (cm.get("data") or {})
                if k.startswith("MARKETPIPE_") and k not in known]  # fmt: skip
    for doc, spec in pod_specs(docs):
        for c in containers(spec):
            if not is_ours(c):
                continue
            with monkeypatch.context() as m:
                for name in [k for k in os.environ if k.startswith("MARKETPIPE_")]:
                    m.delenv(name)
                for name, value in container_env(docs, c).items():
                    m.setenv(name, value)
                try:
                    load_settings(env_file=None)
                except ConfigError as exc:
                    problems.append(f"{doc['metadata']['name']}/{c['name']}: {exc}")
    return problems


def test_env_names_are_settings_and_every_container_gets_valid_settings(
    scenario: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env or local endpoints file from the working tree
    assert settings_problems(render(scenario), monkeypatch) == []


def test_a_misspelt_or_invalid_setting_in_values_is_caught(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    typo = render("default", "--set", "settings.MARKETPIPE_KAFKA__PARTITIONZ=3")
    assert any("unknown setting MARKETPIPE_KAFKA__PARTITIONZ" in p
               for p in settings_problems(typo, monkeypatch))  # fmt: skip
    invalid = render("default", "--set", "producer.settings.MARKETPIPE_PRODUCER__TPS=fast")
    assert any("producer" in p and "MARKETPIPE_PRODUCER__TPS" in p
               for p in settings_problems(invalid, monkeypatch))  # fmt: skip


def test_commands_in_the_chart_are_marketpipe_commands(scenario: str) -> None:
    parser = build_parser()
    for doc, spec in pod_specs(render(scenario)):
        for c in containers(spec):
            if not is_ours(c):
                continue
            args = list(c.get("args", []))
            if args and args[0] == "marketpipe":  # the Spark image runs through its entrypoint
                args = args[1:]
            parsed = parser.parse_args(args)
            assert callable(parsed.handler), (doc["metadata"]["name"], args)


def test_services_wait_for_the_topics_the_hook_creates(scenario: str) -> None:
    docs = render(scenario)
    settings = by_kind(docs, "ConfigMap")[f"{RELEASE}-marketpipe-settings"]["data"]
    assert float(settings["MARKETPIPE_KAFKA__TOPIC_WAIT_S"]) >= 300
    assert settings["MARKETPIPE_HEALTH_FILE"].startswith("/tmp/")  # the writable scratch mount
    hooks = {j["metadata"]["name"].removeprefix(f"{RELEASE}-marketpipe-"):
             int(j["metadata"]["annotations"]["helm.sh/hook-weight"])
             for j in by_kind(docs, "Job").values()
             if "helm.sh/hook" in j["metadata"].get("annotations", {})}  # fmt: skip
    assert hooks["migrate"] < hooks["bucket"] < hooks["topics"]
    for name in ("bucket", "topics"):
        job = by_kind(docs, "Job")[f"{RELEASE}-marketpipe-{name}"]
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    # The schema moves before the new code runs against it: pre-upgrade (on install, after the
    # bundled database exists).
    migrate = by_kind(docs, "Job")[f"{RELEASE}-marketpipe-migrate"]
    assert migrate["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"


# --- components --------------------------------------------------------------------------


def test_spark_driver_rbac_is_least_privilege() -> None:
    docs = render("default")
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = by_kind(docs, "Role")[f"{RELEASE}-marketpipe-features-spark"]
    granted = {(res, verb) for rule in role["rules"] for res in rule["resources"]
               for verb in rule["verbs"]}  # fmt: skip
    assert {res for res, _ in granted} == {"pods", "configmaps"}
    assert ("pods", "create") in granted
    assert ("pods", "delete") in granted
    assert not {verb for _, verb in granted} & {"*", "escalate", "bind", "impersonate"}
    binding = by_kind(docs, "RoleBinding")[f"{RELEASE}-marketpipe-features-spark"]
    driver = by_kind(docs, "Deployment")[f"{RELEASE}-marketpipe-features"]
    assert (
        binding["subjects"][0]["name"] == driver["spec"]["template"]["spec"]["serviceAccountName"]
    )


def test_spark_conf_points_executors_back_at_the_driver() -> None:
    docs = render("default")
    text = by_kind(docs, "ConfigMap")[f"{RELEASE}-marketpipe-features-spark-conf"]["data"]
    conf = dict(line.split(" ", 1) for line in text["spark-defaults.conf"].splitlines() if line)
    driver_svc = by_kind(docs, "Service")[f"{RELEASE}-marketpipe-features-driver"]
    assert conf["spark.driver.host"] == f"{driver_svc['metadata']['name']}.{NAMESPACE}.svc"
    assert {p["port"] for p in driver_svc["spec"]["ports"]} == {
        int(conf["spark.driver.port"]), int(conf["spark.driver.blockManager.port"])}  # fmt: skip
    assert conf["spark.kubernetes.namespace"] == NAMESPACE
    assert conf["spark.kubernetes.container.image"] == "ghcr.io/marketpipe/marketpipe-spark:0.1.0"
    secrets = known_secrets(docs)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        name, item = conf[f"spark.kubernetes.executor.secretKeyRef.{key}"].split(":")
        assert item in secrets[name]
    features = by_kind(docs, "ConfigMap")[f"{RELEASE}-marketpipe-features"]["data"]
    assert features["MARKETPIPE_FEATURES__SOURCE"] == "connector"
    assert features["MARKETPIPE_FEATURES__CHECKPOINT_DIR"].startswith("s3a://")


def test_executor_pod_template_is_a_valid_locked_down_pod(tmp_path: Path) -> None:
    docs = render("default")
    data = by_kind(docs, "ConfigMap")[f"{RELEASE}-marketpipe-features-spark-conf"]["data"]
    template = yaml.safe_load(data["executor-pod.yaml"])
    conf = dict(line.split(" ", 1) for line in data["spark-defaults.conf"].splitlines() if line)
    assert conf["spark.kubernetes.executor.podTemplateFile"].endswith("/executor-pod.yaml")
    names = [c["name"] for c in template["spec"]["containers"]]
    assert names == [conf["spark.kubernetes.executor.podTemplateContainerName"]]
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(template))
    done = run(tool("kubernetes-validate"), "-k", "1.31", "--strict", "--quiet",
               str(tmp_path / "pod.yaml"))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    spec = template["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    policy = by_kind(docs, "NetworkPolicy")[f"{RELEASE}-marketpipe-features-executor"]
    assert (
        policy["spec"]["podSelector"]["matchLabels"].items()
        <= template["metadata"]["labels"].items()
    )


def test_executors_pull_from_the_registry_the_other_pods_use() -> None:
    docs = render("production-like-values")
    data = by_kind(docs, "ConfigMap")[f"{RELEASE}-marketpipe-features-spark-conf"]["data"]
    template = yaml.safe_load(data["executor-pod.yaml"])
    driver = by_kind(docs, "Deployment")[f"{RELEASE}-marketpipe-features"]
    pulls = driver["spec"]["template"]["spec"]["imagePullSecrets"]
    assert pulls == [{"name": "registry-credentials"}]
    assert template["spec"]["imagePullSecrets"] == pulls


def test_operator_mode_renders_a_spark_application_instead_of_the_driver() -> None:
    docs = render("spark-operator-values")
    assert f"{RELEASE}-marketpipe-features" not in by_kind(docs, "Deployment")
    assert set(by_kind(docs, "Role")) == {f"{RELEASE}-marketpipe-secrets"}  # no driver Role
    app = next(d for d in docs if d["kind"] == "SparkApplication")
    assert app["spec"]["arguments"] == ["features"]
    assert app["spec"]["mainApplicationFile"].endswith("/marketpipe/__main__.py")


def test_production_like_spreads_brokers_and_protects_them() -> None:
    docs = render("production-like-values")
    settings = by_kind(docs, "ConfigMap")[f"{RELEASE}-marketpipe-settings"]["data"]
    assert settings["MARKETPIPE_KAFKA__REPLICATION_FACTOR"] == "3"
    broker = by_kind(docs, "StatefulSet")[f"{RELEASE}-marketpipe-redpanda"]
    assert broker["spec"]["replicas"] == 3
    args = broker["spec"]["template"]["spec"]["containers"][0]["args"]
    seeds = next(a for a in args if a.startswith("--seeds="))
    assert seeds.count(":33145") == 3
    affinity = broker["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert "preferredDuringSchedulingIgnoredDuringExecution" in affinity  # soft: fits kind
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert {f"{RELEASE}-marketpipe-redpanda", f"{RELEASE}-marketpipe-quality"} <= pdbs.keys()
    assert "replay" in {j["metadata"]["labels"]["app.kubernetes.io/component"]
                        for j in by_kind(docs, "Job").values()}  # fmt: skip


def test_quality_checkers_keep_their_pod_name_as_instance_id(scenario: str) -> None:
    docs = render(scenario)
    checker = by_kind(docs, "StatefulSet")[f"{RELEASE}-marketpipe-quality"]
    env = checker["spec"]["template"]["spec"]["containers"][0]["env"]
    instance = next(e for e in env if e["name"] == "MARKETPIPE_QUALITY__INSTANCE_ID")
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_kind_minimal_publishes_the_consoles_kind_maps() -> None:
    kind = yaml.safe_load((ROOT / "k8s" / "kind-config.yaml").read_text())
    mapped = {m["containerPort"] for n in kind["nodes"] for m in n.get("extraPortMappings", [])}
    docs = render("kind-minimal-values")
    node_ports = {p["nodePort"] for s in by_kind(docs, "Service").values()
                  for p in s["spec"]["ports"] if "nodePort" in p}  # fmt: skip
    assert node_ports == mapped == {30080, 30901}
    images = {n["image"] for n in kind["nodes"]}
    assert len(images) == 1
    assert re.fullmatch(r"kindest/node:v1\.(29|3[0-3])\.\d+(@sha256:[0-9a-f]{64})?", images.pop())


def test_helm_test_checks_rows_and_objects() -> None:
    pod = by_kind(render("default"), "Pod")[f"{RELEASE}-marketpipe-test"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["args"][:3] == ["smoke", "--sink", "postgres"]


def rendered_notes(tmp_path: Path, *extra: str) -> str:
    """NOTES.txt rendered without a cluster: a copy of the chart renders it as a ConfigMap."""
    import shutil

    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes_tpl = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes_check.tpl").write_text(
        '{{- define "notes.check" -}}\n' + notes_tpl + "\n{{- end }}\n"
    )
    (chart / "templates" / "notes-check.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n"
        '{{ include "notes.check" . | indent 4 }}\n'
    )
    done = run(tool("helm"), "template", RELEASE, str(chart), "--namespace", NAMESPACE,
               "--show-only", "templates/notes-check.yaml", *extra)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return str(yaml.safe_load(done.stdout)["data"]["notes"])


def test_notes_give_the_port_forwards(tmp_path: Path) -> None:
    notes = rendered_notes(tmp_path)
    assert f"port-forward svc/{RELEASE}-marketpipe-dashboard 8501:8501" in notes
    for svc, ports in (("console", "8080:8080"), ("minio", "9001:9001"),
                       ("timescaledb", "5432:5432")):  # fmt: skip
        assert f"port-forward svc/{RELEASE}-marketpipe-{svc} {ports}" in notes
    assert f"port-forward {RELEASE}-marketpipe-quality-0 9464:9464" in notes  # its /metrics


def test_workloads_only_of_known_kinds(scenario: str) -> None:
    kinds = {d["kind"] for d in render(scenario)}
    assert kinds <= {
        "ConfigMap",
        "Secret",
        "Service",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "SparkApplication",
        *WORKLOADS,
    }


def test_the_cluster_domain_is_a_value() -> None:
    default = render_text("default")
    assert f".{NAMESPACE}.svc.cluster.local:9092" in default
    other = render_text("default", "--set", "clusterDomain=corp.internal")
    assert "cluster.local" not in other
    assert f".{NAMESPACE}.svc.corp.internal:9092" in other


def test_artifact_hub_lists_the_images_the_chart_runs() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    listed = {i["image"] for i in yaml.safe_load(chart["annotations"]["artifacthub.io/images"])}
    images = {
        c["image"] for d in render("default") for c in
        d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    }  # fmt: skip
    assert images <= listed, images - listed


EXTERNAL_KAFKA = (
    "--set", "redpanda.enabled=false", "--set", "kafka.bootstrapServers=kafka.corp:9093",
    "--set", "kafka.securityProtocol=SASL_SSL", "--set", "kafka.saslMechanism=SCRAM-SHA-512",
    "--set", "kafka.existingSecret=kafka-creds", "--set", "kafka.caSecret=kafka-ca",
)  # fmt: skip


def test_an_external_kafka_takes_sasl_and_tls_from_secrets() -> None:
    docs = render("default", *EXTERNAL_KAFKA)
    settings = by_kind(docs, "ConfigMap")[f"{RELEASE}-marketpipe-settings"]["data"]
    assert settings["MARKETPIPE_KAFKA__BOOTSTRAP_SERVERS"] == "kafka.corp:9093"
    assert settings["MARKETPIPE_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert settings["MARKETPIPE_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert settings["MARKETPIPE_KAFKA__SSL_CA_LOCATION"] == "/etc/marketpipe/kafka-ca/ca.crt"
    assert "kafka-creds" not in json.dumps(settings)  # credentials never in a ConfigMap
    pods = [
        (d, d["spec"]["template"]["spec"]) for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "Job") and "template" in d["spec"]
    ]  # fmt: skip
    marketpipe = [
        (d, s) for d, s in pods
        if any("marketpipe" in c["image"] for c in s["containers"])
        and d["metadata"]["labels"]["app.kubernetes.io/component"] != "secrets"  # no Kafka
    ]  # fmt: skip
    assert marketpipe
    for doc, spec in marketpipe:
        for c in spec["containers"]:
            env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in c.get("env", [])}
            assert env["MARKETPIPE_KAFKA__SASL_USERNAME"] == {
                "name": "kafka-creds",
                "key": "username",
            }
            assert env["MARKETPIPE_KAFKA__SASL_PASSWORD"] == {
                "name": "kafka-creds",
                "key": "password",
            }
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/etc/marketpipe/kafka-ca" in mounts, doc["metadata"]["name"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["kafka-ca"]["secret"]["secretName"] == "kafka-ca"
    conf = by_kind(docs, "ConfigMap")[f"{RELEASE}-marketpipe-features-spark-conf"]["data"]
    assert (
        "spark.kubernetes.executor.secrets.kafka-ca /etc/marketpipe/kafka-ca"
        in (conf["spark-defaults.conf"])
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--set", "kafka.saslMechanism=PLAIN"), "set redpanda.enabled=false"),
        (("--set", "redpanda.enabled=false", "--set", "kafka.bootstrapServers=k:9092",
          "--set", "kafka.securityProtocol=SASL_SSL", "--set", "kafka.saslMechanism=PLAIN"),
         "needs kafka.existingSecret"),
        (("--set", "redpanda.enabled=false", "--set", "kafka.bootstrapServers=k:9092",
          "--set", "kafka.saslMechanism=PLAIN", "--set", "kafka.existingSecret=s"),
         "SASL_PLAINTEXT or SASL_SSL"),
    ],
)  # fmt: skip
def test_a_kafka_security_mistake_is_one_line(extra: tuple[str, ...], message: str) -> None:
    done = run(tool("helm"), "template", RELEASE, str(CHART), *extra)
    assert done.returncode != 0
    assert message in done.stderr


def strictly_valid(text: str, tmp_path: Path) -> list[Manifest]:
    """Rendered manifests that kubernetes-validate accepts strictly (newest version), parsed."""
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(text)
    done = run(tool("kubernetes-validate"), "-k", KUBERNETES_VERSIONS[-1], "--strict", "--quiet",
               str(rendered))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return [d for d in yaml.safe_load_all(text) if d]


INGRESS = (
    "--set", "ingress.enabled=true", "--set", "ingress.dashboardHost=mp.example.com",
    "--set", "ingress.minioHost=minio.example.com", "--set", "ingress.tlsSecret=mp-tls",
    "--set", "ingress.className=nginx",
)  # fmt: skip


def test_the_consoles_can_be_published_through_an_ingress(tmp_path: Path) -> None:
    docs = strictly_valid(render_text("default", *INGRESS), tmp_path)
    (ingress,) = by_kind(docs, "Ingress").values()
    assert ingress["spec"]["ingressClassName"] == "nginx"
    routes = {
        r["host"]: (p["backend"]["service"]["name"], p["backend"]["service"]["port"]["number"])
        for r in ingress["spec"]["rules"] for p in r["http"]["paths"]
    }  # fmt: skip
    assert routes == {
        "mp.example.com": (f"{RELEASE}-marketpipe-dashboard", 8501),
        "minio.example.com": (f"{RELEASE}-marketpipe-minio", 9001),
    }
    assert ingress["spec"]["tls"] == [
        {"secretName": "mp-tls", "hosts": ["mp.example.com", "minio.example.com"]}
    ]
    # The controller's namespace reaches exactly the published ports, nothing else.
    policies = {p["metadata"]["labels"]["app.kubernetes.io/component"]: p
                for p in by_kind(docs, "NetworkPolicy").values()}  # fmt: skip
    for component, port in (("dashboard", 8501), ("minio", 9001)):
        rules = [r for r in policies[component]["spec"]["ingress"]
                 if any("namespaceSelector" in f for f in r.get("from", []))
                 and r["from"][0]["namespaceSelector"]["matchLabels"]
                 == {"kubernetes.io/metadata.name": "ingress-nginx"}]  # fmt: skip
        assert [[p["port"] for p in r["ports"]] for r in rules] == [[port]], component
    assert not by_kind(render("default"), "Ingress")  # off by default


def test_notes_give_the_published_hosts(tmp_path: Path) -> None:
    notes = rendered_notes(tmp_path, *INGRESS)
    assert "dashboard:       https://mp.example.com/" in notes
    assert "MinIO console:   https://minio.example.com/" in notes
    assert "Redpanda Console: https" not in notes  # no consoleHost given


def test_an_ingress_without_a_host_is_refused() -> None:
    done = run(tool("helm"), "template", RELEASE, str(CHART), "--set", "ingress.enabled=true")
    assert done.returncode != 0
    assert "ingress.enabled needs a host" in done.stderr


LIVE = ("--set", "live.enabled=true", "--set", "live.symbols=AAPL\\,MSFT",
        "--set", "live.existingSecret=polygon")  # fmt: skip


def test_the_live_source_streams_with_its_key_from_a_secret(tmp_path: Path) -> None:
    docs = strictly_valid(render_text("default", *LIVE), tmp_path)
    live = by_kind(docs, "Deployment")[f"{RELEASE}-marketpipe-live"]
    assert live["spec"]["replicas"] == 1  # two would publish every trade twice
    assert live["spec"]["strategy"]["type"] == "Recreate"
    (c,) = live["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["live"]
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in c["env"]}
    assert env["MARKETPIPE_LIVE__API_KEY"] == {"name": "polygon", "key": "api-key"}
    own = by_kind(docs, "ConfigMap")[f"{RELEASE}-marketpipe-live"]["data"]
    assert own == {"MARKETPIPE_LIVE__MODE": "stream", "MARKETPIPE_LIVE__SYMBOLS": "AAPL,MSFT"}
    assert "metrics" in [p["name"] for p in c["ports"]]
    assert f"{RELEASE}-marketpipe-live" not in by_kind(render("default"), "Deployment")


def test_the_live_source_needs_its_key_and_symbols() -> None:
    done = run(tool("helm"), "template", RELEASE, str(CHART), "--set", "live.enabled=true")
    assert done.returncode != 0
    assert "live.existingSecret" in done.stderr
