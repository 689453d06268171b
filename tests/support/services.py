"""Real PostgreSQL and Apache Kafka servers for the test session and the benchmarks.

Each server is a context manager that owns one child process and one temporary directory.
It is stopped through the PID it started (never by process name), so several test runs on
one machine never touch each other's servers, and its directory is removed on stop unless
``keep=True`` (to read the server log after a failure).

PostgreSQL as root: ``initdb`` and ``postgres`` refuse to run as root, so when the tests
run as root the cluster runs as an unprivileged OS user -- ``MASA_PG_OS_USER``, else
``postgres`` (created by Debian's package), else ``nobody`` -- through
``subprocess.Popen(user=...)``, and its directory is handed to that user. The temporary
directory's parent (``TMPDIR``, default ``/tmp``) must be traversable by that user.

Kafka: the broker's jars come from Maven Central through ``scripts/provision``
(``scripts/kafka/pom.xml`` names the version) into
``${MASA_CACHE:-~/.cache/masa}/kafka-<version>/libs``; ``MASA_KAFKA_LIBS`` overrides it.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import glob
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

with warnings.catch_warnings():
    # kafka-python 3.0 loads its protocol schemas with importlib.resources.read_text,
    # deprecated since Python 3.11; the suite turns warnings into errors. Importing it here,
    # once, also shields test modules that import kafka after this plugin loaded.
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka
    import kafka.errors

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_POM = REPO_ROOT / "scripts" / "kafka" / "pom.xml"
LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


class ServiceUnavailable(RuntimeError):
    """The binaries a service needs are not installed: fixtures skip, or fail when required."""


class ServiceFailed(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""


def free_port() -> int:
    """A port the kernel just saw free; servers retry on the rare race with another user."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _die_with_parent(sig: int) -> Callable[[], None] | None:
    """A preexec hook so a SIGKILLed test run leaves no orphan server behind.

    The kernel signals the child when the thread that forked it exits, so the hook is only
    used from the main thread (a server started from a short-lived thread would die with it).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def set_parent_death_signal() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return set_parent_death_signal


def _port_taken(log_text: str) -> bool:
    """Whether a server died because its port was grabbed between free_port() and bind()."""
    return "Address already in use" in log_text


class _Server:
    """One child process plus one temporary directory, stopped by PID."""

    kind = "server"
    stop_signal = signal.SIGTERM
    stop_timeout = 30.0

    def __init__(self, *, keep: bool = False) -> None:
        self.keep = keep
        self.dir: Path | None = None
        self.start_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The PID of the running server, the only handle used to stop it."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self._dir / "server.log"

    @property
    def _dir(self) -> Path:
        if self.dir is None:
            raise RuntimeError(f"{self.kind} is not started")
        return self.dir

    def start(self) -> None:
        """Start the server and wait until it serves; on any failure nothing is left behind."""
        began = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def _start(self) -> None:
        raise NotImplementedError

    def _retry_stolen_port(self, attempt: Callable[[], None], reset: Callable[[], None]) -> None:
        """Run ``attempt``; when the server died because another process took its port
        between free_port() and bind(), ``reset`` and try again (three times in all)."""
        for tries_left in (2, 1, 0):
            try:
                attempt()
                return
            except ServiceFailed:
                if not tries_left or not _port_taken(self.log_tail()):
                    raise
                self._terminate(signal.SIGKILL)
                reset()

    def stop(self) -> None:
        """Stop the process (signal, wait, then SIGKILL) and remove the directory
        (kept, with ``dir`` still naming it, when ``keep=True``)."""
        try:
            self._terminate(self.stop_signal)
        finally:
            if self.dir is not None and not self.keep:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None

    def _make_dir(self) -> Path:
        self.dir = Path(tempfile.mkdtemp(prefix=f"masa-{self.kind}-"))
        return self.dir

    def _spawn(self, argv: Sequence[str], **popen: Any) -> None:
        """Start the server in its own session, so a Ctrl-C reaches pytest, not the server."""
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(self.stop_signal),
                **popen,
            )

    def _terminate(self, sig: int) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        code = self._proc.returncode if self._proc is not None else None
        raise ServiceFailed(f"{self.kind} exited with {code}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's own log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, RuntimeError):
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            self._check_alive()
            if time.monotonic() > deadline:
                raise ServiceFailed(f"{self.kind} not ready in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def _port_open(self, port: int) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.5):
            return True
        return False


# --------------------------------------------------------------------------- PostgreSQL


def find_postgres_bin() -> Path:
    """The directory holding initdb and postgres: MASA_PG_BIN, pg_config, Debian's layout."""
    candidates = [os.environ.get("MASA_PG_BIN", ""), _pg_config_bindir()]
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for path in [*candidates, *debian]:
        if path and (Path(path) / "initdb").is_file():
            return Path(path)
    raise ServiceUnavailable(
        "PostgreSQL server binaries (initdb) not found; run scripts/provision or set MASA_PG_BIN"
    )


def _pg_config_bindir() -> str:
    if shutil.which("pg_config") is None:
        return ""
    done = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path))


def _pg_os_user() -> pwd.struct_passwd | None:
    """The unprivileged user that runs the cluster when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get("MASA_PG_OS_USER"), "postgres", "nobody"):
        if not name:
            continue
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServiceUnavailable("running as root and no unprivileged user to run PostgreSQL")


@dataclass(frozen=True)
class PgDatabase:
    """Where one database lives; what a test or the application needs to connect."""

    host: str
    port: int
    user: str
    password: str
    dbname: str

    @property
    def dsn(self) -> str:
        """A libpq conninfo string, as psycopg.connect() takes it."""
        return (
            f"host={self.host} port={self.port} user={self.user} "
            f"password={self.password} dbname={self.dbname}"
        )

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"

    def eventsourcing_env(self) -> dict[str, str]:
        """The settings eventsourcing's PostgreSQL persistence module reads."""
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
        }


_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresServer(_Server):
    """A private PostgreSQL cluster: own initdb, random port, TCP on 127.0.0.1 only.

    fsync stays on by default so benchmarks measure a durable store; tests pass
    ``fsync=False`` (a killed server process still keeps what the OS page cache holds).
    TCP clients authenticate with a password (SCRAM), as in production, so code that
    forgets to pass one fails here too; the unix socket in the directory trusts.
    """

    kind = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") waits for every client.
    stop_signal = signal.SIGINT

    def __init__(
        self,
        *,
        fsync: bool = True,
        keep: bool = False,
        user: str = "masa",
        password: str = "masa-test",
        settings: dict[str, str] | None = None,
    ) -> None:
        super().__init__(keep=keep)
        self.fsync = fsync
        self.host = LOOPBACK
        self.port = 0
        self.user = user
        self.password = password
        self.dbname = "postgres"
        self.settings = settings or {}

    @property
    def info(self) -> PgDatabase:
        return self.database(self.dbname)

    @property
    def dsn(self) -> str:
        return self.info.dsn

    def database(self, name: str) -> PgDatabase:
        return PgDatabase(self.host, self.port, self.user, self.password, name)

    def _start(self) -> None:
        """initdb a fresh cluster and start it."""
        bin_dir = find_postgres_bin()
        owner = _pg_os_user()
        self._init_cluster(bin_dir, owner)

        def attempt() -> None:
            self.port = free_port()
            self._spawn(self._server_argv(bin_dir), **_as_user(owner, self._dir))
            self._wait_until(self._accepts_connections, timeout=60)

        self._retry_stolen_port(attempt, reset=lambda: None)

    def _init_cluster(self, bin_dir: Path, owner: pwd.struct_passwd | None) -> None:
        root = self._make_dir()
        (root / "socket").mkdir()
        pwfile = root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if owner is not None:
            for path in (root, root / "socket", pwfile):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        argv = [
            str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", self.user,
            f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
            "-E", "UTF8", "--locale=C", "--no-instructions", "--no-sync",
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, **_as_user(owner, root))
        pwfile.unlink()
        if done.returncode != 0:
            raise ServiceFailed(f"initdb failed:\n{done.stdout}\n{done.stderr}")

    def _server_argv(self, bin_dir: Path) -> list[str]:
        settings = {
            "listen_addresses": LOOPBACK,
            "unix_socket_directories": str(self._dir / "socket"),
            "max_connections": "200",
            "fsync": "on" if self.fsync else "off",
            "synchronous_commit": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
            **self.settings,
        }
        argv = [str(bin_dir / "postgres"), "-D", str(self._dir / "data"), "-p", str(self.port)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def _accepts_connections(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.dsn, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def create_database(self, name: str) -> PgDatabase:
        """A new empty database, so each test starts from nothing."""
        self._admin_sql("CREATE DATABASE {}", name)
        return self.database(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whatever a test left connected to it."""
        self._admin_sql("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)

    def _admin_sql(self, template: str, name: str) -> None:
        import psycopg
        from psycopg import sql

        if not _DB_NAME.fullmatch(name):
            raise ValueError(f"database name must match {_DB_NAME.pattern}: {name!r}")
        statement = sql.SQL(template).format(sql.Identifier(name))
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(statement)


def _as_user(owner: pwd.struct_passwd | None, home: Path) -> dict[str, Any]:
    """Popen arguments that run a command as ``owner`` (no-op when we are not root)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    if owner is None:
        return {"env": env, "cwd": home}
    env.update(HOME=str(home), USER=owner.pw_name, LOGNAME=owner.pw_name)
    return {
        "env": env,
        "cwd": home,
        "user": owner.pw_uid,
        "group": owner.pw_gid,
        "extra_groups": [],
    }


# --------------------------------------------------------------------------- Kafka


def kafka_version() -> str:
    """The Kafka version scripts/provision caches: the one property in scripts/kafka/pom.xml."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", KAFKA_POM.read_text())
    if found is None:
        raise ServiceUnavailable(f"no <kafka.version> in {KAFKA_POM}")
    return found.group(1).strip()


def find_kafka_libs() -> Path:
    """The directory of the broker's jars: MASA_KAFKA_LIBS, else provision's cache."""
    configured = os.environ.get("MASA_KAFKA_LIBS")
    if configured:
        libs = Path(configured)
    else:
        cache = Path(os.environ.get("MASA_CACHE") or Path.home() / ".cache" / "masa")
        libs = cache / f"kafka-{kafka_version()}" / "libs"
    if not list(libs.glob("kafka_2.13-*.jar")):
        raise ServiceUnavailable(f"Apache Kafka jars not found in {libs}; run scripts/provision")
    return libs


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise ServiceUnavailable("java (17 or newer) not found; run scripts/provision")
    return java


def _cluster_id() -> str:
    """A random KRaft cluster id: a UUID in URL-safe base64 without padding, as Kafka's
    Uuid.randomUuid(), which also never starts with '-' (the tool would read an option)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


# The broker logs to stdout, which _spawn sends to server.log: one file to read on failure.
_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.target = SYSTEM_OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.out.ref = out
"""


class KafkaBroker(_Server):
    """A single-node Apache Kafka in KRaft combined mode (broker and controller in one JVM).

    Topics are never auto-created, so a test that forgets to create one fails loudly, as it
    would against a production cluster. Internal topics use replication factor 1.
    ``kill()`` and ``restart()`` keep the data directory, for crash tests.
    """

    kind = "kafka"
    main_class = "kafka.Kafka"
    storage_tool = "kafka.tools.StorageTool"

    def __init__(
        self,
        *,
        partitions: int = 6,
        heap: str = "512m",
        keep: bool = False,
        log_level: str = "INFO",
        settings: dict[str, str] | None = None,
    ) -> None:
        super().__init__(keep=keep)
        self.partitions = partitions
        self.heap = heap
        self.log_level = log_level
        self.settings = settings or {}
        self.port = 0
        self.controller_port = 0
        self.libs: Path | None = None
        self._java = ""
        self._admin: kafka.KafkaAdminClient | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _start(self) -> None:
        """Format fresh storage and start the broker."""
        self.libs = find_kafka_libs()
        self._java = find_java()
        self._make_dir()

        def attempt() -> None:
            self._configure()
            self._launch()

        self._retry_stolen_port(attempt, lambda: shutil.rmtree(self._dir / "data"))

    def stop(self) -> None:
        """Stop and delete the broker. Data about to be deleted needs no orderly shutdown
        (seconds in combined mode), so it is SIGKILLed -- unless ``keep`` asks for the data,
        or the JVM must exit cleanly once to dump the class archive."""
        self._close_admin()
        needs_clean_exit = self.keep or not self._class_archive_ready()
        self._terminate(self.stop_signal if needs_clean_exit else signal.SIGKILL)
        if self.dir is not None:
            self._publish_class_archive()
        super().stop()

    def _class_archive_ready(self) -> bool:
        return self.libs is not None and bool(self._java) and self._class_archive.is_file()

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would; its data directory stays for restart()."""
        self._close_admin()
        self._terminate(signal.SIGKILL)

    def restart(self) -> None:
        """Stop the broker if it runs (gracefully) and start it again on the same data."""
        self._close_admin()
        self._terminate(self.stop_signal)
        began = time.monotonic()
        self._launch()
        self.start_seconds = time.monotonic() - began

    def admin(self) -> kafka.KafkaAdminClient:
        """A shared admin client, reopened after a kill or restart."""
        if self._admin is None:
            self._admin = kafka.KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers,
                client_id="masa-test-admin",
                request_timeout_ms=10_000,
            )
        return self._admin

    def create_topic(
        self, name: str, partitions: int | None = None, config: dict[str, str] | None = None
    ) -> str:
        """Create a topic and wait until every partition has a leader; returns its name."""
        spec = {
            "num_partitions": partitions or self.partitions,
            "replication_factor": 1,
            "configs": config or {},
        }
        self.admin().create_topics({name: spec}, wait_for_metadata=True)
        return name

    def _configure(self) -> None:
        self.port, self.controller_port = free_port(), free_port()
        root = self._dir
        (root / "server.properties").write_text(self._properties())
        (root / "log4j2.properties").write_text(_LOG4J2.format(level=self.log_level))
        self._run_java([self.storage_tool, "format", "-t", _cluster_id(),
                        "-c", str(root / "server.properties")])  # fmt: skip

    def _properties(self) -> str:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{LOOPBACK}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{LOOPBACK}:{self.port},"
            f"CONTROLLER://{LOOPBACK}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self._dir / "data"),
            "num.partitions": str(self.partitions),
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            # fewer internal partitions: the first consumer group join creates them all
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "6",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # a restart after kill() waits for the dead incarnation's session to expire
            # (default 9 s); heartbeats are loopback-local, so a short session is safe
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
            **self.settings,
        }
        return "".join(f"{key}={value}\n" for key, value in props.items())

    @property
    def _libs(self) -> Path:
        if self.libs is None:
            raise RuntimeError("kafka is not started")
        return self.libs

    def _jvm(self, *options: str) -> list[str]:
        return [
            self._java, *options, "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._dir / 'log4j2.properties'}",
            "-cp", f"{self.libs}/*",
        ]  # fmt: skip

    def _broker_jvm(self) -> list[str]:
        """Kafka's own defaults (bin/kafka-server-start.sh) with a smaller heap."""
        heap = f"-Xms{self.heap}", f"-Xmx{self.heap}"
        gc = "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"
        return self._jvm(*heap, *gc, *self._class_archive_options())

    @property
    def _class_archive(self) -> Path:
        """Beside the jars, named after the JVM build: an archive only fits the JVM that
        wrote it, and a new JDK must get its own rather than silently lose the speed-up."""
        java = Path(self._java).resolve()
        build = hashlib.sha256(f"{java}:{java.stat().st_mtime_ns}".encode()).hexdigest()
        return self._libs.parent / f"broker-classes-{build[:12]}.jsa"

    def _class_archive_options(self) -> list[str]:
        """Class-data sharing: a broker maps the classes an earlier one loaded instead of
        parsing ~40 MB of jars again, which takes seconds off each start and restart on
        two busy cores. A stale or foreign archive is ignored by the JVM (-Xshare:auto)."""
        if os.environ.get("MASA_KAFKA_CDS", "1") == "0":
            return []
        if self._class_archive.is_file():
            return [f"-XX:SharedArchiveFile={self._class_archive}"]
        return [f"-XX:ArchiveClassesAtExit={self._dir / 'classes.jsa'}"]

    def _publish_class_archive(self) -> None:
        """Move the archive a cleanly stopped JVM dumped into the cache, atomically, so a
        concurrent run never maps a half-written file."""
        dumped = self._dir / "classes.jsa"
        if not dumped.is_file() or self._class_archive.exists():
            return
        partial = self._class_archive.with_suffix(f".{os.getpid()}.partial")
        with contextlib.suppress(OSError):
            shutil.copyfile(dumped, partial)
            os.replace(partial, self._class_archive)
        partial.unlink(missing_ok=True)

    def _run_java(self, args: list[str]) -> None:
        """Run a short-lived Kafka tool; C1 only and a serial GC start a JVM fastest."""
        tool = self._jvm("-Xmx128m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
        done = subprocess.run([*tool, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ServiceFailed(f"{' '.join(args[:2])} failed:\n{done.stdout}\n{done.stderr}")

    def _launch(self) -> None:
        self._spawn([*self._broker_jvm(), self.main_class, str(self._dir / "server.properties")])
        self._wait_until(lambda: self._port_open(self.port), timeout=60)
        self._wait_until(self._lists_topics, timeout=60)

    def _lists_topics(self) -> bool:
        try:
            self.admin().list_topics()
        except kafka.errors.KafkaError:
            self._close_admin()
            return False
        return True

    def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()
