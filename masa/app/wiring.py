"""The one place that builds adapters from settings: the bus, the event store, ingest, the
chain indexer."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from eth_account.signers.local import LocalAccount
from eventsourcing.persistence import PersistenceError
from eventsourcing.postgres import PostgresDatastore
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL
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
from indexer.store.log import EventLog
from masa.app.failures import with_retries
from masa.app.settings import Settings
from masa.errors import ConfigurationError, RetryableError
from projections.db import PostgresReadDb, ReadDb, SqliteReadDb
from projections.runner import RunnerConfig
from settlement.posting import Policy as PostingPolicy
from settlement.settler import SettlerConfig
from workers.node.config import JobConfig, WorkerConfig

if TYPE_CHECKING:
    from masa.app.settle_chain import SettlementChain

FOLLOWED_CONTRACTS = ("NodeStaking", "RewardsDistributor")


def open_bus(settings: Settings, *, create_topics: bool = True) -> Bus:
    """The configured bus, with the ledger's topics created where missing (``create_topics``
    off only for read-only looks at a bus someone else set up); a bus that does not answer is
    retried for ``retry_budget_s``."""

    def attempt() -> Bus:
        bus = _connect_bus(settings)
        if create_topics:
            _ensure_topics(bus, settings)
        return bus

    return with_retries(bus_name(settings), attempt, budget_s=settings.retry_budget_s)


def bus_name(settings: Settings) -> str:
    if settings.bus.backend == "kafka":
        return f"the Kafka bus at {settings.bus.bootstrap_servers}"
    return f"the embedded bus at {settings.embedded_bus_path}"


def _connect_bus(settings: Settings) -> Bus:
    if settings.bus.backend == "kafka":
        from indexer.bus.kafka import KafkaBus

        return KafkaBus(
            settings.bus.bootstrap_servers,
            client_id=settings.bus.client_id,
            replication_factor=settings.bus.replication_factor,
            session_timeout_s=settings.bus.session_timeout_s,
            connect_timeout_s=settings.bus.connect_timeout_s,
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
    results = settings.bus.results_topic
    retention = {"retention.ms": str(settings.bus.results_retention_ms)}
    bus.ensure_topics({results: settings.bus.partitions}, {results: retention})


def open_store(settings: Settings) -> EventStore:
    """The configured event store, its tables created where missing; a store that does not
    answer is retried for ``retry_budget_s``."""
    return with_retries(
        store_name(settings), lambda: _open_store(settings), budget_s=settings.retry_budget_s
    )


def store_name(settings: Settings) -> str:
    s = settings.store
    if s.backend == "postgres":
        return f"the PostgreSQL store at {s.postgres_host}:{s.postgres_port}/{s.postgres_dbname}"
    return f"the SQLite store at {settings.sqlite_store_path}"


def _open_store(settings: Settings) -> EventStore:
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
            connect_timeout=s.connect_timeout_s,
        )
        try:
            store: EventStore = PostgresEventStore(datastore)
        except BaseException:
            # closed here, not by the garbage collector in one of the pool's own threads
            # (psycopg_pool then prints "cannot join current thread")
            datastore.close()
            raise
    else:
        from eventsourcing.sqlite import SQLiteDatastore

        from indexer.store.sqlite import SQLiteEventStore

        path = settings.sqlite_store_path
        _make_folder(path.parent)
        store = SQLiteEventStore(SQLiteDatastore(str(path), pool_size=2))
    try:
        _create_tables(store, settings.store.backend)
    except BaseException:
        store.close()
        raise
    return store


def _make_folder(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot create the folder {path}: {exc.strerror}") from exc


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
        policy=Policy(
            trusted_indexers=frozenset(ingest.trusted_indexers),
            trusted_governors=frozenset(ingest.trusted_governors),
            trusted_settlers=frozenset(ingest.trusted_settlers),
        ),
        batch_max_events=ingest.batch_max_events,
        poll_timeout_s=ingest.poll_timeout_s,
        max_clock_skew=timedelta(seconds=ingest.max_clock_skew_s),
        hold_timeout=timedelta(seconds=ingest.hold_timeout_s),
        retry_budget_s=settings.retry_budget_s,
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
        retry_budget_s=settings.retry_budget_s,
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
        results_topic=settings.bus.results_topic,
        group=w.group,
        concurrency=w.concurrency,
        shutdown_grace_s=w.shutdown_grace_s,
        rebalance_wait_s=w.rebalance_wait_s,
        heartbeat_interval_s=w.heartbeat_interval_s,
        stake_recheck_s=w.stake_recheck_s,
        jobs=jobs,
    )


def open_read_db(settings: Settings, *, reader: bool = False) -> ReadDb:
    """The read models' database: the store's PostgreSQL database, or a SQLite file of its own
    beside the embedded store (so projections never contend for the store's write lock).
    ``reader``: as the API connects, unable to write (the reader role; a read-only file)."""
    if settings.store.backend == "postgres":
        s = settings.store
        if reader:
            s = s.model_copy(
                update={
                    "postgres_user": settings.api.reader_user,
                    "postgres_password": settings.api.reader_password,
                }
            )
        conninfo = make_conninfo(
            host=s.postgres_host, port=s.postgres_port, dbname=s.postgres_dbname,
            user=s.postgres_user, password=s.postgres_password,
            options=f"-c search_path={settings.projections.postgres_schema}",
        )  # fmt: skip
        url = URL.create(
            "postgresql+psycopg", username=s.postgres_user, password=s.postgres_password or None,
            host=s.postgres_host, port=s.postgres_port, database=s.postgres_dbname,
            query={"options": f"-csearch_path={settings.projections.postgres_schema}"},
        ).render_as_string(hide_password=False)  # fmt: skip
        where = f"the read models on PostgreSQL at {s.postgres_host}:{s.postgres_port}"
        return PostgresReadDb(conninfo, url, where)
    return SqliteReadDb(settings.read_sqlite_path, read_only=reader)


def open_event_log(settings: Settings) -> tuple[EventLog, EventStore]:
    """The store's read port (and the store, for closing)."""
    store = open_store(settings)
    return EventLog(store), store


def runner_config(settings: Settings) -> RunnerConfig:
    p = settings.projections
    return RunnerConfig(
        batch_size=p.batch_size, poll_interval_s=p.poll_interval_s,
        dlq_topic=settings.bus.dlq_topic,
    )  # fmt: skip


def settler_chain(settings: Settings, account: LocalAccount | None) -> SettlementChain:
    """The settler's chain adapter over the configured deployment (``account`` signs)."""
    from contracts.client import MasaClient
    from masa.app.settle_chain import SettlementChain

    w3 = open_web3(settings)
    return SettlementChain(MasaClient(w3, Deployment.load(settings.deployment_path), account))


def settler_config(settings: Settings) -> SettlerConfig:
    s = settings.settlement
    policy = PostingPolicy(
        confirmations=s.confirmations,
        replace_after_s=s.replace_after_s,
        fee_bump_percent=s.fee_bump_percent,
    )
    return SettlerConfig(policy, close_wait_s=s.close_wait_s, poll_interval_s=s.poll_interval_s)
