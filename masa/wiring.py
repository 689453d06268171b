"""The one place that builds adapters from settings: the bus, the event store, ingest."""

from __future__ import annotations

import time
from datetime import timedelta

from eventsourcing.persistence import PersistenceError
from eventsourcing.postgres import PostgresDatastore

from indexer.bus.base import Bus
from indexer.ingest.batch import Topics
from indexer.ingest.decide import Policy
from indexer.ingest.runner import IngestConfig
from indexer.store.base import EventStore
from web3 import EthereumTesterProvider, Web3

from masa.errors import ConfigurationError, RetryableError
from masa.settings import Settings


def open_bus(settings: Settings) -> Bus:
    if settings.bus.backend == "kafka":
        from indexer.bus.kafka import KafkaBus

        return KafkaBus(
            settings.bus.bootstrap_servers,
            client_id=settings.bus.client_id,
            replication_factor=settings.bus.replication_factor,
        )
    from indexer.bus.embedded import EmbeddedBus

    return EmbeddedBus(settings.embedded_bus_path)


def topics(settings: Settings) -> Topics:
    return Topics(
        events=settings.bus.events_topic,
        requests=settings.bus.requests_topic,
        dlq=settings.bus.dlq_topic,
    )


def ensure_topics(bus: Bus, settings: Settings) -> None:
    names = topics(settings)
    bus.ensure_topics({name: settings.bus.partitions for name in (names.events, names.requests, names.dlq)})


def open_store(settings: Settings) -> EventStore:
    if settings.store.backend == "postgres":
        from indexer.store.postgres import PostgresEventStore

        s = settings.store
        datastore = PostgresDatastore(
            s.postgres_dbname,
            s.postgres_host,
            s.postgres_port,
            s.postgres_user,
            s.postgres_password,
            schema=s.postgres_schema,
            pool_size=s.pool_size,
            connect_timeout=10,
        )
        store: EventStore = PostgresEventStore(datastore)
    else:
        from indexer.store.sqlite import SQLiteEventStore
        from eventsourcing.sqlite import SQLiteDatastore

        path = settings.sqlite_store_path
        path.parent.mkdir(parents=True, exist_ok=True)
        store = SQLiteEventStore(SQLiteDatastore(str(path), pool_size=2))
    _create_tables(store, settings.store.backend)
    return store


def _create_tables(store: EventStore, backend: str) -> None:
    """Create tables if missing. Two processes starting on a new store race to create them;
    the loser sees a conflict, and a second attempt finds them in place."""
    for attempt in range(3):
        try:
            store.create_table()  # type: ignore[attr-defined]
            return
        except PersistenceError as exc:
            if attempt == 2:
                raise RetryableError(f"cannot open the {backend} event store: {exc}") from exc
            time.sleep(0.2 * (attempt + 1))


def ingest_config(settings: Settings) -> IngestConfig:
    ingest = settings.ingest
    return IngestConfig(
        consumer_name=ingest.consumer_name,
        topics=topics(settings),
        policy=Policy(trusted_indexers=frozenset(ingest.trusted_indexers)),
        batch_max_events=ingest.batch_max_events,
        poll_timeout_s=ingest.poll_timeout_s,
        max_clock_skew=timedelta(seconds=ingest.max_clock_skew_s),
        hold_timeout=timedelta(seconds=ingest.hold_timeout_s),
    )


def open_web3(settings: Settings) -> Web3:
    """A web3 client for ``chain.rpc_url``; ``inprocess`` is an EVM living in this process
    only (``masa demo``), so its state is gone when the command ends."""
    url = settings.chain.rpc_url
    if url == "inprocess":
        return Web3(EthereumTesterProvider())
    if url.startswith(("http://", "https://")):
        return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": settings.chain.request_timeout_s}))
    raise ConfigurationError(f"chain.rpc_url must be http(s)://... or inprocess, not {url!r}")
