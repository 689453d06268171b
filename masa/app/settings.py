"""The one settings object: environment variables prefixed ``MASA_`` and an optional TOML file.

Nested fields use ``__`` in the environment (``MASA_STORE__BACKEND=postgres``) and tables in the
TOML file (``[store] backend = "postgres"``). Every default is the embedded one: a SQLite event
store, a SQLite-backed log and an in-process EVM under ``home``, so ``masa demo`` needs no services.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, NonNegativeInt, PositiveFloat, PositiveInt
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from indexer.events.fields import Address
from indexer.events.specs import DomainRule

CONFIG_FILE_ENV = "MASA_CONFIG"
DEFAULT_CONFIG_FILE = "masa.toml"


class StoreSettings(BaseModel):
    backend: Literal["sqlite", "postgres"] = Field("sqlite", description="the event store")
    sqlite_path: Path | None = Field(None, description="default: <home>/store.sqlite")
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_dbname: str = "masa"
    postgres_user: str = "masa"
    postgres_password: str = Field("", description="masked by masa config show")
    postgres_schema: str = "public"
    pool_size: PositiveInt = Field(4, description="PostgreSQL connections per process")


class BusSettings(BaseModel):
    backend: Literal["embedded", "kafka"] = Field("embedded", description="the event bus")
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka brokers, comma-separated")
    embedded_path: Path | None = Field(None, description="default: <home>/bus.sqlite")
    partitions: PositiveInt = Field(6, description="partitions of topics this project creates")
    events_topic: str = Field("masa.events", description="every producer's signed events")
    requests_topic: str = Field("masa.requests", description="accepted requests, for workers")
    dlq_topic: str = Field("masa.dlq", description="rejected messages with their reason")
    checkpoints_topic: str = Field(
        "masa.chain.checkpoints", description="chain indexer checkpoints (compacted, 1 partition)"
    )
    client_id: str = "masa"
    replication_factor: PositiveInt = Field(1, description="of topics this project creates")
    session_timeout_s: float = Field(
        10.0, ge=6, le=300, description="a consumer silent this long leaves its group"
    )


class IngestSettings(BaseModel):
    consumer_name: str = Field("ingest", description="names the stored offsets and the group")
    instance_id: str | None = Field(
        None,
        description="static group membership: a restarted ingest with the same id takes its"
        " partitions back at once; give each ingest process its own",
    )
    batch_max_events: PositiveInt = Field(5000, description="events per store transaction, at most")
    poll_timeout_s: PositiveFloat = Field(0.5, description="longest wait for records per poll")
    max_clock_skew_s: PositiveFloat = Field(
        300, description="how far in the future occurred_at may be"
    )
    hold_timeout_s: PositiveFloat = Field(
        3600, description="how long an event may wait for its request or its producer's stake"
    )
    trusted_indexers: list[Address] = Field(
        default_factory=list, description="addresses allowed to sign chain events"
    )
    trusted_governors: list[Address] = Field(
        default_factory=list, description="addresses allowed to sign ParametersSet"
    )
    trusted_settlers: list[Address] = Field(
        default_factory=list, description="addresses allowed to sign EpochClosed"
    )


class ChainSettings(BaseModel):
    rpc_url: str = Field(
        "inprocess", description='JSON-RPC URL, or "inprocess" for an embedded EVM'
    )
    finality_depth: PositiveInt = Field(
        12, description="blocks below the head that are final; deeper reorgs stop the indexer"
    )
    use_finalized_tag: bool = Field(
        True, description="also wait for the node's 'finalized' block where it reports one"
    )
    start_block: NonNegativeInt = Field(0, description="0: the deployment's first block")
    deployment_file: Path | None = Field(None, description="default: <home>/deployment.json")
    poll_interval_s: PositiveFloat = 1.0
    max_block_range: PositiveInt = Field(2000, description="largest eth_getLogs range")
    target_logs_per_step: PositiveInt = Field(
        10_000, description="ranges shrink to about this many logs per bus transaction"
    )
    requests_per_second: PositiveFloat = Field(25.0, description="rate limit on the RPC provider")
    request_timeout_s: PositiveFloat = 30.0
    indexer_name: str = Field(
        "indexer",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="names the checkpoint; one running indexer per name and chain",
    )
    indexer_keystore: Path | None = Field(None, description="default: <home>/keys/indexer.json")


def _domain_rule(text: str) -> str:
    return str(DomainRule.parse(text))


class WorkerSettings(BaseModel):
    keystore: Path | None = Field(None, description="default: <home>/keys/worker.json")
    group: str = Field("workers", description="consumer group the workers share requests in")
    concurrency: PositiveInt = Field(4, description="jobs in hand at once")
    job_timeout_s: PositiveFloat = Field(120, description="a crawl's deadline; an LLM call's")
    shutdown_grace_s: PositiveFloat = Field(
        30, description="on SIGTERM, how long jobs in hand may finish before failing as shutdown"
    )
    rebalance_wait_s: PositiveFloat = Field(
        8, description="how long jobs of a revoked partition may finish before others rerun them"
    )
    heartbeat_interval_s: PositiveFloat = 30
    stake_recheck_s: PositiveFloat = Field(300, description="how often the stake is read again")
    llm_model_path: Path | None = Field(None, description="model folder; unset: no LLM jobs")
    llm_served_model: str | None = Field(None, description="name requests use; default: folder")
    llm_max_model_len: PositiveInt = 2048
    llm_dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        "float32", description="weights and activations; bfloat16 on a GPU"
    )
    llm_memory_share: float = Field(
        0.3, gt=0, le=1, description="share of GPU memory (CPU build: of RAM) the engine takes"
    )
    vllm_python: Path | None = Field(
        None, description="python of the vLLM venv; default: $MASA_VLLM_PYTHON or the provisioned"
    )
    blocked_domains: list[Annotated[str, AfterValidator(_domain_rule)]] = Field(
        default_factory=list, description="host or host:port rules a crawl never fetches"
    )
    download_timeout_s: PositiveFloat = 10
    download_delay_s: PositiveFloat = Field(0.25, description="politeness delay per domain")


class ProjectionSettings(BaseModel):
    sqlite_path: Path | None = Field(
        None, description="read models on the embedded default; default: <home>/read.sqlite"
    )
    postgres_schema: str = Field(
        "public", description="schema of the read models when the store is on PostgreSQL"
    )
    batch_size: PositiveInt = Field(5000, description="events applied per read-model transaction")
    poll_interval_s: PositiveFloat = Field(0.5, description="wait between polls when caught up")
    max_lag_s: PositiveFloat = Field(
        30, description="projection lag beyond which health reports unhealthy"
    )


class SettlementSettings(BaseModel):
    keystore: Path | None = Field(
        None,
        description="the settler's key (EpochClosed, postRoot); default: <home>/keys/settler.json",
    )
    confirmations: PositiveInt = Field(
        3, description="blocks (its own included) after which a posted root is confirmed"
    )
    replace_after_s: PositiveFloat = Field(
        120, description="a postRoot not mined after this long is replaced with a higher fee"
    )
    fee_bump_percent: int = Field(25, ge=10, le=500, description="fee raise per replacement")
    poll_interval_s: PositiveFloat = Field(
        2.0, description="wait between checks of masa settle run"
    )
    close_wait_s: PositiveFloat = Field(
        60, description="how long masa settle run waits for its EpochClosed to be stored"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MASA_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    home: Path = Field(Path(".masa"), description="data folder of the embedded defaults and keys")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="of masa's logs"
    )
    store: StoreSettings = StoreSettings()
    bus: BusSettings = BusSettings()
    ingest: IngestSettings = IngestSettings()
    chain: ChainSettings = ChainSettings()
    worker: WorkerSettings = WorkerSettings()
    projections: ProjectionSettings = ProjectionSettings()
    settlement: SettlementSettings = SettlementSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file))

    @property
    def sqlite_store_path(self) -> Path:
        return self.store.sqlite_path or self.home / "store.sqlite"

    @property
    def embedded_bus_path(self) -> Path:
        return self.bus.embedded_path or self.home / "bus.sqlite"

    @property
    def read_sqlite_path(self) -> Path:
        return self.projections.sqlite_path or self.home / "read.sqlite"

    @property
    def deployment_path(self) -> Path:
        return self.chain.deployment_file or self.home / "deployment.json"

    @property
    def worker_keystore_path(self) -> Path:
        return self.worker.keystore or self.home / "keys" / "worker.json"

    @property
    def indexer_keystore_path(self) -> Path:
        return self.chain.indexer_keystore or self.home / "keys" / "indexer.json"

    @property
    def settler_keystore_path(self) -> Path:
        return self.settlement.keystore or self.home / "keys" / "settler.json"


def settings_reference() -> str:
    """A Markdown table of every setting, its environment variable and default."""
    rows = ["| environment variable | default | meaning |", "|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name.upper()}__")
                continue
            default = "" if field.default is None else field.default
            if field.default_factory is not None:
                default = field.default_factory()  # type: ignore[call-arg]
            rows.append(
                f"| `MASA_{prefix}{name.upper()}` | `{default}` | {field.description or ''} |"
            )

    walk(Settings, "")
    return "\n".join(rows) + "\n"
