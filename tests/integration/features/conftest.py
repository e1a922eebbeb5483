from tests.unit.features.conftest import spark  # noqa: F401 - one Spark session fixture
