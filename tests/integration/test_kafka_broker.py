"""The real single-node Kafka broker used by the integration tests and the demo: start, round trip, restart."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer

from processor.embedded.kafka_broker import KafkaBroker

pytestmark = pytest.mark.integration

VALUES = [b"first", b"second", b"third"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    b = KafkaBroker(workdir=tmp_path / "kafka")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)

    # The topic does not exist yet: this also proves the broker auto-creates topics on first produce.
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for i, value in enumerate(values):
        producer.produce(topic, value=value, key=str(i).encode(), on_delivery=on_delivery)
    assert producer.flush(30) == 0, "messages still undelivered after 30 s"
    assert errors == []


def _consume(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    values: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(values) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            value = msg.value()
            assert value is not None
            values.append(value)
    finally:
        consumer.close()
    return values


def _process_exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    # An orphan that exited but whose new parent has not reaped it yet is gone for our purposes.
    return state != "Z"


def test_round_trip_then_stop_ends_the_process(broker: KafkaBroker) -> None:
    assert broker.bootstrap_servers.startswith("127.0.0.1:")
    pid = broker.pid
    assert pid is not None and _process_exists(pid)

    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    _produce(broker.bootstrap_servers, topic, VALUES)
    assert _consume(broker.bootstrap_servers, topic, len(VALUES)) == VALUES

    broker.stop()
    assert not broker.running
    assert not _process_exists(pid)
    assert not Path(f"/proc/{pid}").exists()


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_restart_keeps_port_and_messages(broker: KafkaBroker, how: str) -> None:
    bootstrap = broker.bootstrap_servers
    first_pid = broker.pid
    assert first_pid is not None
    topic = f"restart-{uuid.uuid4().hex[:8]}"
    _produce(bootstrap, topic, VALUES)

    if how == "stop":
        broker.stop()
    else:
        broker.kill()
    assert not _process_exists(first_pid)

    broker.start()
    assert broker.bootstrap_servers == bootstrap
    assert broker.pid != first_pid
    assert _consume(bootstrap, topic, len(VALUES)) == VALUES


def test_broker_does_not_outlive_a_killed_owner(tmp_path: Path) -> None:
    # The JVM runs in its own session, so a SIGKILLed owner (no atexit, no fixture teardown) would leave it
    # running forever without the watchdog.
    pid_file = tmp_path / "broker.pid"
    owner_code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from processor.embedded.kafka_broker import KafkaBroker
        broker = KafkaBroker(workdir=Path({str(tmp_path / "kafka")!r}))
        broker.start()
        Path({str(pid_file)!r}).write_text(str(broker.pid))
        time.sleep(600)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", owner_code], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not pid_file.exists():
            assert owner.poll() is None, f"owner exited early with {owner.returncode}"
            assert time.monotonic() < deadline, "broker in the owner process did not start"
            time.sleep(0.2)
        broker_pid = int(pid_file.read_text())
        assert _process_exists(broker_pid)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()

    deadline = time.monotonic() + 30
    while _process_exists(broker_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _process_exists(broker_pid), "broker JVM outlived its SIGKILLed owner"
