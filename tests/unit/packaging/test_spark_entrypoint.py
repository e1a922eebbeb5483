"""images/spark/entrypoint.sh: how executor and driver pods are launched. `java` and
`spark-submit` are stand-ins that print their arguments (a unit test of the launcher script;
the image itself runs in the deploy workflow)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[3] / "images" / "spark" / "entrypoint.sh"


@pytest.fixture
def fake_spark(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    spark_home = tmp_path / "spark"
    (spark_home / "bin").mkdir(parents=True)
    bin_dir.mkdir()
    printer = '#!/bin/sh\nprintf "%s\\n" "$(basename "$0")" "$@"\n'
    for exe in (bin_dir / "java", spark_home / "bin" / "spark-submit"):
        exe.write_text(printer)
        exe.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "SPARK_HOME": str(spark_home)}


def launch(env: dict[str, str], *args: str) -> list[str]:
    done = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_executor_runs_the_kubernetes_executor_backend(fake_spark: dict[str, str]) -> None:
    env = {**fake_spark, "SPARK_JAVA_OPT_0": "-Dspark.a=1", "SPARK_JAVA_OPT_1": "-Dx=two words",
           "SPARK_EXECUTOR_MEMORY": "1g", "SPARK_DRIVER_URL": "spark://d:7078",
           "SPARK_EXECUTOR_ID": "3", "SPARK_EXECUTOR_CORES": "2", "SPARK_APPLICATION_ID": "app-1",
           "SPARK_EXECUTOR_POD_IP": "10.0.0.9", "SPARK_EXECUTOR_POD_NAME": "mp-exec-3",
           "SPARK_CONF_DIR": "/conf"}  # fmt: skip
    argv = launch(env, "executor")
    assert argv[:6] == ["java", "-Dspark.a=1", "-Dx=two words", "-Xms1g", "-Xmx1g", "-cp"]
    assert argv[6] == f"/conf:{fake_spark['SPARK_HOME']}/jars/*"
    assert argv[7] == "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend"
    pairs = dict(zip(argv[8::2], argv[9::2], strict=True))
    assert pairs == {"--driver-url": "spark://d:7078", "--executor-id": "3", "--cores": "2",
                     "--app-id": "app-1", "--hostname": "10.0.0.9", "--resourceProfileId": "0",
                     "--podName": "mp-exec-3"}  # fmt: skip


def test_executor_without_its_variables_fails_naming_one(fake_spark: dict[str, str]) -> None:
    done = subprocess.run(["bash", str(SCRIPT), "executor"], env=fake_spark, capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip
    assert done.returncode != 0
    assert "SPARK_EXECUTOR_MEMORY" in done.stderr


def test_driver_runs_spark_submit_in_client_mode(fake_spark: dict[str, str]) -> None:
    env = {**fake_spark, "SPARK_DRIVER_BIND_ADDRESS": "10.0.0.5"}
    argv = launch(env, "driver", "--properties-file", "/p", "local:///app.py", "features")
    assert argv == ["spark-submit", "--conf", "spark.driver.bindAddress=10.0.0.5", "--conf",
                    "spark.executorEnv.SPARK_DRIVER_POD_IP=10.0.0.5", "--deploy-mode", "client",
                    "--properties-file", "/p", "local:///app.py", "features"]  # fmt: skip


def test_anything_else_runs_as_given(fake_spark: dict[str, str]) -> None:
    assert launch(fake_spark, "java", "-version") == ["java", "-version"]
    assert os.access(SCRIPT, os.X_OK)
