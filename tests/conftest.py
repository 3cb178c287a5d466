import os
from collections.abc import Iterator

import pytest

from processor.embedded.kafka_broker import KafkaBroker


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Apache Kafka broker: TEST_KAFKA_BOOTSTRAP_SERVERS when set, else one local KRaft broker per session.

    Deliberately not the processor's own KAFKA_BOOTSTRAP_SERVERS: a shell configured for a real cluster must not
    send test traffic there."""
    given = os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    broker = KafkaBroker()
    broker.start(timeout=120)
    try:
        yield broker.bootstrap_servers
    finally:
        broker.close()
