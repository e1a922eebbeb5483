"""Generate charts/marketpipe/values.schema.json and the values table of the chart's README
from values.yaml and its `# --` comments.

Every key of values.yaml must carry a `# --` comment (helm-docs style): it becomes the key's
description, and a key without one is an error. Types come from the default values; objects
refuse unknown keys (additionalProperties: false) except the free-form maps listed in FREE_FORM;
CONSTRAINTS adds enums, bounds and patterns. The README's table (between the `values:start` and
`values:end` markers) lists every documented key with its type and default. `--check` fails
when either committed file is stale.

    python scripts/values_schema.py [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "marketpipe"
VALUES = CHART / "values.yaml"
SCHEMA = CHART / "values.schema.json"
README = CHART / "README.md"
START, END = "<!-- values:start (scripts/values_schema.py) -->", "<!-- values:end -->"

SETTINGS_MAP: dict[str, Any] = {
    "type": "object",
    "propertyNames": {"pattern": "^MARKETPIPE_[A-Z0-9_]+$"},
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}
RESOURCES: dict[str, Any] = {
    "type": "object",
    "properties": {
        "requests": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
        "limits": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
    },
    "additionalProperties": False,
}
# Paths (dotted; * matches one key) whose value is a free-form map or a Kubernetes structure.
FREE_FORM: dict[str, dict[str, Any]] = {
    "settings": SETTINGS_MAP,
    "*.settings": SETTINGS_MAP,
    "podSecurityContext": {"type": "object"},
    "securityContext": {"type": "object"},
    "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
    "tolerations": {"type": "array", "items": {"type": "object"}},
    "imagePullSecrets": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"name": {"type": "string", "minLength": 1}},
            "required": ["name"],
            "additionalProperties": False,
        },
    },
    "serviceAccount.annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    "features.sparkConf": {
        "type": "object",
        "propertyNames": {"pattern": "^spark\\."},
        "additionalProperties": {"type": "string"},
    },
    "replay.files": {"type": "array", "items": {"type": "string", "minLength": 1}},
    # Kubernetes label selectors and label maps.
    "metrics.scraper.namespaceSelector": {"type": "object"},
    "ingress.controllerNamespaceSelector": {"type": "object"},
    "ingress.annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    "metrics.scraper.podSelector": {"type": "object"},
    "metrics.*.labels": {"type": "object", "additionalProperties": {"type": "string"}},
}
RESOURCE_PATHS = ("*.resources", "*.*.resources", "*.*.*.resources")
PULL_POLICY = {"enum": ["Always", "IfNotPresent", "Never"]}
CONSTRAINTS: dict[str, dict[str, Any]] = {
    "image.pullPolicy": PULL_POLICY,
    "features.image.pullPolicy": PULL_POLICY,
    "features.mode": {"enum": ["submit", "operator"]},
    "live.mode": {"enum": ["stream", "poll"]},
    "kafka.securityProtocol": {"enum": ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]},
    "kafka.saslMechanism": {"enum": ["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]},
    "postgres.sslmode": {
        "enum": ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
    },
    "postgres.port": {"minimum": 1, "maximum": 65535},
    "metrics.port": {"minimum": 1, "maximum": 65535},
    "redpanda.replicas": {"minimum": 1},
    "redpanda.smp": {"minimum": 1},
    "redpanda.memory": {"pattern": "^[0-9]+[KMGT]$"},
    "producer.replicas": {"minimum": 0},
    "quality.replicas": {"minimum": 1},
    "features.executor.instances": {"minimum": 1},
    "features.executor.cores": {"minimum": 1},
    "features.driver.memory": {"pattern": "^[0-9]+[kmgt]?$"},
    "features.executor.memory": {"pattern": "^[0-9]+[kmgt]?$"},
    "replay.input.s3Url": {"pattern": "^(s3://[^/]+(/.*)?)?$"},
    "livenessMaxAgeSeconds": {"minimum": 10},
    "redpanda.console.nodePort": {"anyOf": [{"const": 0}, {"minimum": 30000, "maximum": 32767}]},
    "minio.consoleNodePort": {"anyOf": [{"const": 0}, {"minimum": 30000, "maximum": 32767}]},
    "test.timeoutSeconds": {"minimum": 30},
    "jobs.backoffLimit": {"minimum": 0},
    "s3.bucket": {"pattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"},
}
STRING_OR_NUMBER = ("features.executor.requestCores", "features.executor.limitCores")


def matches(path: str, pattern: str) -> bool:
    parts, wanted = path.split("."), pattern.split(".")
    if len(parts) != len(wanted):
        return False
    return all(w in ("*", p) for p, w in zip(parts, wanted, strict=True))


def comments(text: str) -> dict[str, str]:
    """Dotted key path -> its `# --` comment (continuation lines joined)."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    in_doc = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending, in_doc = [stripped[4:].strip()], True
            continue
        if stripped.startswith("#"):
            if in_doc:
                pending.append(stripped[1:].strip())
            continue
        in_doc = False
        key = re.match(r"^(\s*)([A-Za-z0-9_]+):", line)
        if not key:
            continue
        indent = len(key.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key.group(2)))
        if pending:
            found[".".join(k for _, k in stack)] = " ".join(pending)
        pending = []
    return found


def schema_for(value: Any, path: str, docs: dict[str, str], missing: list[str]) -> dict[str, Any]:
    node: dict[str, Any]
    if path in FREE_FORM or any(matches(path, p) for p in FREE_FORM):
        pattern = path if path in FREE_FORM else next(p for p in FREE_FORM if matches(path, p))
        node = dict(FREE_FORM[pattern])
    elif any(matches(path, p) for p in RESOURCE_PATHS):
        node = dict(RESOURCES)
    elif isinstance(value, dict):
        node = {
            "type": "object",
            "properties": {
                k: schema_for(v, f"{path}.{k}" if path else k, docs, missing)
                for k, v in value.items()
            },
            "additionalProperties": False,
        }
    elif path in STRING_OR_NUMBER:
        node = {"type": ["string", "number"]}
    elif isinstance(value, bool):
        node = {"type": "boolean"}
    elif isinstance(value, int):
        node = {"type": "integer"}
    elif isinstance(value, float):
        node = {"type": "number"}
    elif isinstance(value, str):
        node = {"type": "string"}
    elif isinstance(value, list):
        node = {"type": "array"}
    else:
        raise SystemExit(f"values.yaml: {path}: cannot infer a type from {value!r}")
    node.update(CONSTRAINTS.get(path, {}))
    if path in docs:
        node["description"] = docs[path]
    elif path and not isinstance(value, dict):
        missing.append(path)
    return node


def render() -> str:
    text = VALUES.read_text()
    missing: list[str] = []
    body = schema_for(yaml.safe_load(text), "", comments(text), missing)
    if missing:
        raise SystemExit("values.yaml: undocumented values (add a `# --` comment): "
                         + ", ".join(missing))  # fmt: skip
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "marketpipe values",
              **body}  # fmt: skip
    return json.dumps(schema, indent=2) + "\n"


def table() -> str:
    """The values table: every documented key, its type, default and description."""
    text = VALUES.read_text()
    docs = comments(text)
    values = yaml.safe_load(text)
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for path, doc in docs.items():
        value: Any = values
        for part in path.split("."):
            value = value[part]
        kind = type(value).__name__.replace("dict", "object").replace("list", "array")
        kind = kind.replace("str", "string").replace("int", "integer").replace("bool", "boolean")
        default = json.dumps(value, separators=(",", ":")).replace("|", "\\|")
        if len(default) > 60:
            default = default[:57] + "..."
        described = doc.replace("|", "\\|")
        rows.append(f"| `{path}` | {kind} | `{default}` | {described} |")
    return "\n".join(rows)


def readme() -> str:
    current = README.read_text()
    if START not in current or END not in current:
        raise SystemExit(f"{README}: add the markers {START} and {END} where the table goes")
    head, rest = current.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if either file is stale")
    args = parser.parse_args()
    wanted = {SCHEMA: render(), README: readme()}
    if args.check:
        stale = [str(path) for path, text in wanted.items() if path.read_text() != text]
        if stale:
            print(f"stale: {', '.join(stale)}: run python scripts/values_schema.py",
                  file=sys.stderr)  # fmt: skip
            return 1
        print("values.schema.json and the README's values table are up to date")
        return 0
    for path, text in wanted.items():
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
