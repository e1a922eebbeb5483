"""One local Spark session for the feature tests (a cold start costs ~10-15 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from marketpipe.features.spark import spark_session
from marketpipe.settings import FeaturesSettings


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = spark_session(
        FeaturesSettings(shuffle_partitions=2, spark_conf={"spark.marketpipe.probe": "yes"}),
        app="marketpipe-tests",
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
