"""Pytest fixtures for the real PostgreSQL and Kafka servers (loaded from tests/conftest.py).

Servers start on first use, once per session, and are stopped by PID in the fixture's
teardown, so a failing test never leaves one running. When a server's binaries are
missing, tests that need it skip -- unless ``MASA_REQUIRE_SERVICES=1`` (set by
``scripts/test``), where a missing service is a failure: CI must never pass by skipping.

Tests get fresh state rather than a cleaned one: a new database per test, and a unique
topic-name prefix per test on the shared broker.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import pytest

from tests.support.anvil import AnvilNode
from tests.support.services import (
    KafkaBroker,
    PgDatabase,
    PostgresServer,
    ServiceUnavailable,
)

_counter = itertools.count(1)
_MARKERS = {
    "postgres": {"postgres_server", "pg_database"},
    "kafka": {"kafka_broker", "kafka_topics", "fresh_kafka_broker"},
    "anvil": {"anvil_node", "fresh_anvil"},
}


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def require(reason: str) -> NoReturn:
    """Skip for a missing tool or service -- or fail, where ``MASA_REQUIRE_SERVICES=1``
    (the test command sets it: CI must never pass by skipping)."""
    if _flag("MASA_REQUIRE_SERVICES", False):
        pytest.fail(f"required but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def _unavailable(error: ServiceUnavailable) -> NoReturn:
    require(str(error))


def _slug(nodeid: str, limit: int, sep: str = "_") -> str:
    """A readable, legal identifier from the test's name, so leftovers can be traced back."""
    name = nodeid.rsplit("::", 1)[-1].lower()
    return re.sub(r"[^a-z0-9]+", sep, name).strip(sep)[:limit]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the servers they use, so ``-m "not kafka"`` works without decorators."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in _MARKERS.items():
            if used & fixtures:
                item.add_marker(marker)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One cluster for the session; fsync off unless MASA_PG_FSYNC=1 (tests kill
    processes, never the machine, so the page cache keeps what they wrote)."""
    server = PostgresServer(fsync=_flag("MASA_PG_FSYNC", False), keep=_flag("MASA_KEEP", False))
    try:
        server.start()
    except ServiceUnavailable as error:
        _unavailable(error)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_database(
    postgres_server: PostgresServer, request: pytest.FixtureRequest
) -> Iterator[PgDatabase]:
    """A fresh, empty database for this test, dropped afterwards."""
    name = f"t{next(_counter)}_{_slug(request.node.nodeid, 40)}"
    database = postgres_server.create_database(name)
    try:
        yield database
    finally:
        postgres_server.drop_database(name)


def _start_kafka() -> KafkaBroker:
    broker = KafkaBroker(keep=_flag("MASA_KEEP", False))
    try:
        broker.start()
    except ServiceUnavailable as error:
        _unavailable(error)
    return broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """One broker for the session; tests isolate themselves by topic name (kafka_topics)."""
    broker = _start_kafka()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def fresh_kafka_broker() -> Iterator[KafkaBroker]:
    """A broker of this test's own, for crash tests that kill() or restart() it (~3 s)."""
    broker = _start_kafka()
    try:
        yield broker
    finally:
        broker.stop()


@dataclass
class KafkaTopics:
    """Topic names unique to one test on a shared broker."""

    broker: KafkaBroker
    prefix: str
    created: list[str] = field(default_factory=list)

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    def name(self, suffix: str) -> str:
        """The full topic name for ``suffix``, without creating it."""
        return f"{self.prefix}-{suffix}"

    def create(self, suffix: str, partitions: int | None = None, **config: str) -> str:
        """Create ``<prefix>-<suffix>`` (default partition count: the broker's, 6)."""
        topic = self.broker.create_topic(self.name(suffix), partitions, config or None)
        self.created.append(topic)
        return topic


@pytest.fixture
def kafka_topics(kafka_broker: KafkaBroker, request: pytest.FixtureRequest) -> KafkaTopics:
    """A unique topic-name prefix; topics stay until the session's broker is removed."""
    # '-' only: Kafka refuses names that differ from an existing one only by '.' vs '_'
    slug = _slug(request.node.nodeid, 60, sep="-")
    prefix = f"t{next(_counter)}-{slug}-{uuid.uuid4().hex[:6]}"
    return KafkaTopics(kafka_broker, prefix)


def start_anvil(**options: Any) -> AnvilNode:
    """A started anvil (see AnvilNode for options), or a skip/fail when it cannot run."""
    node = AnvilNode(**options)
    try:
        node.start()
    except ServiceUnavailable as error:
        _unavailable(error)
    return node


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[AnvilNode]:
    """One auto-mining anvil for the session (tests snapshot/revert or use fresh addresses)."""
    node = start_anvil()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def fresh_anvil() -> Iterator[AnvilNode]:
    """An anvil of this test's own, for tests that reorg or reset the chain."""
    node = start_anvil()
    try:
        yield node
    finally:
        node.stop()
