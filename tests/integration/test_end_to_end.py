"""The main job end to end: Avro events on a real broker → the processor → a real HTTP CleverTap stand-in."""

from __future__ import annotations

import secrets
from collections import defaultdict
from typing import Any

import pytest

from processor.app import run_processor
from processor.embedded.clevertap_standin import ClevertapStandin, StandinConfig
from processor.embedded.events import create_topics, encode_plain, produce
from tests.integration.helpers import (
    BASE_TS,
    SCHEMA,
    committed_and_end_offsets,
    headers_of,
    iso,
    processor_settings,
    read_all,
    unique,
)

pytestmark = pytest.mark.integration

PARTITIONS = 3
USERS = 60
UNDECODABLE = [b"", b"\x00\x00\x00\x00\x07not avro at all", b'{"type":"identify","userId":"json-producer"}']


def build_scenario() -> tuple[list[tuple[int, bytes, bytes | None]], dict[str, list[Any]], dict[int, dict[str, Any]]]:
    """The messages to produce as (partition, key, value), what CleverTap must receive per user (in order), and
    the expected dead letters keyed by their position in the produce order."""
    messages: list[tuple[int, bytes, bytes | None]] = []
    expected: dict[str, list[Any]] = defaultdict(list)
    dead: dict[int, dict[str, Any]] = {}

    def add(partition: int, event: dict[str, Any]) -> int:
        key = (event.get("userId") or event.get("anonymousId") or "").encode()
        messages.append((partition, key, encode_plain(SCHEMA, event)))
        return len(messages) - 1

    for i in range(USERS):
        user = f"u-{i:03d}"
        partition = i % PARTITIONS
        t = BASE_TS + i * 100
        add(partition, {"messageId": f"{user}-1", "type": "identify", "userId": user, "timestamp": iso(t),
                        "traits": {"name": f"User {i}", "plan": "pro" if i % 2 else "free",
                                   "signupDate": iso(BASE_TS - 86400 * i), "phone": "+14155550100", "visits": i}})
        # Quick Setup: Segment's standard traits land in CleverTap's standard keys, the others stay custom.
        expected[user].append({"type": "profile", "identity": user, "ts": t,
                               "profileData": {"Name": f"User {i}", "Phone": "+14155550100",
                                               "plan": "pro" if i % 2 else "free",
                                               "signupDate": BASE_TS - 86400 * i, "visits": i}})
        add(partition, {"messageId": f"{user}-2", "type": "track", "userId": user, "event": "Product Viewed",
                        "timestamp": iso(t + 1), "properties": {"sku": f"S-{i}", "price": 9.5, "inStock": True}})
        expected[user].append({"type": "event", "identity": user, "ts": t + 1, "evtName": "Product Viewed",
                               "evtData": {"sku": f"S-{i}", "price": 9.5, "inStock": True}})
        if i % 10 == 0:
            add(partition, {"messageId": f"{user}-p", "type": "page", "userId": user, "name": "Home",
                            "timestamp": iso(t + 2)})
        if i % 6 == 0:
            add(partition, {"messageId": f"{user}-3", "type": "track", "userId": user, "event": "Delete User",
                            "timestamp": iso(t + 3)})
            expected[user].append({"identity": user})
            add(partition, {"messageId": f"{user}-4", "type": "identify", "userId": user, "timestamp": iso(t + 4),
                            "traits": {"plan": "returning"}})
            expected[user].append({"type": "profile", "identity": user, "ts": t + 4,
                                   "profileData": {"plan": "returning"}})
        if i % 15 == 7:
            # Refused before sending, with the code CleverTap would give: never reaches CleverTap.
            index = add(partition, {"messageId": f"{user}-5", "type": "identify", "userId": user,
                                    "timestamp": iso(t + 5), "traits": {"Email": "not-an-email"}})
            dead[index] = {"x-dlq-stage": "validate", "x-dlq-error-code": "515",
                           "x-dlq-error-class": "ValidationError"}
        if i % 20 == 3:
            index = add(partition, {"messageId": f"{user}-6", "type": "track", "userId": user,
                                    "event": "App Launched", "timestamp": iso(t + 6)})
            dead[index] = {"x-dlq-stage": "validate", "x-dlq-error-code": "513",
                           "x-dlq-error-class": "ValidationError"}
        if i % 25 == 11:
            # CleverTap refuses nested event data (512); the presets send it as JSON text instead.
            add(partition, {"messageId": f"{user}-7", "type": "track", "userId": user,
                            "event": "Address Changed", "timestamp": iso(t + 7),
                            "properties": {"address": {"city": "Paris"}}})
            expected[user].append({"type": "event", "identity": user, "ts": t + 7, "evtName": "Address Changed",
                                   "evtData": {"address": '{"city":"Paris"}'}})
    add(0, {"messageId": "anon-1", "type": "identify", "anonymousId": "anon-1", "traits": {"plan": "free"}})
    for n, payload in enumerate(UNDECODABLE):
        messages.append((n % PARTITIONS, b"foreign", payload))
        dead[len(messages) - 1] = {"x-dlq-stage": "decode", "x-dlq-error-class": "DecodeError"}
    return messages, expected, dead


def received_per_user(standin: ClevertapStandin) -> dict[str, list[Any]]:
    """What the stand-in received, flattened in arrival order and grouped by user."""
    per_user: dict[str, list[Any]] = defaultdict(list)
    for request in standin.requests:
        if request.path == "/1/upload":
            assert set(request.body) == {"d"}
            assert 1 <= len(request.body["d"]) <= 1000
            for record in request.body["d"]:
                per_user[record["identity"]].append(record)
        else:
            assert request.path == "/1/delete/profiles.json"
            assert list(request.body) == ["identity"]
            assert 1 <= len(request.body["identity"]) <= 100
            for identity in request.body["identity"]:
                per_user[identity].append({"identity": identity})
    return per_user


async def test_events_reach_clevertap_exactly_and_offsets_are_committed(kafka_bootstrap: str) -> None:
    topic, group = unique("e2e"), unique("group")
    create_topics(kafka_bootstrap, {topic: PARTITIONS})
    messages, expected, dead = build_scenario()
    produce(kafka_bootstrap, topic, [(k, v) for _, k, v in messages], partition_of=[p for p, _, _ in messages])
    positions: dict[int, tuple[int, int]] = {}
    next_offset = [0] * PARTITIONS
    for index, (partition, _, _) in enumerate(messages):
        positions[index] = (partition, next_offset[partition])
        next_offset[partition] += 1

    passcode = secrets.token_hex(16)
    async with ClevertapStandin(StandinConfig(account_id="TEST-ACCOUNT", passcode=passcode)) as standin:
        settings = processor_settings(kafka_bootstrap, topic, group, standin.base_url, passcode)
        result = await run_processor(settings, idle_exit_s=1.0)

        assert result.drained
        assert received_per_user(standin) == expected
        stats = result.stats
        assert stats.read == len(messages)
        assert stats.decode_errors == len(UNDECODABLE)
        assert stats.profiles_uploaded == sum(
            1 for records in expected.values() for r in records if r.get("type") == "profile"
        )
        assert stats.events_uploaded == sum(
            1 for records in expected.values() for r in records if r.get("type") == "event"
        )
        assert stats.profiles_deleted == 10
        assert dict(stats.skipped) == {"no subscription matched": 6, "no user id": 1}
        assert stats.dead_lettered == len(dead)
        # The bad e-mails (users 7, 22, 37, 52) and system event names (users 3, 23, 43) were refused before
        # sending: CleverTap refused nothing.
        assert standin.rejected == []
        assert dict(stats.rejected) == {515: 4, 513: 3}

    committed, ends = committed_and_end_offsets(kafka_bootstrap, topic, group, PARTITIONS)
    assert ends == next_offset
    assert committed == ends

    letters = read_all(kafka_bootstrap, f"{topic}.dlq", len(dead))
    found = {(int(headers_of(m)["x-dlq-source-partition"]), int(headers_of(m)["x-dlq-source-offset"])): m
             for m in letters}
    assert len(letters) == len(dead)
    assert set(found) == {positions[index] for index in dead}
    for index, wanted in dead.items():
        letter = found[positions[index]]
        headers = headers_of(letter)
        assert {k: headers[k] for k in wanted} == wanted
        if headers["x-dlq-stage"] == "validate":
            expected_subscription = "Upload Event" if headers["x-dlq-error-code"] == "513" else "Upload User Profile"
            assert headers["x-dlq-subscription"] == expected_subscription
        assert headers["x-dlq-source-topic"] == topic
        assert letter.value() == messages[index][2]
        assert letter.key() == messages[index][1]

    # A second run of the same group finds nothing left to do.
    async with ClevertapStandin(StandinConfig(account_id="TEST-ACCOUNT", passcode=passcode)) as standin:
        settings = processor_settings(kafka_bootstrap, topic, group, standin.base_url, passcode)
        again = await run_processor(settings, idle_exit_s=1.0)
        assert again.stats.read == 0
        assert standin.requests == []
