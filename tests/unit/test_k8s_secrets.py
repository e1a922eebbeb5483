"""The chart's generated Secrets: created once, never overwritten, missing keys added."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from marketpipe.k8s_secrets import SecretSpec, ensure, generate, missing, parse_spec


def test_spec_syntax() -> None:
    assert parse_spec("mp-minio:root-user=user,root-password") == SecretSpec(
        "mp-minio", {"root-user": "user", "root-password": "password"}
    )
    for bad in ("nokeys", "x:", ":k", "x:k=token"):
        with pytest.raises(ValueError, match="want"):
            parse_spec(bad)


def test_generated_values() -> None:
    user, password = generate("user"), generate("password")
    assert user.startswith("marketpipe-")
    assert user == user.lower()  # MinIO wants a plain user name
    assert len(password) == 40
    assert generate("password") != password


class Api:
    """CoreV1Api's secret calls, over a dict (what `ensure` may call, and nothing else)."""

    def __init__(self, data: dict[str, dict[str, str]]) -> None:
        self.data = data
        self.calls: list[str] = []

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        self.calls.append("read")
        if name not in self.data:
            raise ApiException(status=404)
        return type("Secret", (), {"data": dict(self.data[name])})()

    def create_namespaced_secret(self, namespace: str, body: Any) -> None:
        self.calls.append("create")
        self.data[body.metadata.name] = dict(body.data)

    def patch_namespaced_secret(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        self.calls.append("patch")
        self.data[name].update(body["data"])


def test_created_once_then_kept() -> None:
    api = Api({})
    spec = parse_spec("db:password")
    assert ensure(api, "ns", spec, {"a": "b"}) == "secret db: created with password"
    first = api.data["db"]["password"]
    assert len(base64.b64decode(first)) == 40
    assert ensure(api, "ns", spec, {}) == "secret db: exists, kept as it is"
    assert api.data["db"]["password"] == first  # never overwritten
    assert api.calls == ["read", "create", "read"]


def test_only_missing_keys_are_added() -> None:
    api = Api({"minio": {"root-user": "dXNlcg=="}})
    line = ensure(api, "ns", parse_spec("minio:root-user=user,root-password"), {})
    assert line == "secret minio: exists, added root-password (kept the rest)"
    assert api.data["minio"]["root-user"] == "dXNlcg=="
    assert set(missing(parse_spec("minio:root-user=user"), {"root-user"})) == set()


def test_other_api_errors_are_not_swallowed() -> None:
    class Forbidden(Api):
        def read_namespaced_secret(self, name: str, namespace: str) -> Any:
            raise ApiException(status=403, reason="Forbidden")

    with pytest.raises(ApiException):
        ensure(Forbidden({}), "ns", parse_spec("x:k"), {})
