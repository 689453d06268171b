"""The one settings object: environment variables prefixed ``MASA_`` and an optional TOML file.

Nested fields use ``__`` in the environment (``MASA_STORE__BACKEND=postgres``) and tables in the
TOML file (``[store] backend = "postgres"``). Every default is the embedded one: a SQLite event
store, a SQLite-backed log and an in-process EVM under ``home``, so ``masa demo`` needs no services.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from indexer.events.fields import Address
from indexer.events.specs import DomainRule
from masa.errors import ConfigurationError

CONFIG_FILE_ENV = "MASA_CONFIG"
DEFAULT_CONFIG_FILE = "masa.toml"
#: The TOML file the next ``Settings()`` reads (set by ``load_settings``; see masa.app.config).
TOML_FILE: ContextVar[Path | None] = ContextVar("masa_toml_file", default=None)

# Bounds every value can be used with: no inf or nan, no durations beyond a month, no counts
# beyond what Kafka, PostgreSQL or SQLite's 64-bit integers hold.
MAX_SECONDS = 30 * 24 * 3600
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS)]
Rate = Annotated[float, Field(gt=0, le=1_000_000)]


Partitions = Annotated[int, Field(ge=1, le=10_000)]
Replicas = Annotated[int, Field(ge=1, le=100)]
Connections = Annotated[int, Field(ge=1, le=1_000)]
BatchSize = Annotated[int, Field(ge=1, le=1_000_000)]
BlockCount = Annotated[int, Field(ge=1, le=10_000_000)]
BlockNumber = Annotated[int, Field(ge=0, le=2**63 - 1)]
Port = Annotated[int, Field(ge=1, le=65_535)]


class Section(BaseModel):
    """A settings table: unknown keys and non-finite numbers are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class StoreSettings(Section):
    backend: Literal["sqlite", "postgres"] = Field("sqlite", description="the event store")
    sqlite_path: Path | None = Field(None, description="default: <home>/store.sqlite")
    postgres_host: str = "127.0.0.1"
    postgres_port: Port = 5432
    postgres_dbname: str = "masa"
    postgres_user: str = "masa"
    postgres_password: str = Field("", description="masked by masa config show")
    postgres_schema: str = "public"
    pool_size: Connections = Field(4, description="PostgreSQL connections per process")
    connect_timeout_s: Annotated[float, Field(gt=0, le=300)] = Field(
        10, description="how long one attempt to get a PostgreSQL connection may take"
    )


class BusSettings(Section):
    backend: Literal["embedded", "kafka"] = Field("embedded", description="the event bus")
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka brokers, comma-separated")
    embedded_path: Path | None = Field(None, description="default: <home>/bus.sqlite")
    partitions: Partitions = Field(6, description="partitions of topics this project creates")
    events_topic: str = Field("masa.events", description="every producer's signed events")
    requests_topic: str = Field("masa.requests", description="accepted requests, for workers")
    dlq_topic: str = Field("masa.dlq", description="rejected messages with their reason")
    checkpoints_topic: str = Field(
        "masa.chain.checkpoints", description="chain indexer checkpoints (compacted, 1 partition)"
    )
    results_topic: str = Field(
        "masa.results", description="results for oracle apps, encrypted to each (docs/oracle.md)"
    )
    results_retention_ms: Annotated[int, Field(ge=60_000, le=10 * 365 * 86_400_000)] = Field(
        7 * 24 * 3600 * 1000,
        description="how long the results topic keeps a result (Kafka retention.ms); 7 days",
    )
    client_id: str = "masa"
    replication_factor: Replicas = Field(1, description="of topics this project creates")
    session_timeout_s: float = Field(
        10.0, ge=6, le=300, description="a consumer silent this long leaves its group"
    )
    connect_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="how long one attempt to reach the brokers may take (then retried)",
    )


class IngestSettings(Section):
    consumer_name: str = Field("ingest", description="names the stored offsets and the group")
    instance_id: str | None = Field(
        None,
        description="static group membership: a restarted ingest with the same id takes its"
        " partitions back at once; give each ingest process its own",
    )
    batch_max_events: BatchSize = Field(5000, description="events per store transaction, at most")
    poll_timeout_s: Seconds = Field(0.5, description="longest wait for records per poll")
    max_clock_skew_s: Seconds = Field(300, description="how far in the future occurred_at may be")
    hold_timeout_s: Seconds = Field(
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


class ChainSettings(Section):
    rpc_url: str = Field(
        "inprocess", description='JSON-RPC URL, or "inprocess" for an embedded EVM'
    )
    finality_depth: BlockCount = Field(
        12, description="blocks below the head that are final; deeper reorgs stop the indexer"
    )
    use_finalized_tag: bool = Field(
        True, description="also wait for the node's 'finalized' block where it reports one"
    )
    start_block: BlockNumber = Field(0, description="0: the deployment's first block")
    deployment_file: Path | None = Field(None, description="default: <home>/deployment.json")
    poll_interval_s: Seconds = 1.0
    max_block_range: BlockCount = Field(2000, description="largest eth_getLogs range")
    target_logs_per_step: BlockCount = Field(
        10_000, description="ranges shrink to about this many logs per bus transaction"
    )
    requests_per_second: Rate = Field(25.0, description="rate limit on the RPC provider")
    request_timeout_s: Seconds = 30.0
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


class WorkerSettings(Section):
    keystore: Path | None = Field(None, description="default: <home>/keys/worker.json")
    group: str = Field("workers", description="consumer group the workers share requests in")
    concurrency: Annotated[int, Field(ge=1, le=1024)] = Field(4, description="jobs in hand at once")
    job_timeout_s: Seconds = Field(120, description="a crawl's deadline; an LLM call's")
    shutdown_grace_s: Seconds = Field(
        30, description="on SIGTERM, how long jobs in hand may finish before failing as shutdown"
    )
    rebalance_wait_s: Seconds = Field(
        8, description="how long jobs of a revoked partition may finish before others rerun them"
    )
    heartbeat_interval_s: Seconds = 30
    stake_recheck_s: Seconds = Field(300, description="how often the stake is read again")
    llm_model_path: Path | None = Field(None, description="model folder; unset: no LLM jobs")
    llm_served_model: str | None = Field(None, description="name requests use; default: folder")
    llm_max_model_len: BlockCount = 2048
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
    download_timeout_s: Seconds = 10
    download_delay_s: Seconds = Field(0.25, description="politeness delay per domain")


class ProjectionSettings(Section):
    sqlite_path: Path | None = Field(
        None, description="read models on the embedded default; default: <home>/read.sqlite"
    )
    postgres_schema: str = Field(
        "public", description="schema of the read models when the store is on PostgreSQL"
    )
    batch_size: BatchSize = Field(5000, description="events applied per read-model transaction")
    poll_interval_s: Seconds = Field(0.5, description="wait between polls when caught up")
    max_lag_s: Seconds = Field(
        30, description="projection lag beyond which health reports unhealthy"
    )


class ApiSettings(Section):
    host: str = Field("127.0.0.1", description="where masa serve listens (loopback by default)")
    port: Port = Field(8000, description="masa serve's port")
    reader_user: str = Field(
        "masa_reader",
        description="PostgreSQL role the API connects as (SELECT only: masa db grant-reader)",
    )
    reader_password: str = Field("", description="masked by masa config show")


class SettlementSettings(Section):
    keystore: Path | None = Field(
        None,
        description="the settler's key (EpochClosed, postRoot); default: <home>/keys/settler.json",
    )
    confirmations: Annotated[int, Field(ge=1, le=1_000)] = Field(
        3, description="blocks (its own included) after which a posted root is confirmed"
    )
    replace_after_s: Seconds = Field(
        120, description="a postRoot not mined after this long is replaced with a higher fee"
    )
    fee_bump_percent: int = Field(25, ge=10, le=500, description="fee raise per replacement")
    poll_interval_s: Seconds = Field(2.0, description="wait between checks of masa settle run")
    close_wait_s: Seconds = Field(
        60, description="how long masa settle run waits for its EpochClosed to be stored"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MASA_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
        allow_inf_nan=False,
    )

    home: Path = Field(Path(".masa"), description="data folder of the embedded defaults and keys")
    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"],
        BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
    ] = Field("INFO", description="of masa's logs")
    retry_budget_s: float = Field(
        60,
        ge=0,
        le=MAX_SECONDS,
        description="how long a command keeps retrying a service that fails (backoff from"
        " 0.5 s, doubling to 8 s) before it stops with exit code 75; 0: stop at once",
    )
    store: StoreSettings = StoreSettings()
    bus: BusSettings = BusSettings()
    ingest: IngestSettings = IngestSettings()
    chain: ChainSettings = ChainSettings()
    worker: WorkerSettings = WorkerSettings()
    projections: ProjectionSettings = ProjectionSettings()
    api: ApiSettings = ApiSettings()
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
        toml_file = TOML_FILE.get() or Path(os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))
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


# --- loading: one ConfigurationError naming the setting and its source -------------------------

#: ``MASA_`` variables that are not settings (read by the keys, the vLLM wiring and the tests).
_NOT_SETTINGS = frozenset({"CONFIG", "KEY_PASSWORD", "VLLM_PYTHON", "VLLM_BASE_PYTHON"})
_OPTIONS = {"home": "--home", "log_level": "--log-level"}


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """The settings from the environment, the TOML file (``config_file``, else
    ``$MASA_CONFIG``, else ./masa.toml if present) and ``overrides`` (the root options).

    Refuses, with one ``ConfigurationError`` naming the setting and where it came from: a
    config file that is named but missing, a TOML syntax error (file:line), a ``MASA_`` name
    with ``__`` that names no setting (or a top-level one a typo away from a setting), an
    unknown key in any TOML table, and any value out of its bounds.
    """
    path, data = _read_toml(config_file)
    _refuse_unknown_env(os.environ)
    token = TOML_FILE.set(path)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise _explain(exc, path, data, overrides) from exc
    except SettingsError as exc:
        raise _unparsable(exc) from exc
    finally:
        TOML_FILE.reset(token)


def _read_toml(config_file: Path | None) -> tuple[Path, dict[str, Any]]:
    from_env = os.environ.get(CONFIG_FILE_ENV)
    named = config_file or (Path(from_env) if from_env else None)
    origin = "--config" if config_file else CONFIG_FILE_ENV
    path = named or Path(DEFAULT_CONFIG_FILE)
    if named is not None and not named.is_file():
        what = "is not a file" if named.exists() else "does not exist"
        raise ConfigurationError(f"config file {named} (from {origin}) {what}")
    if not path.is_file():
        return path, {}
    try:
        return path, tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f"{path}:{found[1]}:{found[2]}" if found else str(path)
        reason = str(exc).split(" (at ")[0]
        raise ConfigurationError(f"{where}: TOML syntax error: {reason}") from exc


def _refuse_unknown_env(environ: Mapping[str, str]) -> None:
    for name in environ:
        upper = name.upper()
        if upper.startswith("MASA_") and upper[5:] not in _NOT_SETTINGS:
            problem = _unknown_setting(upper[5:].split("__"))
            if problem is not None:
                raise ConfigurationError(f"unknown setting {name} in the environment{problem}")


def _unknown_setting(parts: list[str]) -> str | None:
    """None if ``parts`` name a setting (or are not meant as one), else a hint."""
    fields = Settings.model_fields
    head = parts[0].lower()
    if len(parts) == 1:
        if head in fields:
            return None
        close = difflib.get_close_matches(head, fields, n=1, cutoff=0.7)
        return f" (did you mean MASA_{close[0].upper()}?)" if close else None
    section = fields.get(head)
    model = section.annotation if section else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return _hint("", head, list(_sections()))
    if len(parts) == 2 and parts[1].lower() in model.model_fields:
        return None
    return _hint(f"{head.upper()}__", parts[1].lower(), list(model.model_fields))


def _sections() -> dict[str, type[BaseModel]]:
    return {
        name: field.annotation
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }


def _hint(prefix: str, name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if close:
        return f" (did you mean MASA_{prefix}{close[0].upper()}?)"
    return "; see 'masa config reference' for every setting"


def _unparsable(exc: SettingsError) -> ConfigurationError:
    found = re.search(r'field "(\w+)"', str(exc))
    prefix = f"MASA_{found[1].upper()}" if found else "MASA_"
    names = sorted(n for n in os.environ if n.upper().startswith(prefix)) or [prefix]
    return ConfigurationError(
        f"cannot parse {' or '.join(names)}: lists and tables are written as JSON,"
        " e.g. MASA_INGEST__TRUSTED_INDEXERS='[\"0x...\"]'"
    )


def _explain(
    exc: ValidationError, path: Path, data: dict[str, Any], overrides: dict[str, Any]
) -> ConfigurationError:
    errors = exc.errors()
    first = errors[0]
    loc = tuple(str(part) for part in first["loc"])
    name = ".".join(loc)
    source = _source(loc, path, data, overrides)
    if first["type"] == "extra_forbidden":
        choices = list(_sections().get(loc[0], Settings).model_fields) if len(loc) > 1 else []
        choices = choices or list(Settings.model_fields)
        close = difflib.get_close_matches(loc[-1], choices, n=1, cutoff=0.6)
        text = f"unknown setting {name}" + (f" (did you mean {close[0]}?)" if close else "")
    else:
        value = repr(first.get("input"))
        value = value if len(value) <= 60 else value[:57] + "..."
        if "password" in name:
            value = "***"
        text = f"invalid setting {name}={value}: {first['msg'].removeprefix('Value error, ')}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ConfigurationError(f"{text} (from {source}){more}")


def _source(
    loc: tuple[str, ...], path: Path, data: dict[str, Any], overrides: dict[str, Any]
) -> str:
    upper = {name.upper(): name for name in os.environ}
    names = ["MASA_" + "__".join(loc[:2]).upper(), "MASA_" + loc[0].upper()]
    for env_name in names:
        if env_name in upper:
            return f"environment variable {upper[env_name]}"
    if loc[0] in overrides and loc[0] in _OPTIONS:
        return f"option {_OPTIONS[loc[0]]}"
    table = data.get(loc[0])
    if loc[0] in data and (len(loc) == 1 or not isinstance(table, dict) or loc[1] in table):
        return f"config file {path}" + (f" [{loc[0]}]" if len(loc) > 1 else "")
    return "the defaults"
