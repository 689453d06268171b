"""The one settings object: environment variables prefixed ``MASA_`` and an optional TOML file.

Nested fields use ``__`` in the environment (``MASA_STORE__BACKEND=postgres``) and tables in the
TOML file (``[store] backend = "postgres"``). Every default is the embedded one: a SQLite event
store, a SQLite-backed log and an in-process EVM under ``home``, so ``masa demo`` needs no services.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, PositiveFloat, PositiveInt
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from indexer.events.fields import Address

CONFIG_FILE_ENV = "MASA_CONFIG"
DEFAULT_CONFIG_FILE = "masa.toml"


class StoreSettings(BaseModel):
    backend: Literal["sqlite", "postgres"] = "sqlite"
    sqlite_path: Path | None = Field(None, description="default: <home>/store.sqlite")
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_dbname: str = "masa"
    postgres_user: str = "masa"
    postgres_password: str = ""
    postgres_schema: str = "public"
    pool_size: PositiveInt = 4


class BusSettings(BaseModel):
    backend: Literal["embedded", "kafka"] = "embedded"
    bootstrap_servers: str = "127.0.0.1:9092"
    embedded_path: Path | None = Field(None, description="default: <home>/bus.sqlite")
    partitions: PositiveInt = Field(6, description="partitions of topics this project creates")
    events_topic: str = "masa.events"
    requests_topic: str = Field("masa.requests", description="accepted requests, for workers")
    dlq_topic: str = "masa.dlq"
    client_id: str = "masa"
    replication_factor: PositiveInt = Field(1, description="of topics this project creates")


class IngestSettings(BaseModel):
    consumer_name: str = Field("ingest", description="names the stored offsets and the group")
    batch_max_events: PositiveInt = 5000
    poll_timeout_s: PositiveFloat = 0.5
    max_clock_skew_s: PositiveFloat = Field(300, description="how far in the future occurred_at may be")
    hold_timeout_s: PositiveFloat = Field(
        3600, description="how long an event may wait for its request or its producer's stake"
    )
    trusted_indexers: list[Address] = Field(
        default_factory=list, description="addresses allowed to sign chain events"
    )


class ChainSettings(BaseModel):
    rpc_url: str = Field("inprocess", description='JSON-RPC URL, or "inprocess" for an embedded EVM')
    finality_depth: PositiveInt = 12
    start_block: int = 0
    deployment_file: Path | None = Field(None, description="default: <home>/deployment.json")
    poll_interval_s: PositiveFloat = 1.0
    max_block_range: PositiveInt = 2000
    requests_per_second: PositiveFloat = 25.0
    request_timeout_s: PositiveFloat = 30.0


class WorkerSettings(BaseModel):
    keystore: Path | None = Field(None, description="default: <home>/keys/worker.json")
    concurrency: PositiveInt = 4
    job_timeout_s: PositiveFloat = 120
    heartbeat_interval_s: PositiveFloat = 30
    llm_model_path: Path | None = None
    blocked_domains: list[str] = Field(default_factory=list)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MASA_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    home: Path = Field(Path(".masa"), description="data folder of the embedded defaults and keys")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    store: StoreSettings = StoreSettings()
    bus: BusSettings = BusSettings()
    ingest: IngestSettings = IngestSettings()
    chain: ChainSettings = ChainSettings()
    worker: WorkerSettings = WorkerSettings()

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
    def deployment_path(self) -> Path:
        return self.chain.deployment_file or self.home / "deployment.json"

    @property
    def worker_keystore_path(self) -> Path:
        return self.worker.keystore or self.home / "keys" / "worker.json"
