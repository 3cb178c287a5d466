"""``processor preview`` (Segment calls it "Test Mapping"): what every subscription would send for one event.

The event comes from a JSON file (one object, a JSON list, or JSON Lines: ``--index`` picks one), an Avro file
(an object container file, a bare Avro body written with the configured or given schema, or Schema Registry
framing when ``SCHEMA_REGISTRY_URL`` is set), or a Kafka record (``--topic/--partition/--offset``, read with the
processor's settings and decoder; nothing is committed). Nothing is sent anywhere.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import fastavro

from processor.clevertap.payloads import delete_body, upload_body
from processor.decode import PlainAvroDecoder, RegistryDecoder, load_schema
from processor.errors import ConfigError, RecordError
from processor.settings import Secret, default_schema_path
from processor.subscriptions import Action, Subscription, apply

UPLOAD_PATH = "/1/upload"
DELETE_PATH = "/1/delete/profiles.json"


class PreviewInputError(Exception):
    """The event to preview cannot be read or decoded."""


def preview_event(event: Mapping[str, Any], subscriptions: Sequence[Subscription]) -> list[dict[str, Any]]:
    """One entry per subscription (disabled ones too, marked): whether its trigger matched and, if so, the exact
    request CleverTap would receive for this event alone, the reason it was skipped, or the error that would
    dead-letter it."""
    entries: list[dict[str, Any]] = []
    for subscription in subscriptions:
        entry: dict[str, Any] = {
            "subscription": subscription.name,
            "action": subscription.action.value,
            "enabled": subscription.enabled,
            "matched": bool(subscription.trigger(event)),
        }
        entries.append(entry)
        if not entry["matched"]:
            continue
        try:
            operation, reason, warnings = apply(subscription, event)
        except RecordError as exc:
            entry["error"] = {"stage": exc.stage, "code": exc.code, "class": type(exc).__name__, "message": exc.message}
            continue
        if warnings:
            entry["timestamp_warnings"] = warnings
        if operation is None:
            entry["skipped"] = reason
            continue
        if operation.action is Action.DELETE_PROFILE:
            ((id_key, value),) = operation.record.items()
            body = delete_body(id_key, [value])
            entry["request"] = {"method": "POST", "path": DELETE_PATH, "body": body.decode("utf-8")}
        else:
            body = upload_body([operation.record])
            entry["request"] = {"method": "POST", "path": UPLOAD_PATH, "body": body.decode("utf-8")}
    return entries


def render_text(entries: Sequence[Mapping[str, Any]]) -> str:
    lines: list[str] = []
    for entry in entries:
        state = "matched" if entry["matched"] else "no match"
        if not entry["enabled"]:
            state = f"disabled ({state}; nothing is sent)"
        lines.append(f"{entry['subscription']} [{entry['action']}]: {state}")
        if "request" in entry:
            request = entry["request"]
            lines.append(f"  {request['method']} {request['path']}")
            lines.append(f"  {request['body']}")
        if "skipped" in entry:
            lines.append(f"  skipped: {entry['skipped']} (a record without an identifier is never sent)")
        if "error" in entry:
            error = entry["error"]
            code = f", code {error['code']}" if error["code"] is not None else ""
            lines.append(f"  refused at stage {error['stage']}{code} ({error['class']}): {error['message']}")
        if entry.get("timestamp_warnings"):
            lines.append(f"  {entry['timestamp_warnings']} value(s) look like ISO dates but are no real instant")
    return "\n".join(lines)


# ---- Reading the event ----------------------------------------------------------------------------------------


def _pick(items: Sequence[Any], index: int, what: str) -> Any:
    if not -len(items) <= index < len(items):
        raise PreviewInputError(f"{what} holds {len(items)} event(s); --index {index} is out of range")
    return items[index]


def _event_dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PreviewInputError(f"{where} is a {type(value).__name__}, expected an event object")
    return value


def _from_json(text: str, where: str, index: int) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        lines = [line for line in text.splitlines() if line.strip()]
        try:
            events = [json.loads(line) for line in lines]
        except json.JSONDecodeError as exc:
            raise PreviewInputError(f"{where} is neither JSON nor JSON Lines: {exc}") from None
        return _event_dict(_pick(events, index, where), where)
    if isinstance(data, list):
        return _event_dict(_pick(data, index, where), where)
    return _event_dict(data, where)


def _registry_from_env() -> tuple[str, Secret | None]:
    url = os.environ.get("SCHEMA_REGISTRY_URL", "").strip()
    if not url:
        raise PreviewInputError(
            "the payload is in Schema Registry framing (magic byte 0): set SCHEMA_REGISTRY_URL to decode it"
        )
    auth_text = os.environ.get("SCHEMA_REGISTRY_BASIC_AUTH")
    auth_file = os.environ.get("SCHEMA_REGISTRY_BASIC_AUTH_FILE")
    if auth_file:
        auth_text = Path(auth_file).read_text(encoding="utf-8").strip()
    return url, Secret(auth_text) if auth_text else None


def _registry_decode(value: bytes | None, headers: Any, url: str, auth: Secret | None) -> dict[str, Any]:
    decoder = RegistryDecoder()

    async def fetch() -> None:
        import aiohttp

        from processor.schema_registry import SchemaRegistryClient

        async with aiohttp.ClientSession() as session:
            client = SchemaRegistryClient(session, url, auth)
            await client.fetch_into(decoder, decoder.unknown_refs([(value, headers)]))

    from processor.errors import SchemaRegistryUnavailable

    try:
        asyncio.run(fetch())
    except SchemaRegistryUnavailable as exc:
        raise PreviewInputError(str(exc)) from None
    try:
        return decoder.decode(value, headers)
    except RecordError as exc:
        raise PreviewInputError(exc.message) from None


def _from_avro(data: bytes, where: str, index: int, schema_path: Path | None) -> dict[str, Any]:
    if data[:4] == b"Obj\x01":
        try:
            records = list(fastavro.reader(io.BytesIO(data)))
        except Exception as exc:
            raise PreviewInputError(f"{where}: not a readable Avro container file: {exc}") from None
        return _event_dict(_pick(records, index, where), where)
    if data[:1] == b"\x00" and len(data) > 5 and schema_path is None:
        return _registry_decode(data, None, *_registry_from_env())
    path = schema_path or Path(os.environ.get("AVRO_SCHEMA_FILE") or default_schema_path())
    try:
        decoder = PlainAvroDecoder(load_schema(path))
    except ValueError as exc:
        raise PreviewInputError(str(exc)) from None
    try:
        return decoder.decode(data)
    except RecordError as exc:
        raise PreviewInputError(f"{where}: {exc.message} (schema {path})") from None


def read_event_file(path: str, *, index: int = 0, schema_path: Path | None = None) -> dict[str, Any]:
    """The event in ``path`` (``-`` is standard input), JSON or Avro as the content says."""
    import sys

    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise PreviewInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    where = "standard input" if path == "-" else path
    head = data.lstrip()[:1]
    if head in (b"{", b"["):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise PreviewInputError(f"{where}: starts like JSON but is not UTF-8 text") from None
        return _from_json(text, where, index)
    if not data:
        raise PreviewInputError(f"{where} is empty")
    return _from_avro(data, where, index, schema_path)


def read_kafka_event(topic: str, partition: int, offset: int, timeout_s: float = 15.0) -> dict[str, Any]:
    """Decode the record at ``topic[partition]@offset`` with the processor's settings; never commits anything."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    from processor.app import build_decoder
    from processor.settings import load_settings

    settings = load_settings()
    config = settings.consumer_config()
    config.update({"group.id": f"{settings.kafka_group_id}-preview", "enable.auto.commit": False})
    consumer = Consumer(config)
    found: Any = None
    try:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        except Exception as exc:  # KafkaException: unknown topic or partition, broker unreachable
            raise PreviewInputError(f"{topic}[{partition}]: {exc}") from None
        if not low <= offset < high:
            held = f"offsets {low} to {high - 1}" if high > low else "no records"
            raise PreviewInputError(f"{topic}[{partition}] holds {held}; there is no record at offset {offset}")
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + timeout_s
        while found is None and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise PreviewInputError(f"{topic}[{partition}]@{offset}: {error}")
            if message.offset() != offset:
                raise PreviewInputError(
                    f"{topic}[{partition}] has no record at offset {offset} (the next one is {message.offset()})"
                )
            found = message
    finally:
        consumer.close()
    if found is None:
        raise PreviewInputError(f"{topic}[{partition}]@{offset}: no record arrived within {timeout_s:.0f}s")
    value, headers = found.value(), found.headers()
    decoder = build_decoder(settings)
    if isinstance(decoder, RegistryDecoder):
        if settings.schema_registry_url is None:  # load_settings guarantees it for SCHEMA_SOURCE=registry
            raise PreviewInputError("SCHEMA_REGISTRY_URL is not set")
        return _registry_decode(value, headers, settings.schema_registry_url, settings.schema_registry_auth)
    try:
        return decoder.decode(value, headers)
    except RecordError as exc:
        raise PreviewInputError(f"{topic}[{partition}]@{offset}: {exc.message}") from None


def load_preview_subscriptions(path: str | None) -> tuple[list[Subscription], str]:
    """``path``, else ``SUBSCRIPTIONS_FILE``, else the presets. Raises :class:`ConfigError`."""
    from processor.subscriptions import load_subscriptions_file, preset_subscriptions

    chosen = path or os.environ.get("SUBSCRIPTIONS_FILE", "").strip() or None
    if chosen is None:
        return preset_subscriptions(), "Quick Setup presets"
    if not Path(chosen).is_file():
        raise ConfigError("SUBSCRIPTIONS_FILE", f"{chosen} does not exist")
    return load_subscriptions_file(Path(chosen)), chosen
