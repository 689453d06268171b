"""The real ``masa`` process against services that are gone, hang or refuse writes: a
``retrying in``/``still waiting`` warning while it tries, then one error line and the
documented exit code; never a traceback, never exit 0 with writes failing."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from indexer.events import make_event
from masa.app.settings import Settings
from masa.app.wiring import open_bus
from tests.support.guide import Seen, assert_matches_row, failure_rows
from tests.support.outages import Finished, StoppablePostgres, processes, wait_for
from tests.support.services import ServiceUnavailable

MASA = str(Path(sys.executable).parent / "masa")
__all__ = ["processes"]  # the fixture, imported
ACCOUNT = Account.from_key(b"\x09" * 32)


def run(
    args: list[str], home: Path, timeout: float = 90, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MASA, *args],
        env={**os.environ, "MASA_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=home,
    )


def finished(args: list[str], home: Path, **env: str) -> Finished:
    done = run(args, home, **env)
    return Finished(list(done.args), done.returncode, done.stdout, done.stderr)


def assert_one_error_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert done.returncode == code, (done.returncode, done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("masa: error: "), done.stderr
    assert sum(": error: " in line for line in done.stderr.splitlines()) == 1, done.stderr
    return last


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send_registrations(home: Path, count: int) -> None:
    bus = open_bus(Settings(home=home))
    producer = bus.producer()
    for n in range(count):
        payload = {"source": f"https://s{n}.example/", "contributor": ACCOUNT.address.lower()}
        message = make_event(ACCOUNT, "DataSourceRegistered", payload)
        producer.send(Settings().bus.events_topic, message.key.encode(), message.value)
    producer.flush()
    producer.close()


def test_postgres_on_a_closed_port_is_retried_then_one_line(tmp_path):
    done = run(
        ["ingest", "--until-idle", "2"],
        tmp_path,
        MASA_STORE__BACKEND="postgres",
        MASA_STORE__POSTGRES_PORT=str(closed_port()),
        MASA_STORE__CONNECT_TIMEOUT_S="0.5",
        MASA_RETRY_BUDGET_S="2",
    )
    last = assert_one_error_line(done, 75)
    assert "retrying in" in done.stderr
    assert "PostgreSQL store at 127.0.0.1" in last and "rerun" in last


@pytest.fixture
def unprivileged() -> Iterator[tuple[list[str], Path]]:
    """A command prefix that runs as a user who cannot write a root-owned file, and a folder
    both may use (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="masa-ro-"))
    folder.chmod(0o777)
    try:
        if os.geteuid() != 0:
            yield [], folder
        elif shutil.which("setpriv"):
            yield ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"], folder
        else:
            pytest.skip("root without setpriv: cannot make a file unwritable")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_an_unwritable_sqlite_store_is_never_exit_0(unprivileged):
    prefix, home = unprivileged
    send_registrations(home, 3)
    store = home / "store.sqlite"
    assert run(["store", "stats"], home).returncode == 0  # creates the store's tables
    for path in home.iterdir():  # the bus stays writable for the other user, the store not
        path.chmod(0o666 if path != store else 0o444)
    done = subprocess.run(
        [*prefix, MASA, "ingest", "--until-idle", "1"],
        env={**os.environ, "MASA_HOME": str(home), "MASA_RETRY_BUDGET_S": "3"},
        capture_output=True,
        text=True,
        timeout=90,
        cwd=home,
    )
    last = assert_one_error_line(done, 75)
    assert "retrying in" in done.stderr
    assert "readonly" in last and "nothing is lost" in last
    store.chmod(0o644)
    again = run(["ingest", "--until-idle", "1", "--json"], home)
    assert again.returncode == 0 and json.loads(again.stdout)["stored"] == 3, again.stderr


def test_sigint_stops_ingest_with_130(tmp_path):
    proc = subprocess.Popen(
        [MASA, "ingest"],
        env={**os.environ, "MASA_HOME": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "store.sqlite").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with a deployment file and an indexer key, for a chain that is not there."""
    from web3 import EthereumTesterProvider, Web3

    from contracts.deploy import DeployParams, deploy_all

    home = tmp_path_factory.mktemp("deployed")
    w3 = Web3(EthereumTesterProvider())
    w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": ACCOUNT.address, "value": 10**20})
    deploy_all(w3, ACCOUNT, DeployParams()).save(home / "deployment.json")
    keystore = Account.encrypt(ACCOUNT.key, "pw", iterations=2**4)
    (home / "keys").mkdir()
    (home / "keys" / "indexer.json").write_text(json.dumps(keystore))
    return home


def test_an_rpc_on_a_closed_port_is_retried_then_one_line(deployed):
    done = run(
        ["index", "--until-head"],
        deployed,
        MASA_KEY_PASSWORD="pw",
        MASA_CHAIN__RPC_URL=f"http://127.0.0.1:{closed_port()}",
        MASA_RETRY_BUDGET_S="1",
    )
    last = assert_one_error_line(done, 75)
    assert "retrying in" in done.stderr
    assert "the chain RPC at http://127.0.0.1" in last and "Connection refused" in last


def test_an_rpc_that_never_answers_says_it_is_waiting(deployed):
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        done = run(
            ["index", "--until-head"],
            deployed,
            MASA_KEY_PASSWORD="pw",
            MASA_CHAIN__RPC_URL=f"http://127.0.0.1:{server.getsockname()[1]}",
            MASA_CHAIN__REQUEST_TIMEOUT_S="1.5",
            MASA_RETRY_BUDGET_S="0",
        )
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()
    assert_one_error_line(done, 75)
    assert "still waiting for the chain RPC" in done.stderr


def test_events_send_keeps_line_separators_and_names_bad_bytes(tmp_path):
    good = make_event(
        ACCOUNT,
        "RequestFailed",
        {"request_id": "2f1c7a3e-9b1d-4d9a-8a0e-3c4b5d6e7f80", "reason": "x", "detail": "a\u2028b"},
    )
    text = json.dumps(json.loads(good.value), ensure_ascii=False).encode()
    (tmp_path / "good.jsonl").write_bytes(text + b"\n")
    sent = run(["events", "send", "good.jsonl", "--json"], tmp_path)
    assert sent.returncode == 0 and json.loads(sent.stdout)["sent"] == 1, sent.stderr
    (tmp_path / "bad.jsonl").write_bytes(text + b"\n\xff\xfe{}\n")
    bad = run(["events", "send", "bad.jsonl"], tmp_path)
    assert_one_error_line(bad, 2)
    assert "line 2: not UTF-8 text" in bad.stderr


def test_a_read_only_home_folder_is_one_line(unprivileged):
    prefix, home = unprivileged
    if not prefix and os.geteuid() == 0:
        pytest.skip("needs an unprivileged user")
    locked = home / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    done = subprocess.run(
        [*prefix, MASA, "store", "stats"],
        env={**os.environ, "MASA_HOME": str(locked / "home"), "MASA_RETRY_BUDGET_S": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=home,
    )
    assert done.returncode in (1, 2, 75), done.stderr
    assert_one_error_line(done, done.returncode)
    assert stat.S_IMODE(locked.stat().st_mode) == 0o555


# --- services lost under running commands, as the guide's failure-mode table says -----------

PG_ROW = (
    "PostgreSQL stopped, restarted or made read-only under a running `masa ingest` or"
    " `masa project run`"
)
KAFKA_ROW = "Kafka stopped under a running `masa ingest` or `masa worker run`"
SEND_ROW = "Kafka lost under `masa events send`"
#: the rows of docs/operator-guide.md's failure-mode table these tests provoke and compare
ROWS = {PG_ROW, KAFKA_ROW, SEND_ROW}


def signed_registrations(count: int, first: int = 0) -> list[tuple[bytes, bytes]]:
    messages = []
    for n in range(first, first + count):
        payload = {"source": f"https://s{n}.example/", "contributor": ACCOUNT.address.lower()}
        message = make_event(ACCOUNT, "DataSourceRegistered", payload)
        messages.append((message.key.encode(), message.value))
    return messages


def produce(settings: Settings, messages: list[tuple[bytes, bytes]]) -> None:
    producer = open_bus(settings).producer()
    for key, value in messages:
        producer.send(settings.bus.events_topic, key, value)
    producer.close()


def registrations_stored(settings: Settings) -> int:
    from masa.app.wiring import open_store

    store = open_store(settings)
    try:
        return store.count_events().get("DataSourceRegistered.v1", 0)
    finally:
        store.close()


def env_of(settings: Settings, **extra: str) -> dict[str, str]:
    """``settings`` as the MASA_ variables of a ``masa`` process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASA_")}
    env |= {"MASA_HOME": str(settings.home), "MASA_RETRY_BUDGET_S": f"{settings.retry_budget_s:g}"}
    for section in ("store", "bus"):
        for name, value in getattr(settings, section).model_dump(mode="json").items():
            if value is not None:
                env[f"MASA_{section.upper()}__{name.upper()}"] = str(value)
    return env | extra


def quiet(done: Finished, code: int) -> Finished:
    """Exit ``code``; no traceback; an error line only as the last line, and only if failed."""
    assert done.code == code, (done.args, done.code, done.err[-4000:])
    assert "Traceback" not in done.output, done.err[-4000:]
    errors = [line for line in done.err.splitlines() if ": error: " in line]
    if code == 0:
        assert errors == [], done.err[-4000:]
    else:
        assert errors == [done.err.strip().splitlines()[-1]], done.err[-4000:]
        assert errors[0].startswith("masa: error: "), done.err[-4000:]
    return done


@pytest.fixture
def private_postgres() -> Iterator[StoppablePostgres]:
    """A PostgreSQL of this test's own: the test stops it, which the session's must not be."""
    from tests.support.fixtures import require

    server = StoppablePostgres()
    try:
        server.start()
    except ServiceUnavailable as error:
        require(str(error))
    try:
        server.create_database("masa")
        yield server
    finally:
        server.stop()


def test_postgres_stopped_and_read_only_under_ingest_and_project_run(
    tmp_path, private_postgres, processes
):
    pg = private_postgres
    db = pg.database("masa")
    settings = Settings(
        home=tmp_path,
        retry_budget_s=10,
        store={"backend": "postgres", "postgres_port": db.port, "postgres_dbname": "masa",
               "postgres_user": db.user, "postgres_password": db.password,
               "connect_timeout_s": 2},
    )  # fmt: skip
    env = env_of(settings)
    assert run(["db", "migrate"], tmp_path, **env).returncode == 0
    ingest = processes.start([MASA, "ingest"], env, tmp_path)
    project = processes.start([MASA, "project", "run"], env, tmp_path)
    produce(settings, signed_registrations(20))
    wait_for(lambda: registrations_stored(settings) == 20, "20 stored")
    wait_for(lambda: projected(settings) == (20, 20), "20 projected")

    # stopped and started again within the budget: both go on, nothing lost or stored twice
    pg.halt()
    produce(settings, signed_registrations(20, first=20))
    wait_for(lambda: "retrying in" in ingest.stderr(), "ingest's retrying warning", 30)
    pg.resume()
    wait_for(lambda: registrations_stored(settings) == 40, "40 stored after the restart")
    wait_for(lambda: projected(settings) == (40, 40), "40 projected after the restart")
    assert ingest.running and project.running

    # read-only: ingest retries; stopped meanwhile, or failing for the budget, it exits 75 with
    # one line; so does project run; never 0 while writes fail
    pg.read_only(True)
    produce(settings, signed_registrations(10, first=40))
    wait_for(lambda: "read-only transaction; retrying in" in ingest.stderr(), "a read-only retry")
    stopped_failing = quiet(ingest.stop(signal.SIGTERM), 75)
    gave_up = quiet(finished(["ingest", "--until-idle", "2"], tmp_path, **env), 75)
    projections = quiet(project.wait(90), 75)
    assert "ingest stopped while writes were failing" in stopped_failing.err.splitlines()[-1]
    assert "40 stored before; nothing is lost" in stopped_failing.err.splitlines()[-1]
    assert "read-only transaction" in gave_up.err.splitlines()[-1]
    assert "projections gave up" in projections.err.splitlines()[-1]

    pg.read_only(False)
    rest = run(["ingest", "--until-idle", "2", "--json"], tmp_path, **env)
    assert rest.returncode == 0 and json.loads(rest.stdout)["stored"] == 10, rest.stderr
    assert registrations_stored(settings) == 50
    row = failure_rows()[PG_ROW]
    runs = [stopped_failing, gave_up, projections]
    assert_matches_row(row, Seen([r.output for r in runs], {r.code for r in runs}))


def projected(settings: Settings) -> tuple[int, int]:
    """(position, store head) of the ledger projection."""
    from masa.app.wiring import open_event_log, open_read_db
    from projections.queries import projection_status

    log, store = open_event_log(settings)
    db = open_read_db(settings)
    try:
        rows = projection_status(db, log.head())
    finally:
        db.close()
        store.close()
    return (rows[0]["position"], rows[0]["head"]) if rows else (-1, -1)


def connected_to(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds an established TCP connection to 127.0.0.1:``port``."""
    try:
        inodes = {
            os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1]
            for fd in os.listdir(f"/proc/{pid}/fd")
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")
        }
        table = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in table:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if state == "01" and int(remote.split(":")[1], 16) == port and inode in inodes:
            return True
    return False


def heartbeats_after(settings: Settings, since_ms: int) -> int:
    """Heartbeats on the events topic that were produced after ``since_ms``."""
    bus = open_bus(settings, create_topics=False)
    count = 0
    for record in bus.read_all(settings.bus.events_topic):
        if b'"Heartbeat"' in record.value and record.timestamp_ms >= since_ms:
            count += 1
    return count


@pytest.fixture
def staked_worker(fresh_anvil, tmp_path) -> Path:
    """A home with contracts on ``fresh_anvil`` and a worker key staked there."""
    from web3 import Web3

    from contracts.client import MasaClient, Role
    from contracts.deploy import WEI_PER_TOKEN, DeployParams, deploy_all

    w3 = Web3(Web3.HTTPProvider(fresh_anvil.rpc_url))
    admin, worker = fresh_anvil.accounts[0], fresh_anvil.accounts[1]
    deployment = deploy_all(w3, admin, DeployParams())
    deployment.save(tmp_path / "deployment.json")
    MasaClient(w3, deployment, admin).mint(worker.address, 1000 * WEI_PER_TOKEN)
    MasaClient(w3, deployment, worker).stake(Role.WORKER, 1000 * WEI_PER_TOKEN)
    keystore = Account.encrypt(worker.key, "pw", iterations=2**4)
    (tmp_path / "worker.json").write_text(json.dumps(keystore))
    return tmp_path


def test_kafka_stopped_under_ingest_events_send_and_worker(
    tmp_path, fresh_kafka_broker, fresh_anvil, staked_worker, processes
):
    kafka = fresh_kafka_broker
    settings = Settings(
        home=tmp_path,
        retry_budget_s=60,
        bus={"backend": "kafka", "bootstrap_servers": kafka.bootstrap_servers, "partitions": 3},
    )
    env = env_of(
        settings,
        MASA_KEY_PASSWORD="pw",
        MASA_CHAIN__RPC_URL=fresh_anvil.rpc_url,
        MASA_WORKER__KEYSTORE="worker.json",
        MASA_WORKER__HEARTBEAT_INTERVAL_S="1",
    )
    ingest = processes.start([MASA, "ingest"], env, tmp_path)
    worker = processes.start([MASA, "worker", "run"], env, tmp_path)
    produce(settings, signed_registrations(20))
    wait_for(lambda: registrations_stored(settings) == 20, "20 stored")
    wait_for(lambda: "serving data" in worker.stderr(), "the worker to serve")
    lines = b"".join(value + b"\n" for _, value in signed_registrations(300, first=20))
    (tmp_path / "more.jsonl").write_bytes(lines)

    # the broker killed while events send talks to it, and while ingest and the worker run
    send = processes.start([MASA, "events", "send", "more.jsonl"], env, tmp_path)
    # (an events send that ended first cannot connect any more: the outage then misses it)
    talking = lambda: connected_to(send.proc.pid, kafka.port) or not send.running  # noqa: E731
    wait_for(talking, "events send to reach Kafka", 60, every=0.02)
    kafka.kill()
    time.sleep(3)
    kafka.restart()
    back = int(time.time() * 1000)
    sent = send.wait(120)
    if sent.code != 0:  # one line; the same file again, its events keep their ids
        quiet(sent, 75)
        sent = quiet(finished(["events", "send", "more.jsonl"], tmp_path, **env), 0)
    assert "sent 300 events" in sent.err, sent.err
    wait_for(lambda: registrations_stored(settings) == 320, "320 stored after the outage")
    wait_for(lambda: heartbeats_after(settings, back) >= 2, "heartbeats after the outage")
    assert ingest.running and worker.running
    survivors = [quiet(worker.stop(signal.SIGTERM), 0), quiet(ingest.stop(signal.SIGTERM), 0)]
    assert registrations_stored(settings) == 320  # nothing lost, nothing stored twice
    for done in survivors:
        kafka_lines = [line for line in done.err.splitlines() if " kafka." in line]
        assert kafka_lines and len(kafka_lines) <= 12, done.err[-4000:]  # held back, 1 per 5 s
    assert_matches_row(failure_rows()[KAFKA_ROW], Seen([d.output for d in survivors], set()))

    # lost for longer than the budget: one line and 75
    kafka.kill()
    longer = {"MASA_RETRY_BUDGET_S": "8", "MASA_BUS__CONNECT_TIMEOUT_S": "6"}
    gave_up = quiet(finished(["events", "send", "more.jsonl"], tmp_path, **env | longer), 75)
    assert f"the Kafka bus at {kafka.bootstrap_servers}" in gave_up.err.splitlines()[-1]
    seen = Seen([send.wait().output, sent.output, gave_up.output], {sent.code, gave_up.code})
    assert_matches_row(failure_rows()[SEND_ROW], seen)
