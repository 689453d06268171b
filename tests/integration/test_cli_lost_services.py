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

MASA = str(Path(sys.executable).parent / "masa")
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
