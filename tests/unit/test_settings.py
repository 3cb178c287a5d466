"""Table-driven tests for processor.settings.load_settings (an env mapping in, a frozen Settings or ConfigError out)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from processor.errors import ConfigError
from processor.settings import Secret, Settings, load_settings

PASSCODE = "PASSCODE-0f1e2d3c"
SASL_PASSWORD = "SASL-PW-9a8b7c"
REGISTRY_AUTH = "reg-user:REG-PW-5e6f"
SECRETS = (PASSCODE, SASL_PASSWORD, "REG-PW-5e6f")

MINIMAL: dict[str, str] = {
    "KAFKA_BOOTSTRAP_SERVERS": "broker:9092",
    "KAFKA_TOPICS": "events",
    "CLEVERTAP_ACCOUNT_ID": "ACC-1",
    "CLEVERTAP_PASSCODE": PASSCODE,
    "CLEVERTAP_REGION": "eu1",
}

REPO_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "user_event.avsc"


def env(**changes: str | None) -> dict[str, str]:
    """MINIMAL with changes; a value of None removes the variable."""
    result = dict(MINIMAL)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def config_error(mapping: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(mapping)
    return info.value


def all_text(exc: BaseException) -> str:
    return "\n".join([str(exc), repr(exc), *getattr(exc, "__notes__", [])])


# ------------------------------------------------------------------------------------------------
# The minimal valid environment
# ------------------------------------------------------------------------------------------------


def test_minimal_env() -> None:
    settings = load_settings(MINIMAL)
    assert isinstance(settings, Settings)
    assert settings.kafka_bootstrap_servers == "broker:9092"
    assert settings.kafka_topics == ("events",)
    assert settings.clevertap_account_id == "ACC-1"
    assert settings.clevertap_passcode.reveal() == PASSCODE
    assert settings.clevertap_base_url == "https://eu1.api.clevertap.com"
    assert settings.clevertap_region == "eu1"
    assert settings.kafka_group_id == "clevertap-processor"
    assert dict(settings.kafka_extra) == {}
    assert settings.dlq_topic is None
    assert settings.dlq_topic_for("events") == "events.dlq"
    assert settings.schema_source == "file"
    assert settings.avro_schema_file.resolve() == REPO_SCHEMA
    assert settings.schema_registry_url is None
    assert settings.schema_registry_auth is None
    assert settings.subscriptions_file is None
    numbers = (
        settings.max_concurrency,
        settings.upload_batch_size,
        settings.delete_batch_size,
        settings.request_timeout_s,
        settings.max_in_flight,
        settings.max_in_flight_per_partition,
        settings.commit_interval_s,
        settings.poll_batch_size,
        settings.retry_initial_s,
        settings.retry_max_s,
        settings.credentials_retry_s,
        settings.drain_timeout_s,
    )
    assert numbers == (10, 1000, 100, 30.0, 20000, 5000, 2.0, 1000, 0.5, 30.0, 30.0, 20.0)
    assert (settings.log_level, settings.log_format) == ("INFO", "text")


def test_settings_are_frozen() -> None:
    settings = load_settings(MINIMAL)
    with pytest.raises(AttributeError):
        settings.max_concurrency = 3  # type: ignore[misc]


def test_other_environment_variables_are_ignored() -> None:
    settings = load_settings(env(HOME="/root", PATH="/bin", KAFKA_TOPICS_EXTRA="x"))
    assert settings.kafka_topics == ("events",)


# ------------------------------------------------------------------------------------------------
# Required variables
# ------------------------------------------------------------------------------------------------

REQUIRED = [
    ("KAFKA_BOOTSTRAP_SERVERS", "is required (host:port[,host:port...] of the Kafka cluster)"),
    ("KAFKA_TOPICS", "is required (comma-separated topics to consume)"),
    ("CLEVERTAP_ACCOUNT_ID", "is required (the Project ID from CleverTap's settings page)"),
    ("CLEVERTAP_PASSCODE", "is required (or CLEVERTAP_PASSCODE_FILE naming a mounted file)"),
]


@pytest.mark.parametrize(("name", "reason"), REQUIRED)
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_required_variable_missing(name: str, reason: str, how: str) -> None:
    error = config_error(env(**{name: None if how == "absent" else ""}))
    assert error.setting == name
    assert error.reason == reason
    assert str(error) == f"{name}: {reason}"
    assert not hasattr(error, "__notes__")  # the only problem


@pytest.mark.parametrize("name", ["KAFKA_BOOTSTRAP_SERVERS", "KAFKA_TOPICS", "CLEVERTAP_ACCOUNT_ID"])
def test_blank_required_variable_is_missing(name: str) -> None:
    assert config_error(env(**{name: "   "})).setting == name


def test_blank_passcode_is_missing() -> None:
    assert config_error(env(CLEVERTAP_PASSCODE="   ")).setting == "CLEVERTAP_PASSCODE"


# ------------------------------------------------------------------------------------------------
# Region / base URL
# ------------------------------------------------------------------------------------------------

REGIONS = [
    ("eu1", "eu1", "https://eu1.api.clevertap.com"),
    ("in1", "in1", "https://in1.api.clevertap.com"),
    ("us1", "us1", "https://us1.api.clevertap.com"),
    ("sg1", "sg1", "https://sg1.api.clevertap.com"),
    ("aps3", "aps3", "https://aps3.api.clevertap.com"),
    ("mec1", "mec1", "https://mec1.api.clevertap.com"),
    ("sk1", "sk1", "https://sk1.api.clevertap.com"),
    ("EU1", "eu1", "https://eu1.api.clevertap.com"),
    ("Us1", "us1", "https://us1.api.clevertap.com"),
    (" in1 ", "in1", "https://in1.api.clevertap.com"),
]


@pytest.mark.parametrize(("value", "region", "url"), REGIONS)
def test_region(value: str, region: str, url: str) -> None:
    settings = load_settings(env(CLEVERTAP_REGION=value))
    assert (settings.clevertap_region, settings.clevertap_base_url) == (region, url)


ALL_REGIONS = "eu1, in1, us1, sg1, aps3, mec1, sk1"


@pytest.mark.parametrize("value", ["xx1", "eu", "global", "eu2", "api"])
def test_unknown_region(value: str) -> None:
    error = config_error(env(CLEVERTAP_REGION=value))
    assert error.setting == "CLEVERTAP_REGION"
    assert str(error) == f"CLEVERTAP_REGION: must be one of {ALL_REGIONS}, got {value!r}"


def test_region_and_base_url_both() -> None:
    error = config_error(env(CLEVERTAP_BASE_URL="https://eu1.api.clevertap.com"))
    assert error.setting == "CLEVERTAP_BASE_URL"
    assert error.reason == "set either CLEVERTAP_REGION or CLEVERTAP_BASE_URL, not both"


@pytest.mark.parametrize("blank", [None, "", "  "])
def test_neither_region_nor_base_url(blank: str | None) -> None:
    error = config_error(env(CLEVERTAP_REGION=blank))
    assert error.setting == "CLEVERTAP_REGION"
    assert error.reason.startswith(f"is required: one of {ALL_REGIONS}")
    assert "eu1.dashboard.clevertap.com" in error.reason


@pytest.mark.parametrize(
    ("url", "resolved"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("https://api.clevertap.com//", "https://api.clevertap.com"),
        ("https://proxy.example.com/clevertap", "https://proxy.example.com/clevertap"),
    ],
)
def test_base_url_instead_of_region(url: str, resolved: str) -> None:
    settings = load_settings(env(CLEVERTAP_REGION=None, CLEVERTAP_BASE_URL=url))
    assert (settings.clevertap_region, settings.clevertap_base_url) == (None, resolved)


@pytest.mark.parametrize("url", ["eu1.api.clevertap.com", "ftp://x", "https://", "http:// space"])
def test_bad_base_url(url: str) -> None:
    error = config_error(env(CLEVERTAP_REGION=None, CLEVERTAP_BASE_URL=url))
    assert error.setting == "CLEVERTAP_BASE_URL"
    assert str(error) == f"CLEVERTAP_BASE_URL: must be an http(s) URL, got {url!r}"


# ------------------------------------------------------------------------------------------------
# Numbers and choices
# ------------------------------------------------------------------------------------------------

NUMBER_OK = [
    ("CLEVERTAP_MAX_CONCURRENCY", "1", "max_concurrency", 1),
    ("CLEVERTAP_MAX_CONCURRENCY", "15", "max_concurrency", 15),
    ("CLEVERTAP_MAX_CONCURRENCY", " 7 ", "max_concurrency", 7),
    ("CLEVERTAP_UPLOAD_BATCH_SIZE", "1000", "upload_batch_size", 1000),
    ("CLEVERTAP_UPLOAD_BATCH_SIZE", "1", "upload_batch_size", 1),
    ("CLEVERTAP_DELETE_BATCH_SIZE", "100", "delete_batch_size", 100),
    ("CLEVERTAP_REQUEST_TIMEOUT_S", "1", "request_timeout_s", 1.0),
    ("CLEVERTAP_REQUEST_TIMEOUT_S", "600", "request_timeout_s", 600.0),
    ("CLEVERTAP_REQUEST_TIMEOUT_S", "2.5", "request_timeout_s", 2.5),
    ("PROCESSOR_MAX_IN_FLIGHT", "10000000", "max_in_flight", 10_000_000),
    ("PROCESSOR_MAX_IN_FLIGHT_PER_PARTITION", "1", "max_in_flight_per_partition", 1),
    ("PROCESSOR_COMMIT_INTERVAL_S", "0.05", "commit_interval_s", 0.05),
    ("PROCESSOR_POLL_BATCH_SIZE", "100000", "poll_batch_size", 100_000),
    ("PROCESSOR_RETRY_INITIAL_S", "0.001", "retry_initial_s", 0.001),
    ("PROCESSOR_RETRY_MAX_S", "3600", "retry_max_s", 3600.0),
    ("PROCESSOR_CREDENTIALS_RETRY_S", "0.01", "credentials_retry_s", 0.01),
    ("PROCESSOR_DRAIN_TIMEOUT_S", "0", "drain_timeout_s", 0.0),
    ("LOG_LEVEL", "debug", "log_level", "DEBUG"),
    ("LOG_LEVEL", "Warning", "log_level", "WARNING"),
    ("LOG_FORMAT", "JSON", "log_format", "json"),
]


@pytest.mark.parametrize(("name", "value", "field", "expected"), NUMBER_OK)
def test_number_accepted(name: str, value: str, field: str, expected: Any) -> None:
    result = getattr(load_settings(env(**{name: value})), field)
    assert type(result) is type(expected)
    assert result == expected


NUMBER_BAD = [
    ("CLEVERTAP_MAX_CONCURRENCY", "0", "must be between 1 and 15, got 0"),
    ("CLEVERTAP_MAX_CONCURRENCY", "16", "must be between 1 and 15, got 16"),
    ("CLEVERTAP_MAX_CONCURRENCY", "-3", "must be between 1 and 15, got -3"),
    ("CLEVERTAP_MAX_CONCURRENCY", "abc", "must be a whole number, got 'abc'"),
    ("CLEVERTAP_MAX_CONCURRENCY", "1.5", "must be a whole number, got '1.5'"),
    ("CLEVERTAP_UPLOAD_BATCH_SIZE", "1001", "must be between 1 and 1000, got 1001"),
    ("CLEVERTAP_UPLOAD_BATCH_SIZE", "0", "must be between 1 and 1000, got 0"),
    ("CLEVERTAP_DELETE_BATCH_SIZE", "101", "must be between 1 and 100, got 101"),
    ("CLEVERTAP_REQUEST_TIMEOUT_S", "0.5", "must be between 1.0 and 600.0, got 0.5"),
    ("CLEVERTAP_REQUEST_TIMEOUT_S", "601", "must be between 1.0 and 600.0, got 601.0"),
    ("CLEVERTAP_REQUEST_TIMEOUT_S", "x", "must be a number, got 'x'"),
    ("CLEVERTAP_REQUEST_TIMEOUT_S", "nan", "must be between 1.0 and 600.0, got nan"),
    ("CLEVERTAP_REQUEST_TIMEOUT_S", "inf", "must be between 1.0 and 600.0, got inf"),
    ("PROCESSOR_MAX_IN_FLIGHT", "0", "must be between 1 and 10000000, got 0"),
    ("PROCESSOR_COMMIT_INTERVAL_S", "0.01", "must be between 0.05 and 300.0, got 0.01"),
    ("PROCESSOR_POLL_BATCH_SIZE", "100001", "must be between 1 and 100000, got 100001"),
    ("PROCESSOR_RETRY_INITIAL_S", "0", "must be between 0.001 and 60.0, got 0.0"),
    ("PROCESSOR_DRAIN_TIMEOUT_S", "-1", "must be between 0.0 and 3600.0, got -1.0"),
    ("LOG_LEVEL", "verbose", "must be one of debug, info, warning, error, got 'verbose'"),
    ("LOG_FORMAT", "xml", "must be one of text, json, got 'xml'"),
    ("SCHEMA_SOURCE", "http", "must be one of file, registry, got 'http'"),
]


@pytest.mark.parametrize(("name", "value", "reason"), NUMBER_BAD)
def test_number_rejected(name: str, value: str, reason: str) -> None:
    error = config_error(env(**{name: value}))
    assert (error.setting, error.reason) == (name, reason)
    assert str(error) == f"{name}: {reason}"


# ------------------------------------------------------------------------------------------------
# Topics
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "topics"),
    [
        ("events", ("events",)),
        ("a,b", ("a", "b")),
        (" a , b ,, ", ("a", "b")),
        ("user.events-v2_x", ("user.events-v2_x",)),
    ],
)
def test_topics(value: str, topics: tuple[str, ...]) -> None:
    assert load_settings(env(KAFKA_TOPICS=value)).kafka_topics == topics


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("bad topic", "'bad topic' is not a valid Kafka topic name"),
        ("ok,bad/topic", "'bad/topic' is not a valid Kafka topic name"),
        (",", "names no topic"),
        ("x" * 250, f"{'x' * 250!r} is not a valid Kafka topic name"),
    ],
)
def test_bad_topics(value: str, reason: str) -> None:
    error = config_error(env(KAFKA_TOPICS=value))
    assert (error.setting, error.reason) == ("KAFKA_TOPICS", reason)


def test_dlq_topic() -> None:
    settings = load_settings(env(KAFKA_DLQ_TOPIC="dead.letters"))
    assert settings.dlq_topic == "dead.letters"
    assert settings.dlq_topic_for("events") == "dead.letters"


@pytest.mark.parametrize(
    ("value", "reason"),
    [("events", "must not be one of KAFKA_TOPICS"), ("bad dlq", "'bad dlq' is not a valid Kafka topic name")],
)
def test_bad_dlq_topic(value: str, reason: str) -> None:
    error = config_error(env(KAFKA_DLQ_TOPIC=value))
    assert (error.setting, error.reason) == ("KAFKA_DLQ_TOPIC", reason)


# ------------------------------------------------------------------------------------------------
# Kafka client properties
# ------------------------------------------------------------------------------------------------

CONSUMER_BASE = {
    "bootstrap.servers": "broker:9092",
    "group.id": "clevertap-processor",
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    "client.id": "clevertap-processor",
    "queued.max.messages.kbytes": 16384,
}


def test_consumer_config_minimal() -> None:
    config = load_settings(MINIMAL).consumer_config()
    assert config == CONSUMER_BASE
    assert config["enable.auto.commit"] is False
    assert config["enable.auto.offset.store"] is False


@pytest.mark.parametrize(
    ("variables", "extra"),
    [
        ({"KAFKA_CONFIG_SASL_PASSWORD": SASL_PASSWORD}, {"sasl.password": SASL_PASSWORD}),
        (
            {
                "KAFKA_CONFIG_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_CONFIG_SASL_MECHANISM": "SCRAM-SHA-512",
                "KAFKA_CONFIG_SASL_USERNAME": "svc",
            },
            {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "svc"},
        ),
        ({"KAFKA_CONFIG_SESSION_TIMEOUT_MS": "45000"}, {"session.timeout.ms": "45000"}),
        ({"KAFKA_CONFIG_AUTO_OFFSET_RESET": "latest"}, {"auto.offset.reset": "latest"}),
        ({"KAFKA_CONFIG_": "ignored"}, {}),
    ],
)
def test_kafka_extra(variables: dict[str, str], extra: dict[str, str]) -> None:
    settings = load_settings(env(**variables))
    assert dict(settings.kafka_extra) == extra
    assert settings.consumer_config() == {**CONSUMER_BASE, **extra}


def test_kafka_group_id_setting() -> None:
    settings = load_settings(env(KAFKA_GROUP_ID="my-group"))
    assert settings.consumer_config()["group.id"] == "my-group"


def test_producer_config_shares_security_but_not_consumer_keys() -> None:
    settings = load_settings(
        env(
            KAFKA_CONFIG_SECURITY_PROTOCOL="SASL_SSL",
            KAFKA_CONFIG_SASL_PASSWORD=SASL_PASSWORD,
            KAFKA_CONFIG_SESSION_TIMEOUT_MS="45000",
            KAFKA_CONFIG_AUTO_OFFSET_RESET="latest",
            KAFKA_CONFIG_FETCH_MAX_BYTES="1000",
            KAFKA_CONFIG_ACKS="1",
        )
    )
    assert settings.producer_config() == {
        "bootstrap.servers": "broker:9092",
        "client.id": "clevertap-processor-dlq",
        "security.protocol": "SASL_SSL",
        "sasl.password": SASL_PASSWORD,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 20,
    }


def test_kafka_config_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "sasl-password"
    secret_file.write_text(SASL_PASSWORD + "\n", encoding="utf-8")
    settings = load_settings(env(KAFKA_CONFIG_SASL_PASSWORD_FILE=str(secret_file)))
    assert dict(settings.kafka_extra) == {"sasl.password": SASL_PASSWORD}


def test_kafka_config_file_wins_over_plain(tmp_path: Path) -> None:
    secret_file = tmp_path / "sasl-password"
    secret_file.write_text(SASL_PASSWORD, encoding="utf-8")
    settings = load_settings(
        env(KAFKA_CONFIG_SASL_PASSWORD="plain-value", KAFKA_CONFIG_SASL_PASSWORD_FILE=str(secret_file))
    )
    assert dict(settings.kafka_extra) == {"sasl.password": SASL_PASSWORD}


def test_kafka_config_file_unreadable(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    error = config_error(env(KAFKA_CONFIG_SASL_PASSWORD_FILE=str(missing)))
    assert error.setting == "KAFKA_CONFIG_SASL_PASSWORD_FILE"
    assert str(error) == f"KAFKA_CONFIG_SASL_PASSWORD_FILE: cannot read {missing}: No such file or directory"


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("KAFKA_CONFIG_ENABLE_AUTO_COMMIT", "enable.auto.commit"),
        ("KAFKA_CONFIG_ENABLE_AUTO_OFFSET_STORE", "enable.auto.offset.store"),
        ("KAFKA_CONFIG_GROUP_ID", "group.id"),
        ("KAFKA_CONFIG_BOOTSTRAP_SERVERS", "bootstrap.servers"),
        ("KAFKA_CONFIG_GROUP_ID_FILE", "group.id"),
    ],
)
def test_reserved_kafka_keys_refused(name: str, key: str) -> None:
    error = config_error(env(**{name: "true"}))
    assert error.setting == name
    assert error.reason == f"{key} is managed by the processor (use the dedicated setting or leave it)"


# ------------------------------------------------------------------------------------------------
# Secrets from files
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [PASSCODE, PASSCODE + "\n", f"  {PASSCODE}\r\n"])
def test_passcode_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "passcode"
    path.write_text(content, encoding="utf-8")
    settings = load_settings(env(CLEVERTAP_PASSCODE=None, CLEVERTAP_PASSCODE_FILE=str(path)))
    assert settings.clevertap_passcode.reveal() == PASSCODE


def test_passcode_file_wins(tmp_path: Path) -> None:
    path = tmp_path / "passcode"
    path.write_text("from-file", encoding="utf-8")
    settings = load_settings(env(CLEVERTAP_PASSCODE_FILE=str(path)))
    assert settings.clevertap_passcode.reveal() == "from-file"


def test_passcode_file_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    error = config_error(env(CLEVERTAP_PASSCODE=None, CLEVERTAP_PASSCODE_FILE=str(missing)))
    assert error.setting == "CLEVERTAP_PASSCODE_FILE"
    assert error.reason == f"cannot read {missing}: No such file or directory"
    # One problem, one message: the unreadable file, not also "CLEVERTAP_PASSCODE is required".
    assert not hasattr(error, "__notes__")


def test_passcode_file_empty(tmp_path: Path) -> None:
    path = tmp_path / "passcode"
    path.write_text("\n", encoding="utf-8")
    error = config_error(env(CLEVERTAP_PASSCODE=None, CLEVERTAP_PASSCODE_FILE=str(path)))
    assert error.setting == "CLEVERTAP_PASSCODE"


def test_registry_settings() -> None:
    settings = load_settings(
        env(
            SCHEMA_SOURCE="Registry",
            SCHEMA_REGISTRY_URL="http://127.0.0.1:8081/",
            SCHEMA_REGISTRY_BASIC_AUTH=REGISTRY_AUTH,
        )
    )
    assert settings.schema_source == "registry"
    assert settings.schema_registry_url == "http://127.0.0.1:8081"
    assert settings.schema_registry_auth == Secret(REGISTRY_AUTH)


@pytest.mark.parametrize(
    ("changes", "setting", "reason"),
    [
        ({"SCHEMA_SOURCE": "registry"}, "SCHEMA_REGISTRY_URL", "is required when SCHEMA_SOURCE=registry"),
        (
            {"SCHEMA_REGISTRY_URL": "localhost:8081"},
            "SCHEMA_REGISTRY_URL",
            "must be an http(s) URL, got 'localhost:8081'",
        ),
        (
            {"SCHEMA_REGISTRY_BASIC_AUTH": "no-colon-" + PASSCODE},
            "SCHEMA_REGISTRY_BASIC_AUTH",
            "must have the form user:password",
        ),
        ({"AVRO_SCHEMA_FILE": "/nonexistent/x.avsc"}, "AVRO_SCHEMA_FILE", "/nonexistent/x.avsc does not exist"),
        ({"SUBSCRIPTIONS_FILE": "/nonexistent/s.yaml"}, "SUBSCRIPTIONS_FILE", "/nonexistent/s.yaml does not exist"),
    ],
)
def test_schema_and_file_settings_rejected(changes: dict[str, str], setting: str, reason: str) -> None:
    error = config_error(env(**changes))
    assert (error.setting, error.reason) == (setting, reason)
    assert PASSCODE not in all_text(error)


# ------------------------------------------------------------------------------------------------
# Secrets never shown
# ------------------------------------------------------------------------------------------------


def secret_env() -> dict[str, str]:
    return env(KAFKA_CONFIG_SASL_PASSWORD=SASL_PASSWORD, SCHEMA_REGISTRY_BASIC_AUTH=REGISTRY_AUTH)


def test_describe_masks_secrets() -> None:
    settings = load_settings(secret_env())
    shown = settings.describe()
    assert shown["clevertap_passcode"] == "****"
    assert shown["schema_registry_auth"] == "****"
    assert shown["kafka_extra"] == {"sasl.password": "****"}
    assert shown["kafka_topics"] == ["events"]
    assert shown["clevertap_base_url"] == "https://eu1.api.clevertap.com"
    text = str(shown)
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("KAFKA_CONFIG_SSL_KEY_PASSWORD", "ssl.key.password"),
        ("KAFKA_CONFIG_SSL_KEYSTORE_PASSWORD", "ssl.keystore.password"),
        ("KAFKA_CONFIG_SASL_OAUTHBEARER_CLIENT_SECRET", "sasl.oauthbearer.client.secret"),
        ("KAFKA_CONFIG_SASL_JAAS_CONFIG", "sasl.jaas.config"),
        pytest.param(
            "KAFKA_CONFIG_SSL_KEY_PEM",
            "ssl.key.pem",
        ),
    ],
)
def test_describe_masks_secret_kafka_keys(name: str, key: str) -> None:
    value = "KAFKA-SECRET-" + key
    shown = load_settings(env(**{name: value})).describe()
    assert shown["kafka_extra"] == {key: "****"}
    assert value not in str(shown)


def test_passcode_not_in_repr() -> None:
    settings = load_settings(secret_env())
    text = repr(settings) + str(settings)
    assert PASSCODE not in text
    assert "REG-PW-5e6f" not in text
    assert repr(settings.clevertap_passcode) == "Secret('****')"
    assert str(settings.clevertap_passcode) == "Secret('****')"


def test_kafka_secret_not_in_repr() -> None:
    settings = load_settings(secret_env())
    assert SASL_PASSWORD not in repr(settings)


@pytest.mark.parametrize(
    "changes",
    [
        {"CLEVERTAP_MAX_CONCURRENCY": "abc"},
        {"CLEVERTAP_MAX_CONCURRENCY": "99"},
        {"CLEVERTAP_REGION": "xx1"},
        {"KAFKA_CONFIG_ENABLE_AUTO_COMMIT": "false", "CLEVERTAP_REQUEST_TIMEOUT_S": "zero"},
        {"KAFKA_TOPICS": "", "CLEVERTAP_ACCOUNT_ID": "", "LOG_LEVEL": "loud"},
    ],
)
def test_secrets_not_in_config_errors(changes: dict[str, str]) -> None:
    error = config_error({**secret_env(), **changes})
    text = all_text(error)
    for secret in SECRETS:
        assert secret not in text


# ------------------------------------------------------------------------------------------------
# Several problems at once
# ------------------------------------------------------------------------------------------------


def test_multiple_problems_in_notes() -> None:
    error = config_error(
        env(KAFKA_BOOTSTRAP_SERVERS=None, KAFKA_TOPICS=None, CLEVERTAP_MAX_CONCURRENCY="99", LOG_FORMAT="xml")
    )
    assert error.setting == "KAFKA_BOOTSTRAP_SERVERS"
    assert error.__notes__ == [
        "KAFKA_TOPICS: is required (comma-separated topics to consume)\n"
        "CLEVERTAP_MAX_CONCURRENCY: must be between 1 and 15, got 99\n"
        "LOG_FORMAT: must be one of text, json, got 'xml'"
    ]


def test_every_problem_reported_for_an_empty_environment() -> None:
    error = config_error({})
    assert error.setting == "KAFKA_BOOTSTRAP_SERVERS"
    (notes,) = error.__notes__
    named = [line.split(":", 1)[0] for line in notes.splitlines()]
    assert named == ["KAFKA_TOPICS", "CLEVERTAP_ACCOUNT_ID", "CLEVERTAP_PASSCODE", "CLEVERTAP_REGION"]
