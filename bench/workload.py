"""The benchmark's event mix: Segment-like identify / track / "Delete User" events, Avro-encoded.

Encoding a rich event with fastavro costs ~100 µs, far more than decoding it, so filling a topic with a million
distinct events by encoding each one would take minutes. Instead a pool of templates (varied traits, properties,
context) is encoded once with fixed-width placeholders for ``userId``, ``messageId`` and a ``bench_sent`` stamp;
each produced message is a template with those bytes replaced. Avro strings are length-prefixed raw UTF-8, so
replacing a placeholder by a value of the same width keeps the record valid and byte-identical to what fastavro
would write. Every message therefore has its own user id, message id and (in the latency phase) produce time.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer

from processor.decode import load_schema
from processor.embedded.events import complete, encode_plain
from processor.settings import default_schema_path

USER_PLACEHOLDER = b"UUUUUUUUUUUU"  # "u-" + 10 digits
MESSAGE_PLACEHOLDER = b"MMMMMMMMMMMMMMMMMMMMMMMM"  # "m-" + 22 digits
STAMP_PLACEHOLDER = b"SSSSSSSSSSSSSSSS"  # produce time, 16-digit microseconds since the epoch
STAMP_FIELD = "bench_sent_us"  # in traits (identify) and properties (track): survives mapping unchanged

_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Radia", "Tim", "Frances"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson", "Perlman", "Lee"]
_CITIES = [("London", "GB", "Europe/London"), ("Berlin", "DE", "Europe/Berlin"), ("Paris", "FR", "Europe/Paris"),
           ("Mumbai", "IN", "Asia/Kolkata"), ("Singapore", "SG", "Asia/Singapore"), ("Austin", "US", "America/Chicago")]
_EVENTS = ["Product Viewed", "Product Viewed", "Product Viewed", "Product Added", "Checkout Started",
           "Order Completed", "Search Performed", "Video Played", "Promotion Clicked", "Cart Viewed"]
_CATEGORIES = ["games", "books", "music", "garden", "toys", "electronics", "fashion"]
_AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
]


def _iso(rng: random.Random, start: int = 1_672_531_200, span: int = 40_000_000, millis: bool = True) -> str:
    ts = start + rng.randrange(span)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return text + (f".{rng.randrange(1000):03d}Z" if millis else "Z")


def _context(rng: random.Random) -> dict[str, Any]:
    city, country, tz = rng.choice(_CITIES)
    path = f"/products/sku-{rng.randrange(1000):03d}"
    return {
        "library": {"name": "analytics.js", "version": f"4.{rng.randrange(10)}.{rng.randrange(10)}"},
        "ip": f"203.0.113.{rng.randrange(256)}",
        "locale": rng.choice(["en-GB", "en-US", "de-DE", "fr-FR", "hi-IN"]),
        "timezone": tz,
        "userAgent": rng.choice(_AGENTS),
        "page": {"path": path, "url": "https://shop.example.com" + path, "referrer": "https://www.google.com/",
                 "title": "Shop"},
        "location": {"city": city, "country": country},
    }


def identify_event(rng: random.Random) -> dict[str, Any]:
    """An identify with 16 traits (one is the bench stamp): strings, numbers, booleans, dates, a list."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    city, country, _ = rng.choice(_CITIES)
    traits: dict[str, Any] = {
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}{rng.randrange(1000)}@example.com",
        "phone": f"+4477009{rng.randrange(100000):05d}",
        "plan": rng.choice(["free", "pro", "team", "enterprise"]),
        "createdAt": _iso(rng, millis=False),
        "logins": rng.randrange(500),
        "beta": rng.random() < 0.3,
        "company": rng.choice(["Analytical Engines Ltd", "Compilers Inc", "Acme", "Initech"]),
        "title": rng.choice(["Engineer", "Manager", "Analyst", "Designer"]),
        "city": city,
        "country": country,
        "age": 18 + rng.randrange(60),
        "lifetime_value": round(rng.random() * 5000, 2),
        "tags": rng.sample(["vip", "newsletter", "beta", "churn-risk", "mobile"], 2),
        "birthday": f"{1950 + rng.randrange(55)}-{1 + rng.randrange(12):02d}-{1 + rng.randrange(28):02d}",
        STAMP_FIELD: STAMP_PLACEHOLDER.decode(),
    }
    return {"type": "identify", "traits": traits, "context": _context(rng)}


def track_event(rng: random.Random) -> dict[str, Any]:
    """A track with 10 properties (one is the bench stamp)."""
    sku = rng.randrange(1000)
    properties: dict[str, Any] = {
        "sku": f"SKU-{sku:03d}",
        "name": f"Product {sku}",
        "price": round(rng.random() * 200, 2),
        "category": rng.choice(_CATEGORIES),
        "brand": rng.choice(["Acme", "Globex", "Umbrella", "Hooli"]),
        "currency": rng.choice(["EUR", "GBP", "USD", "INR"]),
        "quantity": 1 + rng.randrange(5),
        "in_stock": rng.random() < 0.9,
        "position": rng.randrange(50),
        STAMP_FIELD: STAMP_PLACEHOLDER.decode(),
    }
    return {"type": "track", "event": rng.choice(_EVENTS), "properties": properties, "context": _context(rng)}


def delete_event(rng: random.Random) -> dict[str, Any]:
    return {"type": "track", "event": "Delete User", "properties": {STAMP_FIELD: STAMP_PLACEHOLDER.decode()},
            "context": _context(rng)}


@dataclass(frozen=True)
class Template:
    kind: str  # identify | track | delete
    head: bytes
    mid_message_user: bytes
    mid_user_stamp: bytes
    tail: bytes


def _template(schema: Any, kind: str, event: dict[str, Any], rng: random.Random) -> Template:
    event = dict(event)
    event["messageId"] = MESSAGE_PLACEHOLDER.decode()
    event["userId"] = USER_PLACEHOLDER.decode()
    event["anonymousId"] = str(uuid.UUID(int=rng.getrandbits(128)))
    event["timestamp"] = _iso(rng)
    encoded = encode_plain(schema, complete(event))
    positions = []
    for placeholder in (USER_PLACEHOLDER, MESSAGE_PLACEHOLDER, STAMP_PLACEHOLDER):
        at = encoded.find(placeholder)
        if at < 0 or encoded.find(placeholder, at + 1) >= 0:
            raise RuntimeError(f"placeholder {placeholder!r} not found exactly once in the encoded {kind}")
        positions.append((at, placeholder))
    # Field order in the schema: messageId comes before userId; sort to cut the template in order.
    positions.sort()
    order = [p for _, p in positions]
    if order != [MESSAGE_PLACEHOLDER, USER_PLACEHOLDER, STAMP_PLACEHOLDER]:
        raise RuntimeError(f"unexpected field order in the encoded {kind}: {order}")
    (m_at, _), (u_at, _), (s_at, _) = positions
    return Template(
        kind,
        encoded[:m_at],
        encoded[m_at + len(MESSAGE_PLACEHOLDER) : u_at],
        encoded[u_at + len(USER_PLACEHOLDER) : s_at],
        encoded[s_at + len(STAMP_PLACEHOLDER) :],
    )


class Workload:
    """A deterministic stream of (key, value, kind) with the configured mix."""

    def __init__(
        self,
        *,
        seed: int = 7,
        identify_share: float = 0.25,
        delete_share: float = 0.01,
        users: int = 50_000,
        templates_per_kind: int = 400,
    ) -> None:
        self.schema = load_schema(default_schema_path())
        rng = random.Random(seed)
        self._rng = random.Random(seed + 1)
        self.identify_share = identify_share
        self.delete_share = delete_share
        self.users = users
        makers = {"identify": identify_event, "track": track_event, "delete": delete_event}
        counts = {"identify": templates_per_kind, "track": templates_per_kind}
        counts["delete"] = max(1, templates_per_kind // 10)
        self.templates = {
            kind: [_template(self.schema, kind, make(rng), rng) for _ in range(counts[kind])]
            for kind, make in makers.items()
        }
        self._seq = 0

    def sizes(self) -> dict[str, float]:
        """Average encoded size per kind, in bytes."""
        out = {}
        for kind, items in self.templates.items():
            total = sum(
                len(t.head) + len(t.mid_message_user) + len(t.mid_user_stamp) + len(t.tail)
                + len(USER_PLACEHOLDER) + len(MESSAGE_PLACEHOLDER) + len(STAMP_PLACEHOLDER)
                for t in items
            )
            out[kind] = total / len(items)
        return out

    def next(self, stamp_us: int = 0) -> tuple[bytes, bytes, str]:
        """(key, value, kind) of the next event; ``stamp_us`` is written into the bench_sent_us attribute."""
        rng = self._rng
        draw = rng.random()
        if draw < self.delete_share:
            kind = "delete"
        elif draw < self.delete_share + self.identify_share:
            kind = "identify"
        else:
            kind = "track"
        pool = self.templates[kind]
        template = pool[self._seq % len(pool)]
        self._seq += 1
        user = b"u-%010d" % rng.randrange(self.users)
        message = b"m-%022d" % self._seq
        stamp = b"%016d" % stamp_us
        value = b"".join(
            (template.head, message, template.mid_message_user, user, template.mid_user_stamp,
             stamp, template.tail)
        )
        return user, value, kind

    def stream(self, count: int) -> Iterator[tuple[bytes, bytes, str]]:
        for _ in range(count):
            yield self.next()


def fill_producer(bootstrap: str) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.num.messages": 10000,
            "batch.size": 4_000_000,
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "acks": 1,
        }
    )


def fill(bootstrap: str, topic: str, workload: Workload, count: int) -> dict[str, int]:
    """Produce ``count`` events and wait for every acknowledgement; returns how many of each kind."""
    producer = fill_producer(bootstrap)
    failures: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None and len(failures) < 5:
            failures.append(str(error))

    kinds = {"identify": 0, "track": 0, "delete": 0}
    produce = producer.produce
    for index in range(count):
        key, value, kind = workload.next()
        kinds[kind] += 1
        while True:
            try:
                produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if index % 20000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining or failures:
        raise RuntimeError(f"filling {topic}: {remaining} unacknowledged, errors: {failures}")
    return kinds


def produce_paced(
    bootstrap: str, topic: str, workload: Workload, rate: float, duration_s: float, tick_s: float = 0.005
) -> dict[str, Any]:
    """Produce at ``rate`` events/s for ``duration_s``; each event carries its produce() time in microseconds."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1, "acks": 1})
    failures: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None and len(failures) < 5:
            failures.append(str(error))

    kinds = {"identify": 0, "track": 0, "delete": 0}
    sent = 0
    started = time.time()
    deadline = started + duration_s
    behind_max = 0
    while True:
        now = time.time()
        if now >= deadline:
            break
        due = int((now - started) * rate) - sent
        behind_max = max(behind_max, due)
        for _ in range(due):
            key, value, kind = workload.next(int(time.time() * 1_000_000))
            kinds[kind] += 1
            while True:
                try:
                    producer.produce(topic, value, key, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.01)
            sent += 1
        producer.poll(0)
        time.sleep(tick_s)
    finished = time.time()
    remaining = producer.flush(60)
    if remaining or failures:
        raise RuntimeError(f"paced produce to {topic}: {remaining} unacknowledged, errors: {failures}")
    return {
        "sent": sent,
        "kinds": kinds,
        "started_wall": started,
        "finished_wall": finished,
        "achieved_rate": sent / (finished - started),
        "max_batch_behind": behind_max,
    }
