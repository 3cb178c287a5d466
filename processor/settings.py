"""One frozen settings object, read from the environment and validated before anything connects anywhere.

Every problem is reported with the name of the environment variable it concerns; secrets are held in
:class:`Secret`, whose ``repr``/``str`` never show the value. Any secret may also be given as ``<NAME>_FILE``
pointing at a mounted file (Kubernetes Secret volumes), which wins over the plain variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from processor.errors import ConfigError

REGION_HOSTS: dict[str, str] = {
    "eu1": "https://eu1.api.clevertap.com",
    "in1": "https://in1.api.clevertap.com",
    "us1": "https://us1.api.clevertap.com",
    "sg1": "https://sg1.api.clevertap.com",
    "aps3": "https://aps3.api.clevertap.com",
    "mec1": "https://mec1.api.clevertap.com",
    "sk1": "https://sk1.api.clevertap.com",
}

KAFKA_CONFIG_PREFIX = "KAFKA_CONFIG_"
# librdkafka keys that hold secrets; their values are masked wherever the configuration is shown.
_SECRET_KAFKA_KEYS = re.compile(
    r"(password|secret|token|private\.key|key\.pem|keystore|jaas|oauthbearer\.config|credentials)", re.IGNORECASE
)
# Keys the processor owns: letting users set them would break the delivery guarantees.
_RESERVED_KAFKA_KEYS = frozenset(
    {"enable.auto.commit", "enable.auto.offset.store", "group.id", "bootstrap.servers", "on_commit"}
)


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def default_schema_path() -> Path:
    """The bundled user-event schema: inside the installed package, or ``schemas/`` of a source checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "_schemas" / "user_event.avsc"
    if packaged.is_file():
        return packaged
    return here.parent / "schemas" / "user_event.avsc"


@dataclass(frozen=True, repr=False)
class Settings:
    """Everything the processor needs to run. Build it with :func:`load_settings`."""

    kafka_bootstrap_servers: str
    kafka_topics: tuple[str, ...]
    clevertap_account_id: str
    clevertap_passcode: Secret
    clevertap_base_url: str
    clevertap_region: str | None = None
    kafka_group_id: str = "clevertap-processor"
    kafka_extra: Mapping[str, str] = field(default_factory=dict)
    dlq_topic: str | None = None
    dlq_create: bool = True
    schema_source: str = "file"
    avro_schema_file: Path = field(default_factory=default_schema_path)
    schema_registry_url: str | None = None
    schema_registry_auth: Secret | None = None
    subscriptions_file: Path | None = None
    max_concurrency: int = 10
    upload_batch_size: int = 1000
    delete_batch_size: int = 100
    request_timeout_s: float = 30.0
    max_in_flight: int = 20000
    max_in_flight_per_partition: int = 5000
    commit_interval_s: float = 2.0
    poll_batch_size: int = 1000
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    credentials_retry_s: float = 30.0
    drain_timeout_s: float = 20.0
    breaker_window: int = 1000
    breaker_threshold: float = 0.5
    breaker_min_records: int = 200
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9464
    log_level: str = "INFO"
    log_format: str = "text"

    def __repr__(self) -> str:
        # kafka_extra may hold passwords and keys: show the masked description only.
        return f"Settings({self.describe()!r})"

    def dlq_topic_for(self, source_topic: str) -> str:
        return self.dlq_topic or f"{source_topic}.dlq"

    def consumer_config(self) -> dict[str, Any]:
        """librdkafka consumer properties. Offsets are stored and committed by the processor only."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "group.id": self.kafka_group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "client.id": "clevertap-processor",
            # librdkafka prefetches up to 64 MiB per consumer by default; the processor holds up to
            # PROCESSOR_MAX_IN_FLIGHT records itself, so 16 MiB of read-ahead keeps fetching smooth at a third of
            # the peak RSS cost (1 M backlog: 195 -> 119 MB, same throughput). KAFKA_CONFIG_ overrides it.
            "queued.max.messages.kbytes": 16384,
        }
        config.update(self.kafka_extra)
        return config

    def producer_config(self) -> dict[str, Any]:
        """librdkafka producer properties for the dead-letter topic: every write acknowledged by all replicas."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "client.id": "clevertap-processor-dlq",
        }
        # Connection and security settings are shared; consumer-only properties would make librdkafka warn.
        config.update({k: v for k, v in self.kafka_extra.items() if not _consumer_only(k)})
        config.update({"acks": "all", "enable.idempotence": True, "linger.ms": 20})
        return config

    def admin_config(self) -> dict[str, Any]:
        """Connection and security properties only, for admin requests (topic checks, offsets)."""
        config: dict[str, Any] = {"bootstrap.servers": self.kafka_bootstrap_servers, "client.id": "clevertap-processor"}
        config.update({k: v for k, v in self.kafka_extra.items() if not _consumer_only(k)})
        return config

    def describe(self) -> dict[str, Any]:
        """The effective configuration for display, with every secret masked."""
        shown: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = "****"
            elif f.name == "kafka_extra":
                value = {k: ("****" if _SECRET_KAFKA_KEYS.search(k) else v) for k, v in value.items()}
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            shown[f.name] = value
        return shown


_CONSUMER_ONLY_PREFIXES = (
    "auto.offset.reset",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "fetch.",
    "group.",
    "isolation.level",
    "queued.",
    "check.crcs",
    "allow.auto.create.topics",
    "enable.partition.eof",
)


def _consumer_only(key: str) -> bool:
    return key.startswith(_CONSUMER_ONLY_PREFIXES)


class _Env:
    """Reads variables and collects every problem, so one run reports all of them."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[ConfigError] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def secret(self, name: str) -> Secret | None:
        file_name = self.raw(f"{name}_FILE")
        if file_name is not None:
            try:
                return Secret(Path(file_name).read_text(encoding="utf-8").strip())
            except OSError as exc:
                self.problems.append(ConfigError(f"{name}_FILE", f"cannot read {file_name}: {exc.strerror}"))
                return None
        value = self.env.get(name)
        return Secret(value.strip()) if value and value.strip() else None

    def required(self, name: str, hint: str) -> str:
        value = self.raw(name)
        if value is None:
            self.problems.append(ConfigError(name, f"is required ({hint})"))
            return ""
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            self.problems.append(ConfigError(name, f"must be a whole number, got {value!r}"))
            return default
        if not low <= number <= high:
            self.problems.append(ConfigError(name, f"must be between {low} and {high}, got {number}"))
            return default
        return number

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            self.problems.append(ConfigError(name, f"must be a number, got {value!r}"))
            return default
        if not low <= number <= high:
            self.problems.append(ConfigError(name, f"must be between {low} and {high}, got {number}"))
            return default
        return number

    def raise_problems(self) -> None:
        """Raise the first problem, with every other one in its ``__notes__``; nothing when there is none."""
        if self.problems:
            first = self.problems[0]
            if len(self.problems) > 1:
                first.add_note("\n".join(str(p) for p in self.problems[1:]))
            raise first

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() not in choices:
            self.problems.append(ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}"))
            return default
        return value.lower()


_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def kafka_topics(source: _Env, hint: str, *, required: bool = True) -> tuple[str, ...]:
    """``KAFKA_TOPICS`` as a tuple of valid topic names (problems are collected in ``source``)."""
    raw = source.required("KAFKA_TOPICS", hint) if required else (source.raw("KAFKA_TOPICS") or "")
    topics = tuple(t.strip() for t in raw.split(",") if t.strip())
    for topic in topics:
        if not _TOPIC_NAME.match(topic):
            source.problems.append(ConfigError("KAFKA_TOPICS", f"{topic!r} is not a valid Kafka topic name"))
    if raw and not topics:
        source.problems.append(ConfigError("KAFKA_TOPICS", "names no topic"))
    return topics


def dead_letter_topic(source: _Env, topics: tuple[str, ...]) -> str | None:
    """``KAFKA_DLQ_TOPIC`` when set and valid (it may not be one of the source topics)."""
    dlq_topic = source.raw("KAFKA_DLQ_TOPIC")
    if dlq_topic is not None and not _TOPIC_NAME.match(dlq_topic):
        source.problems.append(ConfigError("KAFKA_DLQ_TOPIC", f"{dlq_topic!r} is not a valid Kafka topic name"))
    if dlq_topic is not None and dlq_topic in topics:
        source.problems.append(ConfigError("KAFKA_DLQ_TOPIC", "must not be one of KAFKA_TOPICS"))
    return dlq_topic


def _kafka_extra(env: _Env) -> dict[str, str]:
    """``KAFKA_CONFIG_SASL_PASSWORD=x`` becomes ``sasl.password=x``; ``..._FILE`` variants read mounted files."""
    extra: dict[str, str] = {}
    for name in sorted(env.env):
        if not name.startswith(KAFKA_CONFIG_PREFIX):
            continue
        suffix = name[len(KAFKA_CONFIG_PREFIX) :]
        from_file = suffix.endswith("_FILE")
        if from_file:
            suffix = suffix[: -len("_FILE")]
        key = suffix.lower().replace("_", ".")
        if not key:
            continue
        if key in _RESERVED_KAFKA_KEYS:
            env.problems.append(
                ConfigError(name, f"{key} is managed by the processor (use the dedicated setting or leave it)")
            )
            continue
        if from_file:
            secret = env.secret(f"{KAFKA_CONFIG_PREFIX}{suffix}")
            if secret is not None:
                extra[key] = secret.reveal()
        elif f"{name}_FILE" not in env.env:
            extra[key] = env.env[name]
    return extra


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from environment variables.

    Raises :class:`ConfigError` naming the first problem found; its ``problems`` attribute (on the exception's
    ``__notes__``) lists every problem so an operator can fix them all at once.
    """
    source = _Env(os.environ if env is None else env)

    bootstrap = source.required("KAFKA_BOOTSTRAP_SERVERS", "host:port[,host:port...] of the Kafka cluster")
    topics = kafka_topics(source, "comma-separated topics to consume")
    group_id = source.raw("KAFKA_GROUP_ID") or "clevertap-processor"
    dlq_topic = dead_letter_topic(source, topics)
    extra = _kafka_extra(source)
    dlq_create = source.choice("KAFKA_DLQ_CREATE", "true", ("true", "false")) == "true"

    account_id = source.required("CLEVERTAP_ACCOUNT_ID", "the Project ID from CleverTap's settings page")
    passcode = source.secret("CLEVERTAP_PASSCODE")
    if passcode is None and source.raw("CLEVERTAP_PASSCODE_FILE") is not None:
        passcode = Secret("")  # the unreadable file is already reported
    elif passcode is None or not passcode:
        source.problems.append(
            ConfigError("CLEVERTAP_PASSCODE", "is required (or CLEVERTAP_PASSCODE_FILE naming a mounted file)")
        )
        passcode = Secret("")
    region = source.raw("CLEVERTAP_REGION")
    base_url = source.raw("CLEVERTAP_BASE_URL")
    if region is not None:
        region = region.lower()
        if region not in REGION_HOSTS:
            source.problems.append(
                ConfigError("CLEVERTAP_REGION", f"must be one of {', '.join(REGION_HOSTS)}, got {region!r}")
            )
    if region is not None and base_url is not None:
        source.problems.append(
            ConfigError("CLEVERTAP_BASE_URL", "set either CLEVERTAP_REGION or CLEVERTAP_BASE_URL, not both")
        )
    elif region is None and base_url is None:
        source.problems.append(
            ConfigError(
                "CLEVERTAP_REGION",
                f"is required: one of {', '.join(REGION_HOSTS)} (your dashboard URL shows it, "
                "e.g. eu1.dashboard.clevertap.com is eu1)",
            )
        )
    if base_url is not None and not re.match(r"^https?://[^/\s]+", base_url):
        source.problems.append(ConfigError("CLEVERTAP_BASE_URL", f"must be an http(s) URL, got {base_url!r}"))
    resolved_url = (base_url or REGION_HOSTS.get(region or "", "")).rstrip("/")

    schema_source = source.choice("SCHEMA_SOURCE", "file", ("file", "registry"))
    schema_file_raw = source.raw("AVRO_SCHEMA_FILE")
    schema_file = Path(schema_file_raw) if schema_file_raw else default_schema_path()
    if schema_source == "file" and not schema_file.is_file():
        source.problems.append(ConfigError("AVRO_SCHEMA_FILE", f"{schema_file} does not exist"))
    registry_url = source.raw("SCHEMA_REGISTRY_URL")
    if schema_source == "registry" and registry_url is None:
        source.problems.append(ConfigError("SCHEMA_REGISTRY_URL", "is required when SCHEMA_SOURCE=registry"))
    if registry_url is not None and not re.match(r"^https?://[^/\s]+", registry_url):
        source.problems.append(ConfigError("SCHEMA_REGISTRY_URL", f"must be an http(s) URL, got {registry_url!r}"))
    registry_auth = source.secret("SCHEMA_REGISTRY_BASIC_AUTH")
    if registry_auth is not None and ":" not in registry_auth.reveal():
        source.problems.append(ConfigError("SCHEMA_REGISTRY_BASIC_AUTH", "must have the form user:password"))

    subscriptions_raw = source.raw("SUBSCRIPTIONS_FILE")
    subscriptions_file = Path(subscriptions_raw) if subscriptions_raw else None
    if subscriptions_file is not None and not subscriptions_file.is_file():
        source.problems.append(ConfigError("SUBSCRIPTIONS_FILE", f"{subscriptions_file} does not exist"))

    max_concurrency = source.integer("CLEVERTAP_MAX_CONCURRENCY", 10, 1, 15)
    upload_batch = source.integer("CLEVERTAP_UPLOAD_BATCH_SIZE", 1000, 1, 1000)
    delete_batch = source.integer("CLEVERTAP_DELETE_BATCH_SIZE", 100, 1, 100)
    timeout = source.number("CLEVERTAP_REQUEST_TIMEOUT_S", 30.0, 1.0, 600.0)
    max_in_flight = source.integer("PROCESSOR_MAX_IN_FLIGHT", 20000, 1, 10_000_000)
    per_partition = source.integer("PROCESSOR_MAX_IN_FLIGHT_PER_PARTITION", 5000, 1, 10_000_000)
    commit_interval = source.number("PROCESSOR_COMMIT_INTERVAL_S", 2.0, 0.05, 300.0)
    poll_batch = source.integer("PROCESSOR_POLL_BATCH_SIZE", 1000, 1, 100_000)
    retry_initial = source.number("PROCESSOR_RETRY_INITIAL_S", 0.5, 0.001, 60.0)
    retry_max = source.number("PROCESSOR_RETRY_MAX_S", 30.0, 0.001, 3600.0)
    credentials_retry = source.number("PROCESSOR_CREDENTIALS_RETRY_S", 30.0, 0.01, 3600.0)
    drain_timeout = source.number("PROCESSOR_DRAIN_TIMEOUT_S", 20.0, 0.0, 3600.0)
    breaker_window = source.integer("PROCESSOR_BREAKER_WINDOW", 1000, 1, 1_000_000)
    breaker_threshold = source.number("PROCESSOR_BREAKER_THRESHOLD", 0.5, 0.0, 1.0)
    breaker_min_records = source.integer("PROCESSOR_BREAKER_MIN_RECORDS", 200, 1, 1_000_000)
    metrics_host = source.raw("METRICS_HOST") or "0.0.0.0"
    metrics_port = source.integer("METRICS_PORT", 9464, 0, 65535)
    log_level = source.choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
    log_format = source.choice("LOG_FORMAT", "text", ("text", "json"))

    source.raise_problems()

    return Settings(
        kafka_bootstrap_servers=bootstrap,
        kafka_topics=topics,
        kafka_group_id=group_id,
        kafka_extra=extra,
        dlq_topic=dlq_topic,
        dlq_create=dlq_create,
        clevertap_account_id=account_id,
        clevertap_passcode=passcode,
        clevertap_region=region,
        clevertap_base_url=resolved_url,
        schema_source=schema_source,
        avro_schema_file=schema_file,
        schema_registry_url=registry_url.rstrip("/") if registry_url else None,
        schema_registry_auth=registry_auth,
        subscriptions_file=subscriptions_file,
        max_concurrency=max_concurrency,
        upload_batch_size=upload_batch,
        delete_batch_size=delete_batch,
        request_timeout_s=timeout,
        max_in_flight=max_in_flight,
        max_in_flight_per_partition=per_partition,
        commit_interval_s=commit_interval,
        poll_batch_size=poll_batch,
        retry_initial_s=retry_initial,
        retry_max_s=retry_max,
        credentials_retry_s=credentials_retry,
        drain_timeout_s=drain_timeout,
        breaker_window=breaker_window,
        breaker_threshold=breaker_threshold,
        breaker_min_records=breaker_min_records,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        log_level=log_level,
        log_format=log_format,
    )
