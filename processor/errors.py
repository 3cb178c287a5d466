"""The processor's error tree.

Every error that can happen to a record carries the pipeline ``stage`` it happened in and whether trying again
can help (``retriable``). Handling is decided by type, never by parsing messages: retriable errors are retried
with backoff, the others send the record to the dead-letter topic. Credentials failures are neither: they stop
consumption for every partition until CleverTap accepts the credentials again.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A setting is missing or invalid. Raised before any connection is made; the CLI exits with code 2.

    The message names the setting (the environment variable or file key) and never contains a secret's value.
    """

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


class RecordError(Exception):
    """Something is wrong with one record; other records are unaffected."""

    stage = "process"
    retriable = False

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class DecodeError(RecordError):
    """The payload is not a valid Avro message of a known schema (wrong framing, unknown id, bad bytes)."""

    stage = "decode"


class RouteError(RecordError):
    """The event could not be matched against the subscriptions (for example a trigger that cannot be evaluated)."""

    stage = "route"


class MappingError(RecordError):
    """A subscription matched but its field mappings could not produce a CleverTap record."""

    stage = "map"


class ValidationError(RecordError):
    """The mapped record would be rejected by CleverTap; ``code`` is the code CleverTap would give."""

    stage = "validate"


class RejectedByClevertap(RecordError):
    """CleverTap refused this record permanently (a per-record code such as 515, or a 400 isolated to it)."""

    stage = "clevertap"


class ClevertapRequestError(Exception):
    """A whole request failed. Subclasses say whether and how to retry."""

    retriable = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetriableRequestError(ClevertapRequestError):
    """429, 5xx, timeouts, connection errors: try again later, honouring ``retry_after`` when CleverTap sent one."""

    retriable = True

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class CredentialsError(ClevertapRequestError):
    """401/403: every record would fail the same way, so consumption stops until the credentials work again."""


class BadRequestError(ClevertapRequestError):
    """400 for the whole request: one of its records is malformed; the batch is split to isolate it."""


class SchemaRegistryUnavailable(Exception):
    """The Schema Registry could not be reached or answered with a server error: retry, do not dead-letter."""
