"""The CleverTap stand-in answers like /work/shared/clevertap-api.md says, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from processor.embedded.clevertap_standin import (
    ClevertapStandin,
    StandinConfig,
    StandinThread,
    validate_record,
)

ACCOUNT = "TEST-ACC-1"
PASSCODE = "secret-pass"
HEADERS = {
    "X-CleverTap-Account-Id": ACCOUNT,
    "X-CleverTap-Passcode": PASSCODE,
    "Content-Type": "application/json; charset=utf-8",
}
TS = 1_700_000_000
REPO_ROOT = Path(__file__).resolve().parents[2]


def profile(identity: str = "u-1", /, **data: Any) -> dict[str, Any]:
    return {"type": "profile", "identity": identity, "ts": TS, "profileData": data or {"Name": "Ada"}}


def event(identity: str = "u-1", /, name: str = "Order Placed", **data: Any) -> dict[str, Any]:
    return {"type": "event", "identity": identity, "ts": TS, "evtName": name, "evtData": data}


@pytest_asyncio.fixture(loop_scope="function")
async def standin() -> AsyncIterator[ClevertapStandin]:
    async with ClevertapStandin(StandinConfig(account_id=ACCOUNT, passcode=PASSCODE)) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="function")
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    client: aiohttp.ClientSession,
    server: ClevertapStandin,
    path: str,
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with client.post(server.base_url + path, data=data, headers=headers or HEADERS) as resp:
        return resp.status, await resp.json(content_type=None)


async def upload(
    client: aiohttp.ClientSession, server: ClevertapStandin, records: list[Any]
) -> tuple[int, Any]:
    return await post(client, server, "/1/upload", {"d": records})


def unprocessed(record: Any, index: int, code: int, text: str) -> dict[str, Any]:
    return {
        "status": "fail",
        "code": code,
        "error": f"{text}.Skipped record number : {index}",
        "record": record,
    }


# ---- /1/upload: whole-response shapes ------------------------------------------------------------


async def test_all_valid_records_give_success(
    standin: ClevertapStandin, client: aiohttp.ClientSession
) -> None:
    records = [profile("u-1", Name="Ada", Email="ada@example.com", Phone="+14155550100"), event("u-1")]

    status, body = await upload(client, standin, records)

    assert status == 200
    assert body == {"status": "success", "processed": 2, "unprocessed": []}
    assert standin.events == [records[1]]
    assert standin.profiles == {"u-1": {"Name": "Ada", "Email": "ada@example.com", "Phone": "+14155550100"}}


async def test_some_invalid_records_give_partial_with_one_based_numbers(
    standin: ClevertapStandin, client: aiohttp.ClientSession
) -> None:
    bad_email = profile("u-2", Email="not-an-email")
    bad_phone = profile("u-4", Phone="4155550100")
    records = [profile("u-1"), bad_email, event("u-3"), bad_phone]

    status, body = await upload(client, standin, records)

    assert status == 200
    assert body == {
        "status": "partial",
        "processed": 2,
        "unprocessed": [
            unprocessed(bad_email, 2, 515, "Profile data is incorrect. Email is not valid"),
            unprocessed(bad_phone, 4, 516, "Profile data is incorrect. Phone is not valid"),
        ],
    }
    # The exact text of the documented example.
    assert (
        body["unprocessed"][0]["error"]
        == "Profile data is incorrect. Email is not valid.Skipped record number : 2"
    )
    assert standin.rejected == [(bad_email, 515), (bad_phone, 516)]
    assert set(standin.profiles) == {"u-1"}


async def test_no_valid_records_give_fail(standin: ClevertapStandin, client: aiohttp.ClientSession) -> None:
    records = [event("u-1", name="App Launched"), {"type": "event", "ts": TS, "evtName": "x"}]

    status, body = await upload(client, standin, records)

    assert status == 200
    assert body == {
        "status": "fail",
        "processed": 0,
        "unprocessed": [
            unprocessed(records[0], 1, 513, "Restricted system event name 'App Launched'"),
            unprocessed(records[1], 2, 523, "Record must have exactly one of identity, objectId, FBID, GPID"),
        ],
    }


async def test_empty_d_is_a_success_with_nothing_processed(
    standin: ClevertapStandin, client: aiohttp.ClientSession
) -> None:
    assert await upload(client, standin, []) == (
        200,
        {"status": "success", "processed": 0, "unprocessed": []},
    )


# ---- per-record codes ----------------------------------------------------------------------------

NESTED_ITEMS = [{"sku": "a", "dims": {"w": 1}}]

INVALID_RECORDS: list[tuple[str, Any, int]] = [
    ("event without evtName", {"type": "event", "identity": "u", "ts": TS, "evtData": {}}, 509),
    ("event with empty evtName", {"type": "event", "identity": "u", "evtName": ""}, 509),
    ("nested object in evtData", event(amount={"value": 1}), 512),
    ("array in evtData", event(tags=["a", "b"]), 512),
    ("evtData not an object", {"type": "event", "identity": "u", "evtName": "x", "evtData": [1]}, 512),
    ("Items in a non-Charged event", event(Items=[{"sku": "a"}]), 512),
    ("nested object inside Charged Items", event(name="Charged", Items=NESTED_ITEMS), 512),
    ("nested object in profileData", profile(address={"city": "Oslo"}), 512),
    ("profile key over 120 bytes", profile(**{"k" * 121: "v"}), 512),
    ("profile key over 120 bytes in UTF-8", profile(**{"é" * 61: "v"}), 512),
    ("profile value over 512 bytes", profile(bio="x" * 513), 512),
    ("multi-value with a number", profile(tags=["a", 1]), 512),
    ("multi-value over 100 items", profile(tags=[str(i) for i in range(101)]), 512),
    ("profileData not an object", {"type": "profile", "identity": "u", "profileData": "x"}, 512),
    ("Web Page Viewed", event(name="Web Page Viewed"), 513),
    ("App Launched", event(name="App Launched"), 513),
    ("App Installed", event(name="App Installed"), 513),
    ("Notification Viewed", event(name="Notification Viewed"), 513),
    ("Notification Clicked", event(name="Notification Clicked"), 513),
    ("UTM Visited", event(name="UTM Visited"), 513),
    ("App Uninstalled", event(name="App Uninstalled"), 513),
    ("Stayed", event(name="Stayed"), 513),
    ("Gender male", profile(Gender="male"), 514),
    ("Email without domain", profile(Email="ada@"), 515),
    ("Email not a string", profile(Email=5), 515),
    ("Phone without plus", profile(Phone="14155550100"), 516),
    ("Phone too short", profile(Phone="+1234567"), 516),
    ("Phone too long", profile(Phone="+1234567890123456"), 516),
    ("Phone with spaces", profile(Phone="+1 415 555 0100"), 516),
    ("Employed yes", profile(Employed="yes"), 517),
    ("Education PhD", profile(Education="PhD"), 518),
    ("Married true", profile(Married=True), 519),
    ("Age as string", profile(Age="42"), 520),
    ("Age as float", profile(Age=42.5), 520),
    ("Age as bool", profile(Age=True), 520),
    ("101 event properties", {**event(), "evtData": {f"p{i}": i for i in range(101)}}, 522),
    ("no identifier", {"type": "profile", "ts": TS, "profileData": {"Name": "x"}}, 523),
    ("two identifiers", {"type": "profile", "identity": "u", "FBID": "f", "profileData": {}}, 523),
    ("empty identity", {"type": "profile", "identity": "", "profileData": {}}, 523),
    ("numeric identity", {"type": "profile", "identity": 42, "profileData": {}}, 523),
    ("type missing", {"identity": "u", "profileData": {}}, 524),
    ("type unknown", {"type": "page", "identity": "u"}, 524),
    ("record not an object", "just a string", 524),
    ("ts zero", {**profile(), "ts": 0}, 525),
    ("ts negative", {**profile(), "ts": -5}, 525),
    ("ts in milliseconds", {**profile(), "ts": 1_700_000_000_000}, 525),
    ("ts as float", {**profile(), "ts": 1_700_000_000.5}, 525),
    ("ts as string", {**profile(), "ts": "1700000000"}, 525),
    ("ts as ISO string", {**event(), "ts": "2023-11-14T22:13:20Z"}, 525),
    ("ts as bool", {**profile(), "ts": True}, 525),
    ("objectId empty", {"type": "profile", "objectId": "", "profileData": {}}, 526),
]


@pytest.mark.parametrize(("record", "code"), [pytest.param(r, c, id=name) for name, r, c in INVALID_RECORDS])
async def test_each_invalid_record_gets_its_code(
    standin: ClevertapStandin, client: aiohttp.ClientSession, record: Any, code: int
) -> None:
    status, body = await upload(client, standin, [profile("ok"), record])

    assert status == 200
    assert body["status"] == "partial"
    assert body["processed"] == 1
    [entry] = body["unprocessed"]
    assert entry["code"] == code
    assert entry["status"] == "fail"
    assert entry["record"] == record
    assert entry["error"].endswith(".Skipped record number : 2")
    problem = validate_record(record)
    assert problem is not None and problem[0] == code


VALID_RECORDS: list[tuple[str, Any]] = [
    (
        "Charged with flat Items",
        event(name="Charged", Amount=30, Items=[{"sku": "a", "qty": 2}, {"sku": "b"}]),
    ),
    ("ts omitted", {"type": "event", "identity": "u", "evtName": "Signed Up"}),
    ("profileData omitted", {"type": "profile", "identity": "u"}),
    ("objectId", {"type": "profile", "objectId": "__g123", "profileData": {"Name": "x"}}),
    ("FBID", {"type": "event", "FBID": "fb-1", "evtName": "x"}),
    ("GPID", {"type": "profile", "GPID": "gp-1", "profileData": {}}),
    ("null identity beside objectId", {"type": "profile", "identity": None, "objectId": "__g1"}),
    (
        "all standard keys",
        profile(
            Name="Ada",
            Email="a.b+c@mail.example.co.uk",
            Phone="+4915112345678",
            Gender="F",
            Employed="Y",
            Married="N",
            Education="Graduate",
            Age=36,
            DOB="$D_642902400",
            Photo="https://example.com/a.png",
            **{"Customer Type": "Gold", "MSG-email": False, "MSG-push": True},
        ),
    ),
    ("multi-value strings", profile(tags=["a", "b"])),
    ("100 event properties", {**event(), "evtData": {f"p{i}": i for i in range(100)}}),
    ("120-byte key and 512-byte value", profile(**{"k" * 120: "v" * 512})),
    ("null property values", event(coupon=None)),
]


@pytest.mark.parametrize("record", [pytest.param(r, id=name) for name, r in VALID_RECORDS])
async def test_valid_record_edge_cases_are_processed(
    standin: ClevertapStandin, client: aiohttp.ClientSession, record: Any
) -> None:
    assert await upload(client, standin, [record]) == (
        200,
        {"status": "success", "processed": 1, "unprocessed": []},
    )


# ---- HTTP-level errors ---------------------------------------------------------------------------

UNAUTHORISED = {"status": "fail", "error": "Account ID is not valid", "code": 401}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Content-Type": "application/json"}, id="no credentials"),
        pytest.param({**HEADERS, "X-CleverTap-Passcode": "wrong"}, id="wrong passcode"),
        pytest.param({**HEADERS, "X-CleverTap-Account-Id": "OTHER"}, id="wrong account"),
        pytest.param({k: v for k, v in HEADERS.items() if "Passcode" not in k}, id="no passcode"),
    ],
)
async def test_bad_credentials_give_401(
    standin: ClevertapStandin, client: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    assert await post(client, standin, "/1/upload", {"d": [profile()]}, headers) == (401, UNAUTHORISED)
    assert standin.requests == []
    assert standin.profiles == {}


async def test_auth_failing_can_be_flipped_at_run_time(
    standin: ClevertapStandin, client: aiohttp.ClientSession
) -> None:
    standin.config.auth_failing = True
    assert await upload(client, standin, [profile()]) == (401, UNAUTHORISED)
    assert await post(client, standin, "/1/delete/profiles.json", {"identity": "u"}) == (401, UNAUTHORISED)

    standin.config.auth_failing = False
    assert (await upload(client, standin, [profile()]))[0] == 200
    assert standin.status_counts == {401: 2, 200: 1}


def fail400(error: str) -> dict[str, Any]:
    return {"status": "fail", "error": error, "code": 400}


@pytest.mark.parametrize(
    ("body", "headers", "error"),
    [
        pytest.param(b'{"d": [', HEADERS, "Malformed JSON body", id="malformed JSON"),
        pytest.param(b"", HEADERS, "Malformed JSON body", id="empty body"),
        pytest.param(
            orjson.dumps({"d": []}),
            {**HEADERS, "Content-Type": "text/plain"},
            "Content-Type must be application/json",
            id="wrong content type",
        ),
        pytest.param(orjson.dumps({"data": []}), HEADERS, "Missing parameter d", id="no d"),
        pytest.param(orjson.dumps([profile()]), HEADERS, "Missing parameter d", id="bare array"),
        pytest.param(orjson.dumps({"d": {}}), HEADERS, "Parameter d must be an array", id="d not an array"),
        pytest.param(
            orjson.dumps({"d": [profile(f"u-{i}") for i in range(1001)]}),
            HEADERS,
            "Too many records: 1001, at most 1000 per request",
            id="1001 records",
        ),
    ],
)
async def test_bad_upload_requests_give_400(
    standin: ClevertapStandin,
    client: aiohttp.ClientSession,
    body: bytes,
    headers: dict[str, str],
    error: str,
) -> None:
    assert await post(client, standin, "/1/upload", body, headers) == (400, fail400(error))
    assert standin.requests == []
    assert standin.records_accepted == 0


async def test_exactly_1000_records_are_accepted(
    standin: ClevertapStandin, client: aiohttp.ClientSession
) -> None:
    records = [event(f"u-{i}") for i in range(1000)]
    assert await upload(client, standin, records) == (
        200,
        {"status": "success", "processed": 1000, "unprocessed": []},
    )
    assert len(standin.events) == 1000


async def test_unknown_path_gives_404_and_wrong_method_405(
    standin: ClevertapStandin, client: aiohttp.ClientSession
) -> None:
    assert await post(client, standin, "/1/nope", {"d": []}) == (
        404,
        {"status": "fail", "error": "Not found", "code": 404},
    )
    async with client.get(standin.base_url + "/1/upload", headers=HEADERS) as resp:
        assert resp.status == 405
        assert await resp.json() == {"status": "fail", "error": "Method not allowed", "code": 405}


# ---- /1/delete/profiles.json ---------------------------------------------------------------------

DELETE = "/1/delete/profiles.json"


async def test_delete_list_and_single_identity(
    standin: ClevertapStandin, client: aiohttp.ClientSession
) -> None:
    await upload(client, standin, [profile("u-1"), profile("u-2"), profile("u-3")])

    assert await post(client, standin, DELETE, {"identity": ["u-1", "u-2"]}) == (200, {"status": "success"})
    assert await post(client, standin, DELETE, {"identity": "u-3"}) == (200, {"status": "success"})

    assert standin.deleted == ["u-1", "u-2", "u-3"]
    assert standin.profiles == {}


async def test_delete_by_guid_removes_object_id_profile(
    standin: ClevertapStandin, client: aiohttp.ClientSession
) -> None:
    await upload(client, standin, [{"type": "profile", "objectId": "__g1", "profileData": {"Name": "x"}}])
    assert standin.profiles == {"objectId:__g1": {"Name": "x"}}

    assert await post(client, standin, DELETE, {"guid": ["__g1"]}) == (200, {"status": "success"})

    assert standin.deleted_guids == ["__g1"]
    assert standin.deleted == []
    assert standin.profiles == {}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param({"identity": "u", "guid": "g"}, "Send either identity or guid, not both", id="both"),
        pytest.param({}, "Missing parameter identity or guid", id="neither"),
        pytest.param(
            {"identity": [f"u-{i}" for i in range(101)]},
            "At most 100 values of identity per request",
            id="101",
        ),
        pytest.param({"guid": []}, "guid must not be empty", id="empty list"),
        pytest.param({"identity": ["u", 5]}, "identity values must be non-empty strings", id="number"),
        pytest.param(["u"], "Body must be an object with identity or guid", id="array body"),
    ],
)
async def test_bad_deletes_give_400(
    standin: ClevertapStandin, client: aiohttp.ClientSession, body: Any, error: str
) -> None:
    assert await post(client, standin, DELETE, body) == (400, fail400(error))
    assert standin.deleted == []


async def test_exactly_100_identities_can_be_deleted(
    standin: ClevertapStandin, client: aiohttp.ClientSession
) -> None:
    ids = [f"u-{i}" for i in range(100)]
    assert await post(client, standin, DELETE, {"identity": ids}) == (200, {"status": "success"})
    assert standin.deleted == ids


async def test_profile_upsert_merges_and_delete_then_upload_recreates(
    standin: ClevertapStandin, client: aiohttp.ClientSession
) -> None:
    await upload(client, standin, [profile("u-1", Name="Ada", plan="gold")])
    await upload(client, standin, [profile("u-1", plan="platinum", Email="ada@example.com"), profile("u-2")])
    assert standin.profiles == {
        "u-1": {"Name": "Ada", "plan": "platinum", "Email": "ada@example.com"},
        "u-2": {"Name": "Ada"},
    }

    await post(client, standin, DELETE, {"identity": "u-1"})
    assert standin.profiles == {"u-2": {"Name": "Ada"}}

    await upload(client, standin, [profile("u-1", plan="basic")])
    assert standin.profiles["u-1"] == {"plan": "basic"}

    assert [(r.path, r.status) for r in standin.requests] == [
        ("/1/upload", 200),
        ("/1/upload", 200),
        (DELETE, 200),
        ("/1/upload", 200),
    ]
    assert standin.requests[2].body == {"identity": "u-1"}
    assert standin.requests[2].response == {"status": "success"}
    times = [r.received_at for r in standin.requests]
    assert times == sorted(times)


async def test_dry_run_validates_without_storing(
    standin: ClevertapStandin, client: aiohttp.ClientSession
) -> None:
    async with client.post(
        standin.base_url + "/1/upload?dryRun=1", json={"d": [profile(), event()]}, headers=HEADERS
    ) as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "success", "processed": 2, "unprocessed": []}
    assert standin.profiles == {}
    assert standin.events == []
    assert standin.requests[0].dry_run is True


# ---- concurrency and fault injection -------------------------------------------------------------


async def test_more_than_max_concurrency_in_flight_gives_429(client: aiohttp.ClientSession) -> None:
    config = StandinConfig(account_id=ACCOUNT, passcode=PASSCODE, max_concurrency=3, latency_s=0.3)
    async with ClevertapStandin(config) as server:
        results = await asyncio.gather(*(upload(client, server, [event(f"u-{i}")]) for i in range(5)))

    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 200, 200, 429, 429]
    assert {"status": "fail", "error": "Too many concurrent requests", "code": 429} in [b for _, b in results]
    # A 429 answers at once, so the fifth may arrive after the fourth has already left.
    assert server.max_concurrency_seen in (4, 5)
    assert len(server.events) == 3
    assert server.in_flight == 0


async def test_requests_within_max_concurrency_all_succeed(client: aiohttp.ClientSession) -> None:
    config = StandinConfig(account_id=ACCOUNT, passcode=PASSCODE, latency_s=0.3)
    async with ClevertapStandin(config) as server:
        results = await asyncio.gather(*(upload(client, server, [event(f"u-{i}")]) for i in range(15)))

    assert [status for status, _ in results] == [200] * 15
    assert 1 < server.max_concurrency_seen <= 15


async def test_latency_delays_the_answer(client: aiohttp.ClientSession) -> None:
    config = StandinConfig(account_id=ACCOUNT, passcode=PASSCODE, latency_s=0.2)
    async with ClevertapStandin(config) as server:
        started = time.monotonic()
        assert (await upload(client, server, [event()]))[0] == 200
        assert time.monotonic() - started >= 0.19


async def test_injected_5xx_and_429_store_nothing(client: aiohttp.ClientSession) -> None:
    config = StandinConfig(account_id=ACCOUNT, passcode=PASSCODE, error_5xx_rate=1.0, seed=7)
    async with ClevertapStandin(config) as server:
        status, body = await upload(client, server, [event()])
        assert status in (500, 502, 503)
        assert body == {"status": "fail", "error": "Server error (injected)", "code": status}

        server.config.error_5xx_rate = 0.0
        server.config.error_429_rate = 1.0
        server.config.retry_after_s = 2
        async with client.post(server.base_url + "/1/upload", json={"d": [event()]}, headers=HEADERS) as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "2"

    assert server.events == []
    assert server.requests == []


async def test_injected_connection_drop(client: aiohttp.ClientSession) -> None:
    config = StandinConfig(account_id=ACCOUNT, passcode=PASSCODE, drop_connection_rate=1.0)
    async with ClevertapStandin(config) as server:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await upload(client, server, [event()])
        assert server.dropped_connections == 1
        assert server.events == []


async def test_fault_rates_are_deterministic_with_a_seed(client: aiohttp.ClientSession) -> None:
    async def run() -> list[int]:
        config = StandinConfig(account_id=ACCOUNT, passcode=PASSCODE, error_5xx_rate=0.5, seed=42)
        async with ClevertapStandin(config) as server:
            return [(await upload(client, server, [event()]))[0] for _ in range(20)]

    first, second = await run(), await run()
    assert first == second
    assert 200 in first
    assert any(status >= 500 for status in first)


async def test_reject_knob_gives_the_configured_code(client: aiohttp.ClientSession) -> None:
    config = StandinConfig(account_id=ACCOUNT, passcode=PASSCODE, reject={"u-13": 515})
    async with ClevertapStandin(config) as server:
        records = [profile("u-12"), event("u-13"), profile("u-14")]
        for _ in range(2):
            assert await upload(client, server, records) == (
                200,
                {
                    "status": "partial",
                    "processed": 2,
                    "unprocessed": [
                        unprocessed(records[1], 2, 515, "Profile data is incorrect. Email is not valid")
                    ],
                },
            )
        assert server.events == []
        assert server.rejected == [(records[1], 515), (records[1], 515)]


async def test_retry_555_once_fails_only_the_first_time(client: aiohttp.ClientSession) -> None:
    config = StandinConfig(account_id=ACCOUNT, passcode=PASSCODE, retry_555_once={"u-7"})
    async with ClevertapStandin(config) as server:
        record = event("u-7")
        assert await upload(client, server, [record]) == (
            200,
            {
                "status": "fail",
                "processed": 0,
                "unprocessed": [unprocessed(record, 1, 555, "Miscellaneous server error")],
            },
        )
        assert await upload(client, server, [record]) == (
            200,
            {"status": "success", "processed": 1, "unprocessed": []},
        )
        assert server.events == [record]

        server.reset()
        assert (await upload(client, server, [record]))[1]["status"] == "fail"


async def test_cheap_validation_counts_only(client: aiohttp.ClientSession) -> None:
    config = StandinConfig(account_id=ACCOUNT, passcode=PASSCODE, cheap_validation=True)
    async with ClevertapStandin(config) as server:
        records = [event(f"u-{i}") for i in range(999)] + [{"type": "nonsense"}]
        assert await upload(client, server, records) == (
            200,
            {"status": "success", "processed": 1000, "unprocessed": []},
        )
        assert (await post(client, server, "/1/upload", {"d": [{}] * 1001}))[0] == 400
        assert (await post(client, server, DELETE, {"identity": "u-1"}))[0] == 200

    assert server.records_accepted == 1000
    assert server.requests == []
    assert server.events == []
    counters = server.counters()
    assert counters["status_counts"] == {"200": 2, "400": 1}
    assert counters["records_received"] == 1000


async def test_reset_clears_state(standin: ClevertapStandin, client: aiohttp.ClientSession) -> None:
    await upload(client, standin, [profile(), event(), profile("x", Gender="x")])
    await post(client, standin, DELETE, {"identity": "zz"})
    standin.reset()
    assert standin.snapshot().counters == {
        "requests_total": 0,
        "status_counts": {},
        "records_received": 0,
        "records_accepted": 0,
        "records_rejected": 0,
        "events_stored": 0,
        "profiles_stored": 0,
        "identities_deleted": 0,
        "guids_deleted": 0,
        "dropped_connections": 0,
        "max_concurrency_seen": 0,
    }
    assert (standin.requests, standin.profiles, standin.events, standin.deleted, standin.rejected) == (
        [],
        {},
        [],
        [],
        [],
    )


# ---- StandinThread and CLI -----------------------------------------------------------------------


def test_standin_thread_serves_synchronous_callers() -> None:
    config = StandinConfig(account_id=ACCOUNT, passcode=PASSCODE)
    with StandinThread(config) as thread:
        request = urllib.request.Request(
            thread.base_url + "/1/upload",
            data=orjson.dumps({"d": [profile("u-1", plan="a"), event("u-1")]}),
            headers=HEADERS,
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert json.loads(resp.read()) == {"status": "success", "processed": 2, "unprocessed": []}

        assert thread.profiles == {"u-1": {"plan": "a"}}
        assert len(thread.events) == 1
        assert [r.path for r in thread.requests] == ["/1/upload"]
        assert thread.counters()["records_accepted"] == 2
        snapshot = thread.snapshot()

        thread.config.auth_failing = True
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(request, timeout=5)
        assert excinfo.value.code == 401
        assert json.loads(excinfo.value.read()) == UNAUTHORISED
        excinfo.value.close()

        thread.reset()
        assert thread.events == []
        assert len(snapshot.events) == 1
    thread.stop()  # a second stop is harmless


async def test_standin_thread_works_beside_another_loop(client: aiohttp.ClientSession) -> None:
    thread = StandinThread(StandinConfig(account_id=ACCOUNT, passcode=PASSCODE, latency_s=0.05))
    base_url = await asyncio.to_thread(thread.start)
    try:
        async with client.post(base_url + "/1/upload", json={"d": [event()]}, headers=HEADERS) as resp:
            assert resp.status == 200
        assert thread.status_counts == {200: 1}
    finally:
        await asyncio.to_thread(thread.stop)


def test_cli_prints_url_then_counters_on_sigterm() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "processor.embedded.clevertap_standin",
            "--port",
            "0",
            "--account-id",
            ACCOUNT,
            "--passcode",
            PASSCODE,
            "--latency-ms",
            "1",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        request = urllib.request.Request(
            base_url + "/1/upload", data=orjson.dumps({"d": [event()]}), headers=HEADERS, method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    counters = json.loads(out.strip().splitlines()[-1])
    assert counters["records_accepted"] == 1
    assert counters["status_counts"] == {"200": 1}
