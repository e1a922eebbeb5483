"""``marketpipe secrets ensure``: the credentials the chart's bundled TimescaleDB and MinIO
need, created in the cluster once and never overwritten.

A Secret rendered by the chart would be minted again by every ``helm template`` (GitOps tools
render that way) while the database keeps the first password; ``lookup`` only helps ``helm
install``. A pre-install/pre-upgrade hook Job runs this instead: a Secret that exists keeps
every value it has; only keys it lacks are added. The Secrets are not part of the release, so
they outlive ``helm uninstall`` with the data volumes they protect.
"""

from __future__ import annotations

import base64
import secrets
import string
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["user", "password"]


@dataclass(frozen=True)
class SecretSpec:
    name: str
    keys: dict[str, Kind]


def parse_spec(text: str) -> SecretSpec:
    """``NAME:KEY=user,KEY=password`` (a key without ``=`` is a password)."""
    name, sep, rest = text.partition(":")
    if not sep or not name or not rest:
        raise ValueError(f"want NAME:KEY[=user|password],... not {text!r}")
    keys: dict[str, Kind] = {}
    for item in rest.split(","):
        key, _, kind = item.partition("=")
        if kind not in ("", "user", "password") or not key:
            raise ValueError(f"bad key {item!r} in {text!r}: want KEY, KEY=user or KEY=password")
        keys[key] = "user" if kind == "user" else "password"
    return SecretSpec(name, keys)


def generate(kind: Kind) -> str:
    if kind == "user":
        return "marketpipe-" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(8))
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))


def missing(spec: SecretSpec, present: set[str]) -> dict[str, str]:
    """Generated values for the keys the Secret lacks; what it has is never touched."""
    return {key: generate(kind) for key, kind in spec.keys.items() if key not in present}


def ensure(api: Any, namespace: str, spec: SecretSpec, labels: dict[str, str]) -> str:
    """Create the Secret, or add the keys it lacks; one line saying which."""
    from kubernetes.client import V1ObjectMeta, V1Secret
    from kubernetes.client.exceptions import ApiException

    try:
        found = api.read_namespaced_secret(spec.name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        data = _b64(missing(spec, set()))
        meta = V1ObjectMeta(name=spec.name, namespace=namespace, labels=labels)
        api.create_namespaced_secret(namespace, V1Secret(metadata=meta, data=data, type="Opaque"))
        return f"secret {spec.name}: created with {', '.join(sorted(spec.keys))}"
    add = missing(spec, set((found.data or {}).keys()))
    if not add:
        return f"secret {spec.name}: exists, kept as it is"
    api.patch_namespaced_secret(spec.name, namespace, {"data": _b64(add)})
    return f"secret {spec.name}: exists, added {', '.join(sorted(add))} (kept the rest)"


def _b64(values: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
