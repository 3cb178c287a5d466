import os
from collections.abc import Iterator

import pytest

from processor.embedded.kafka_broker import KafkaBroker


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Apache Kafka broker: KAFKA_BOOTSTRAP_SERVERS when set, else one local KRaft broker per session."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    broker = KafkaBroker()
    broker.start(timeout=120)
    try:
        yield broker.bootstrap_servers
    finally:
        broker.close()
