"""Customized Setup end to end: a subscriptions file, Avro events on a real broker, the processor, and the exact
request bodies the CleverTap stand-in receives.

One partition, one lane, one record per request: the requests then arrive in partition order, so the whole list of
bodies is deterministic and compared exactly (and with what ``processor preview`` says it would send).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from processor.app import run_processor
from processor.embedded.clevertap_standin import ClevertapStandin, StandinConfig
from processor.embedded.events import create_topics, encode_plain, produce
from processor.preview import preview_event
from processor.subscriptions import load_subscriptions_file
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

SUBSCRIPTIONS = """
version: 1
subscriptions:
  - name: CRM Profile
    action: upload_profile
    trigger: type = "identify"
    date_type: true
    mappings:
      profileData:
        Name: [$.traits.name, "{{traits.first_name}} {{traits.last_name}}"]
        Email: $.traits.email
        Phone: $.traits.phone
        Gender: $.traits.sex
        DOB: $.traits.born
        Customer Type: $.context.traits.tier
        MSG-sms: $.traits.sms_ok
        source: kafka
        "*": {from: $.traits, except: [name, first_name, last_name, email, phone, sex, born, sms_ok]}
  - name: Plan Changed
    action: upload_event
    trigger: {and: [{field: type, equals: identify}, {field: traits.plan, exists: true}]}
    convert_timestamps: false
    mappings:
      evtName: Plan Changed
      evtData: {plan: $.traits.plan, at: $.timestamp}
  - name: Anonymous Pages
    action: upload_event
    trigger: type = "page" and userId = null
    identity: {key: objectId}
    mappings:
      evtName: Page Viewed
      evtData: {page: $.name, url: $.properties.url, first_item: "$.properties.items[0]"}
  - name: Purchases
    action: upload_event
    trigger: type = "track" and match(event, "Order Completed*")
    nested_values: stringify
    mappings:
      evtName: Charged
      evtData:
        Amount: {path: $.properties.total, as: number}
        Currency: [$.properties.currency, EUR]
        Items: $.properties.products
        "*": {from: $.properties, except: [total, currency, products]}
  - name: Forget Me
    action: delete_profile
    trigger: {and: [{field: type, equals: track}, {field: event, in: [Delete User, Forget Me]}]}
    identity: {if_missing: objectId}
"""

T = BASE_TS  # 2024-03-01T00:00:00Z = 1709251200
DOB = 642902400  # 1990-05-17

# (event, the requests it must cause as (path, body), the dead letter it must cause)
SCENARIO: list[tuple[dict[str, Any], list[tuple[str, Any]], dict[str, str] | None]] = [
    (
        {"messageId": "m1", "type": "identify", "userId": "u-1", "timestamp": iso(T),
         "traits": {"first_name": "Ada", "last_name": "Lovelace", "email": " ada@example.com", "sex": "female",
                    "phone": "+44 7700-900000", "born": "1990-05-17", "plan": "pro",
                    "sms_ok": "yes", "signup": "2023-01-01T09:30:00Z", "tags": ["a", "b"], "nothing": None},
         "context": {"traits": {"tier": "Gold"}}},
        [
            ("/1/upload", {"d": [{"type": "profile", "identity": "u-1", "ts": T, "profileData": {
                "Name": "Ada Lovelace", "Email": "ada@example.com", "Phone": "+447700900000", "Gender": "F",
                "DOB": f"$D_{DOB}", "Customer Type": "Gold", "MSG-sms": True, "source": "kafka", "plan": "pro",
                "signup": "$D_1672565400", "tags": ["a", "b"]}}]}),
            ("/1/upload", {"d": [{"type": "event", "identity": "u-1", "ts": T, "evtName": "Plan Changed",
                                  "evtData": {"plan": "pro", "at": iso(T)}}]}),
        ],
        None,
    ),
    (
        # Avro timestamp-millis as the event time; an anonymous visitor on an objectId profile.
        {"messageId": "m2", "type": "page", "anonymousId": "anon-7", "name": "Pricing", "timestamp": T * 1000 + 999,
         "properties": {"url": "https://example.com/pricing", "items": ["S-1", "S-2"]}},
        [("/1/upload", {"d": [{"type": "event", "objectId": "anon-7", "ts": T, "evtName": "Page Viewed",
                               "evtData": {"page": "Pricing", "url": "https://example.com/pricing",
                                           "first_item": "S-1"}}]})],
        None,
    ),
    (
        {"messageId": "m3", "type": "track", "userId": "u-1", "event": "Order Completed (web)",
         "timestamp": iso(T + 60),
         "properties": {"total": "42.50", "order_id": "o-1", "coupon": None,
                        "products": [{"sku": "A", "price": 40.0, "quantity": 1, "tags": ["new"]},
                                     {"sku": "B", "price": 2.5, "shipped": "2024-03-02"}]}},
        [("/1/upload", {"d": [{"type": "event", "identity": "u-1", "ts": T + 60, "evtName": "Charged",
                               "evtData": {"Amount": 42.5, "Currency": "EUR",
                                           "Items": [{"sku": "A", "price": 40.0, "quantity": 1, "tags": '["new"]'},
                                                     {"sku": "B", "price": 2.5, "shipped": T + 86400}],
                                           "order_id": "o-1", "coupon": None}}]})],
        None,
    ),
    (
        # A local phone number: the profile is refused before sending, with CleverTap's code, and dead-lettered;
        # the event's other subscription still delivers.
        {"messageId": "m4", "type": "identify", "userId": "u-2", "timestamp": iso(T + 1),
         "traits": {"name": "Local Phone", "phone": "07700900123", "plan": "free"}},
        [("/1/upload", {"d": [{"type": "event", "identity": "u-2", "ts": T + 1, "evtName": "Plan Changed",
                               "evtData": {"plan": "free", "at": iso(T + 1)}}]})],
        {"x-dlq-stage": "validate", "x-dlq-error-code": "516", "x-dlq-error-class": "ValidationError"},
    ),
    (
        {"messageId": "m5", "type": "track", "anonymousId": "anon-7", "event": "Forget Me", "timestamp": iso(T + 2)},
        [("/1/delete/profiles.json", {"guid": ["anon-7"]})],
        None,
    ),
    (
        {"messageId": "m6", "type": "track", "userId": "u-1", "event": "Delete User", "timestamp": iso(T + 3)},
        [("/1/delete/profiles.json", {"identity": ["u-1"]})],
        None,
    ),
    ({"messageId": "m7", "type": "track", "event": "Delete User", "timestamp": iso(T + 4)}, [], None),  # no user
    ({"messageId": "m8", "type": "screen", "userId": "u-1", "name": "Settings"}, [], None),  # nothing matches
]


async def test_custom_subscriptions_exact_bodies(kafka_bootstrap: str, tmp_path: Path) -> None:
    path = tmp_path / "subscriptions.yaml"
    path.write_text(SUBSCRIPTIONS, encoding="utf-8")
    topic, group = unique("custom"), unique("group")
    create_topics(kafka_bootstrap, {topic: 1})
    produce(kafka_bootstrap, topic, [(b"k", encode_plain(SCHEMA, event)) for event, _, _ in SCENARIO])

    passcode = secrets.token_hex(16)
    async with ClevertapStandin(StandinConfig(account_id="TEST-ACCOUNT", passcode=passcode)) as standin:
        settings = processor_settings(
            kafka_bootstrap, topic, group, standin.base_url, passcode,
            SUBSCRIPTIONS_FILE=str(path), CLEVERTAP_MAX_CONCURRENCY="1", CLEVERTAP_UPLOAD_BATCH_SIZE="1",
            CLEVERTAP_DELETE_BATCH_SIZE="1",
        )
        result = await run_processor(settings, idle_exit_s=1.0)
        assert result.drained
        received = [(r.path, r.body) for r in standin.requests]
        assert received == [request for _, requests, _ in SCENARIO for request in requests]
        # Key order too: the bodies are exactly these JSON documents.
        upload = standin.requests[0].body["d"][0]
        assert list(upload) == ["type", "identity", "ts", "profileData"]
        assert list(upload["profileData"])[:8] == [
            "Name", "Email", "Phone", "Gender", "DOB", "Customer Type", "MSG-sms", "source"
        ]
        assert standin.rejected == []
        stats = result.stats
        assert stats.read == len(SCENARIO)
        assert stats.profiles_uploaded == 1
        assert stats.events_uploaded == 4
        assert dict(stats.rejected) == {516: 1}
        assert stats.profiles_deleted == 2
        assert stats.dead_lettered == 1
        assert dict(stats.skipped) == {"no user id": 1, "no subscription matched": 1}

    committed, ends = committed_and_end_offsets(kafka_bootstrap, topic, group, 1)
    assert committed == ends == [len(SCENARIO)]

    letters = read_all(kafka_bootstrap, f"{topic}.dlq", 1)
    assert len(letters) == 1
    headers = headers_of(letters[0])
    expected_letter = SCENARIO[3][2]
    assert expected_letter is not None
    assert {k: headers[k] for k in expected_letter} == expected_letter
    assert headers["x-dlq-source-offset"] == "3"
    assert headers["x-dlq-subscription"] == "CRM Profile"
    assert headers["x-dlq-error-message"].startswith("Phone is not in E.164 form")
    assert "07700900123" not in headers["x-dlq-error-message"]
    assert letters[0].value() == encode_plain(SCHEMA, SCENARIO[3][0])


def test_preview_shows_the_bodies_the_processor_sends(tmp_path: Path) -> None:
    """``processor preview`` on the decoded events says exactly what the run above sends (no broker needed)."""
    from processor.decode import PlainAvroDecoder

    path = tmp_path / "subscriptions.yaml"
    path.write_text(SUBSCRIPTIONS, encoding="utf-8")
    subscriptions = load_subscriptions_file(path)
    decoder = PlainAvroDecoder(SCHEMA)
    for event, requests, letter in SCENARIO:
        decoded = decoder.decode(encode_plain(SCHEMA, event))
        entries = preview_event(decoded, subscriptions)
        shown = [(e["request"]["path"], json.loads(e["request"]["body"])) for e in entries if "request" in e]
        if letter is None:
            assert shown == requests, event["messageId"]
        else:
            assert any(e.get("error", {}).get("code") == int(letter["x-dlq-error-code"]) for e in entries)


def test_preview_reads_a_record_from_the_topic(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from processor.cli import main

    path = tmp_path / "subscriptions.yaml"
    path.write_text(SUBSCRIPTIONS, encoding="utf-8")
    topic = unique("preview")
    create_topics(kafka_bootstrap, {topic: 2})
    events = [SCENARIO[n][0] for n in (0, 5, 3)]
    produce(kafka_bootstrap, topic, [(b"k", encode_plain(SCHEMA, e)) for e in events], partition_of=[1, 1, 1])
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TOPICS": topic, "CLEVERTAP_ACCOUNT_ID": "ACC",
           "CLEVERTAP_PASSCODE": secrets.token_hex(8), "CLEVERTAP_REGION": "eu1", "SUBSCRIPTIONS_FILE": str(path)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["preview", "--topic", topic, "--partition", "1", "--offset", "1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["event"]["messageId"] == "m6"
    assert [r["request"]["body"] for r in shown["results"] if "request" in r] == [{"identity": ["u-1"]}]
    assert main(["preview", "--topic", topic, "--partition", "1", "--offset", "2"]) == 0
    assert "refused at stage validate, code 516 (ValidationError): Phone is not in E.164 form" in (
        capsys.readouterr().out
    )
    assert main(["preview", "--topic", topic, "--partition", "0", "--offset", "0"]) == 1
    assert f"{topic}[0] holds no records; there is no record at offset 0" in capsys.readouterr().err
    assert main(["preview", "--topic", topic, "--partition", "1", "--offset", "3"]) == 1
    assert f"{topic}[1] holds offsets 0 to 2; there is no record at offset 3" in capsys.readouterr().err
    # Nothing was committed for the processor's group by previewing.
    committed, _ = committed_and_end_offsets(kafka_bootstrap, topic, "clevertap-processor", 2)
    assert committed == [-1001, -1001]
