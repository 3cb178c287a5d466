"""Schema Registry framing end to end: ids in the payload and in a header, unknown ids, registry outages."""

from __future__ import annotations

import asyncio
import json
import secrets

import pytest

from processor.app import run_processor
from processor.decode import parse_schema_text
from processor.embedded.clevertap_standin import ClevertapStandin, StandinConfig
from processor.embedded.events import create_topics, encode_plain, encode_registry, produce
from processor.embedded.schema_registry_standin import SchemaRegistryStandin
from processor.settings import default_schema_path
from tests.integration.helpers import (
    BASE_TS,
    committed_and_end_offsets,
    headers_of,
    iso,
    processor_settings,
    read_all,
    unique,
)

pytestmark = pytest.mark.integration

SCHEMA_TEXT = default_schema_path().read_text()
# A second, smaller writer schema: the registry may hold several versions of the topic's value schema.
SMALL_TEXT = json.dumps({
    "type": "record", "name": "Tiny", "fields": [
        {"name": "type", "type": "string"}, {"name": "userId", "type": "string"}, {"name": "event", "type": "string"},
        {"name": "timestamp", "type": "long"}, {"name": "properties", "type": {"type": "map", "values": "long"}},
    ],
})
GUID = "89791762-2336-4186-9674-299b90a802e2"


async def test_registry_framing_ids_headers_and_unknown_schemas(kafka_bootstrap: str) -> None:
    topic, group = unique("sr"), unique("group")
    create_topics(kafka_bootstrap, {topic: 1})
    full, small = parse_schema_text(SCHEMA_TEXT), parse_schema_text(SMALL_TEXT)
    identify = {"messageId": "m1", "type": "identify", "userId": "u1", "timestamp": iso(BASE_TS),
                "traits": {"plan": "gold"}}
    tiny = {"type": "track", "userId": "u2", "event": "Ping", "timestamp": (BASE_TS + 5) * 1000,
            "properties": {"n": 7}}
    header_event = {"messageId": "m3", "type": "track", "userId": "u3", "event": "Pong", "timestamp": iso(BASE_TS + 9)}
    guid_bytes = b"\x01" + bytes.fromhex(GUID.replace("-", ""))
    messages = [
        (b"u1", encode_registry(full, 11, identify), None),
        (b"u2", b"\x00" + (12).to_bytes(4, "big") + _plain(small, tiny), None),
        (b"u3", encode_plain(full, header_event), [("__value_schema_id", guid_bytes)]),
        (b"u4", encode_registry(full, 99, identify), None),  # id 99 is not in the registry
        (b"u5", encode_plain(full, identify), None),  # no framing at all
    ]
    produce(kafka_bootstrap, topic, [(k, v) for k, v, _ in messages], headers=[h for _, _, h in messages])
    passcode = secrets.token_hex(16)
    async with SchemaRegistryStandin() as registry, ClevertapStandin(
        StandinConfig(account_id="TEST-ACCOUNT", passcode=passcode)
    ) as standin:
        registry.register(11, SCHEMA_TEXT, guid=GUID)
        registry.register(12, SMALL_TEXT)
        settings = processor_settings(
            kafka_bootstrap, topic, group, standin.base_url, passcode,
            SCHEMA_SOURCE="registry", SCHEMA_REGISTRY_URL=registry.base_url,
        )
        result = await run_processor(settings, idle_exit_s=1.0)
        bodies = [r.body for r in standin.requests]
        assert sorted(registry.lookups) == ["guid:" + GUID, "id:11", "id:12", "id:99"]

    records = sorted((record for body in bodies for record in body["d"]), key=lambda r: r["identity"])
    assert records == [
        {"type": "profile", "identity": "u1", "ts": BASE_TS, "profileData": {"plan": "gold"}},
        {"type": "event", "identity": "u2", "ts": BASE_TS + 5, "evtName": "Ping", "evtData": {"n": 7}},
        {"type": "event", "identity": "u3", "ts": BASE_TS + 9, "evtName": "Pong", "evtData": {}},
    ]
    assert result.stats.decode_errors == 2
    letters = read_all(kafka_bootstrap, f"{topic}.dlq", 2)
    reasons = {int(headers_of(m)["x-dlq-source-offset"]): headers_of(m)["x-dlq-error-message"] for m in letters}
    assert reasons == {
        3: "unknown schema id 99 (not in the Schema Registry)",
        4: "not in Schema Registry wire format: magic byte is 4, expected 0",
    }
    committed, ends = committed_and_end_offsets(kafka_bootstrap, topic, group, 1)
    assert committed == ends == [5]


async def test_registry_outage_pauses_instead_of_dead_lettering(kafka_bootstrap: str) -> None:
    topic, group = unique("sr-down"), unique("group")
    create_topics(kafka_bootstrap, {topic: 1})
    full = parse_schema_text(SCHEMA_TEXT)
    event = {"messageId": "m1", "type": "identify", "userId": "u1", "traits": {"plan": "gold"}}
    produce(kafka_bootstrap, topic, [(b"u1", encode_registry(full, 5, event))])
    passcode = secrets.token_hex(16)
    async with SchemaRegistryStandin() as registry, ClevertapStandin(
        StandinConfig(account_id="TEST-ACCOUNT", passcode=passcode)
    ) as standin:
        registry.register(5, SCHEMA_TEXT)
        registry.failing = True
        settings = processor_settings(
            kafka_bootstrap, topic, group, standin.base_url, passcode,
            SCHEMA_SOURCE="registry", SCHEMA_REGISTRY_URL=registry.base_url,
        )
        run = asyncio.create_task(run_processor(settings, idle_exit_s=1.0))
        while len(registry.lookups) < 2:
            await asyncio.sleep(0.05)
        assert standin.requests == []
        registry.failing = False
        result = await asyncio.wait_for(run, timeout=60)
        assert [r.body for r in standin.requests] == [
            {"d": [{"type": "profile", "identity": "u1", "profileData": {"plan": "gold"}}]}
        ]
    assert result.stats.dead_lettered == 0
    committed, ends = committed_and_end_offsets(kafka_bootstrap, topic, group, 1)
    assert committed == ends == [1]


def _plain(schema: object, record: dict[str, object]) -> bytes:
    import io

    import fastavro

    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    return buffer.getvalue()
