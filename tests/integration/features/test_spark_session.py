"""The features job's Spark session as an operator meets it: what Spark itself may print on the
job's stderr (not a line per slow micro-batch, not a failed query's stack traces: the job says
both its own way), and which process a SIGTERM to the whole process group stops."""

from __future__ import annotations

import os
import signal
import subprocess

from pyspark import SparkContext
from pyspark.sql import SparkSession

from marketpipe.features import spark as spark_setup


def level(spark: SparkSession, name: str) -> str:
    jvm = spark._jvm
    assert jvm is not None
    return str(jvm.org.apache.logging.log4j.LogManager.getLogger(name).getLevel().name())


def test_slow_batches_and_failed_queries_are_left_to_the_job(spark: SparkSession) -> None:
    jvm = spark._jvm
    assert jvm is not None
    names = (*spark_setup._SLOW_BATCH_LOGGERS, *spark_setup._QUERY_ERROR_LOGGERS)
    for name in names:  # as a log4j2.properties at INFO or WARN would leave them
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
            name, jvm.org.apache.logging.log4j.Level.WARN
        )
    spark_setup.quiet_spark_logs(spark)
    assert [level(spark, n) for n in spark_setup._SLOW_BATCH_LOGGERS] == ["ERROR", "ERROR"]
    assert [level(spark, n) for n in spark_setup._QUERY_ERROR_LOGGERS] == ["FATAL", "FATAL"]


def ignored_signals(pid: int) -> set[int]:
    with open(f"/proc/{pid}/status") as status:
        mask = next(int(line.split()[1], 16) for line in status if line.startswith("SigIgn:"))
    return {n for n in range(1, 65) if mask >> (n - 1) & 1}


def test_the_jvm_leaves_a_sigterm_to_the_driver(spark: SparkSession) -> None:
    """``timeout`` or systemd stop the whole process group: the driver alone must act on it,
    stopping the queries and then the JVM, or the JVM's shutdown hook stops Spark under the
    running job (py4j tracebacks, no summary). A JVM ignoring SIGTERM at start keeps ignoring
    it; the launch wrapper is gone once the session is up."""
    from pyspark import java_gateway

    proc = SparkContext._gateway.proc  # type: ignore[union-attr]
    assert {signal.SIGTERM, signal.SIGINT} <= ignored_signals(proc.pid)
    assert signal.SIGTERM not in ignored_signals(os.getpid())
    assert vars(java_gateway)["Popen"] is subprocess.Popen
