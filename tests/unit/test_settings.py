from __future__ import annotations

from pathlib import Path

import pytest

from marketpipe.cli import main
from marketpipe.settings import (
    ConfigError,
    ProducerSettings,
    Settings,
    flatten_env,
    known_env_names,
    load_settings,
    with_overrides,
)


def test_defaults_name_the_pipeline_topics() -> None:
    s = load_settings()
    assert (s.kafka.topic_raw, s.kafka.topic_valid, s.kafka.topic_dlq) == (
        "ticks.raw",
        "ticks.valid",
        "ticks.dlq",
    )


def test_nested_env_and_csv_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETPIPE_KAFKA__PARTITIONS", "12")
    monkeypatch.setenv("MARKETPIPE_PRODUCER__SYMBOLS", "AAPL, MSFT,BTC-USD")
    monkeypatch.setenv("MARKETPIPE_PRODUCER__FAULTS__CROSSED", "0.25")
    s = load_settings()
    assert s.kafka.partitions == 12
    assert s.producer.symbols == ["AAPL", "MSFT", "BTC-USD"]
    assert s.producer.faults.crossed == 0.25


def test_json_list_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETPIPE_PRODUCER__SYMBOLS", '["A", "B"]')
    assert load_settings().producer.symbols == ["A", "B"]


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETPIPE_KAFKA__PARTITIONS", "zero")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "MARKETPIPE_KAFKA__PARTITIONS" in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_variable_is_an_error_with_a_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETPIPE_KAFKA__BOOTSTRAP_SERVER", "x:1")
    with pytest.raises(ConfigError, match="did you mean MARKETPIPE_KAFKA__BOOTSTRAP_SERVERS"):
        load_settings()


def test_secret_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETPIPE_POSTGRES__PASSWORD", "hunter2")
    s = load_settings()
    assert s.postgres.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(s)
    assert flatten_env(s)["MARKETPIPE_POSTGRES__PASSWORD"] == "**********"


def test_sasl_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETPIPE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError, match="SASL"):
        load_settings()


def test_precedence_env_over_dotenv_over_endpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = tmp_path / ".marketpipe" / "local"
    local.mkdir(parents=True)
    (local / "endpoints.env").write_text(
        "MARKETPIPE_KAFKA__BOOTSTRAP_SERVERS=endpoints:1\nMARKETPIPE_POSTGRES__PORT=1111\n"
        "MARKETPIPE_S3__ENDPOINT_URL=http://endpoints:2\n"
    )
    (tmp_path / ".env").write_text(
        "MARKETPIPE_POSTGRES__PORT=2222\nMARKETPIPE_S3__ENDPOINT_URL=http://dotenv:3\n"
    )
    monkeypatch.setenv("MARKETPIPE_S3__ENDPOINT_URL", "http://environ:4")
    s = load_settings()
    assert s.kafka.bootstrap_servers == "endpoints:1"
    assert s.postgres.port == 2222
    assert s.s3.endpoint_url == "http://environ:4"


def test_unknown_key_in_dotenv_is_reported(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MARKETPIPE_KAFKA__PARTITONS=3\n")
    with pytest.raises(ConfigError, match="MARKETPIPE_KAFKA__PARTITONS"):
        load_settings()


def test_cli_overrides_name_the_option() -> None:
    base = ProducerSettings()
    assert with_overrides(base, {"tps": "--tps"}, tps="250").tps == 250.0
    with pytest.raises(ConfigError, match="--tps"):
        with_overrides(base, {"tps": "--tps"}, tps="-5")


def test_symbols_with_start_prices() -> None:
    cfg = ProducerSettings(symbols=["AAPL:189.5", "MSFT"], start_price=50)
    assert cfg.start_prices() == {"AAPL": 189.5, "MSFT": 50.0}
    assert cfg.symbol_names() == ["AAPL", "MSFT"]


@pytest.mark.parametrize("bad", [["A:0"], ["A:-1"], ["A:x"], ["A", "A:3"], [":5"], ["A B"]])
def test_bad_symbol_specs_are_rejected(bad: list[str]) -> None:
    with pytest.raises(ValueError, match=r"symbol|price|unique"):
        ProducerSettings(symbols=bad)


def test_symbol_names_from_count() -> None:
    assert ProducerSettings(symbol_count=3).symbol_names() == ["SYM000", "SYM001", "SYM002"]
    assert ProducerSettings(symbols=["X"], symbol_count=3).symbol_names() == ["X"]


def test_every_field_has_an_env_name() -> None:
    names = known_env_names()
    assert "MARKETPIPE_PRODUCER__FAULTS__OUT_OF_ORDER" in names
    assert "MARKETPIPE_KAFKA__TOPIC_DLQ" in names
    flat = flatten_env(Settings(_env_file=None))  # type: ignore[call-arg]
    assert set(flat) <= names


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MARKETPIPE_KAFKA__PARTITIONS", "0"),
        ("MARKETPIPE_PRODUCER__TPS", "fast"),
        ("MARKETPIPE_LOG_LEVEL", "LOUD"),
        ("MARKETPIPE_NOPE", "1"),
    ],
)
def test_cli_exits_2_with_one_line(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["settings"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert variable in err
    assert "Traceback" not in err


def test_cli_option_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["produce", "--crossed", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "--crossed" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MARKETPIPE_FEATURES__SINKS": "parquet"}, "sinks need duckdb or postgres"),
        (
            {"MARKETPIPE_FEATURES__SINKS": "duckdb,parquet",
             "MARKETPIPE_FEATURES__ARCHIVE_ROOT": ""},
            "parquet sink writes under",
        ),
        (
            {"MARKETPIPE_FEATURES__READ_FROM": "archive",
             "MARKETPIPE_FEATURES__ARCHIVE_ROOT": "s3://bucket/cold"},
            "needs MARKETPIPE_FEATURES__ARCHIVE_ROOT to be a local folder",
        ),
    ],
)  # fmt: skip
def test_feature_sink_combinations_that_cannot_work_are_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_spark_conf_is_a_json_object_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "MARKETPIPE_FEATURES__SPARK_CONF", '{"spark.kubernetes.driver.pod.name": "driver-0"}'
    )
    settings = load_settings(env_file=None)
    assert settings.features.spark_conf == {"spark.kubernetes.driver.pod.name": "driver-0"}
