"""The one place that builds adapters from settings: the bus, the event store, ingest, the
chain indexer."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from eth_account.signers.local import LocalAccount
from eventsourcing.persistence import PersistenceError
from eventsourcing.postgres import PostgresDatastore
from web3 import EthereumTesterProvider, Web3

from contracts import load_artifact
from contracts.deploy import Deployment
from indexer.bus.base import COMPACTED, LARGE_RECORDS, Bus
from indexer.chain import FollowConfig, Indexer, IndexerConfig, IndexerStats, LogDecoder, open_rpc
from indexer.chain import Topics as IndexerTopics
from indexer.events import CHAIN_TYPES
from indexer.ingest.batch import Topics
from indexer.ingest.decide import Policy
from indexer.ingest.runner import IngestConfig
from indexer.store.base import EventStore
from masa.app.settings import Settings
from masa.errors import ConfigurationError, RetryableError
from workers.node.config import JobConfig, WorkerConfig

FOLLOWED_CONTRACTS = ("NodeStaking", "RewardsDistributor")


def open_bus(settings: Settings, *, create_topics: bool = True) -> Bus:
    """The configured bus, with the ledger's topics created where missing (``create_topics``
    off only for read-only looks at a bus someone else set up)."""
    bus = _connect_bus(settings)
    if create_topics:
        _ensure_topics(bus, settings)
    return bus


def _connect_bus(settings: Settings) -> Bus:
    if settings.bus.backend == "kafka":
        from indexer.bus.kafka import KafkaBus

        return KafkaBus(
            settings.bus.bootstrap_servers,
            client_id=settings.bus.client_id,
            replication_factor=settings.bus.replication_factor,
            session_timeout_s=settings.bus.session_timeout_s,
        )
    from indexer.bus.embedded import EmbeddedBus

    return EmbeddedBus(settings.embedded_bus_path, session_timeout_s=settings.bus.session_timeout_s)


def topics(settings: Settings) -> Topics:
    return Topics(
        events=settings.bus.events_topic,
        requests=settings.bus.requests_topic,
        dlq=settings.bus.dlq_topic,
    )


def _ensure_topics(bus: Bus, settings: Settings) -> None:
    names = topics(settings)
    bus.ensure_topics(
        {name: settings.bus.partitions for name in (names.events, names.requests, names.dlq)}
    )
    checkpoints = settings.bus.checkpoints_topic
    bus.ensure_topics({checkpoints: 1}, {checkpoints: COMPACTED | LARGE_RECORDS})


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
        from eventsourcing.sqlite import SQLiteDatastore

        from indexer.store.sqlite import SQLiteEventStore

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
            store.create_table()
            return
        except PersistenceError as exc:
            if attempt == 2:
                raise RetryableError(f"cannot open the {backend} event store: {exc}") from exc
            time.sleep(0.2 * (attempt + 1))


def ingest_config(settings: Settings) -> IngestConfig:
    ingest = settings.ingest
    return IngestConfig(
        consumer_name=ingest.consumer_name,
        instance_id=ingest.instance_id,
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
        return Web3(
            Web3.HTTPProvider(url, request_kwargs={"timeout": settings.chain.request_timeout_s})
        )
    raise ConfigurationError(f"chain.rpc_url must be http(s)://... or inprocess, not {url!r}")


def indexer_config(settings: Settings, deployment: Deployment) -> IndexerConfig:
    chain = settings.chain
    follow = FollowConfig(
        finality_depth=chain.finality_depth,
        use_finalized_tag=chain.use_finalized_tag,
        max_block_range=chain.max_block_range,
        target_logs=chain.target_logs_per_step,
    )
    return IndexerConfig(
        name=chain.indexer_name,
        topics=IndexerTopics(settings.bus.events_topic, settings.bus.checkpoints_topic),
        follow=follow,
        start_block=chain.start_block or deployment.start_block,
        poll_interval_s=chain.poll_interval_s,
    )


def run_indexer(
    w3: Web3,
    deployment: Deployment,
    bus: Bus,
    settings: Settings,
    account: LocalAccount,
    *,
    until_head: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[IndexerStats], None] | None = None,
) -> IndexerStats:
    """Follow the deployment's NodeStaking and RewardsDistributor logs into ``bus``, signed
    by ``account`` (which ingest must list in ``ingest.trusted_indexers``)."""
    chain = settings.chain
    rpc = open_rpc(
        w3, timeout_s=chain.request_timeout_s, requests_per_second=chain.requests_per_second
    )
    followed = (deployment.staking.address, deployment.distributor.address)
    decoder = LogDecoder([load_artifact(c).abi for c in FOLLOWED_CONTRACTS], CHAIN_TYPES)
    config = indexer_config(settings, deployment)
    indexer = Indexer(
        rpc, bus, account, decoder, chain_id=deployment.chain_id, contracts=followed, config=config
    )
    return indexer.run(until_head=until_head, should_stop=should_stop, on_progress=on_progress)


def worker_config(settings: Settings) -> WorkerConfig:
    w = settings.worker
    jobs = JobConfig(
        job_timeout_s=w.job_timeout_s,
        blocked_domains=tuple(w.blocked_domains),
        download_timeout_s=w.download_timeout_s,
        download_delay_s=w.download_delay_s,
    )
    return WorkerConfig(
        events_topic=settings.bus.events_topic,
        requests_topic=settings.bus.requests_topic,
        max_clock_skew=timedelta(seconds=settings.ingest.max_clock_skew_s),
        group=w.group,
        concurrency=w.concurrency,
        shutdown_grace_s=w.shutdown_grace_s,
        rebalance_wait_s=w.rebalance_wait_s,
        heartbeat_interval_s=w.heartbeat_interval_s,
        stake_recheck_s=w.stake_recheck_s,
        jobs=jobs,
    )
