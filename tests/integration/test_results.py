"""Results for oracle apps end to end: an oracle submits through ``OracleClient`` → ingest →
the worker serves and publishes its result on the results topic, sealed for the oracle (ECIES
to the key that signed the request, chunked, signed by the worker) → ingest stores the
completion → the app waits for it in the store, fetches, verifies and decrypts the result.

Refusals (another oracle, a tampered, missing or foreign chunk, a digest the ledger did not
store) are checked on the pure functions and through the client on the bus; a 5 MB result
travels in chunks; a worker that dies between computing a result and reporting it serves it
again and the app gets it once (in-process, killed at each step of publishing; and a
SIGKILLed ``masa worker run`` mid-job); the JavaScript example of docs/oracle.md opens a
result the suite produced; ``masa request submit --wait|status|result``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from coincurve import PrivateKey
from eth_account import Account
from eth_account.signers.local import LocalAccount

from indexer.bus.base import MAX_RECORD_BYTES, Bus, Producer
from indexer.events.canonical import canonical_json
from indexer.events.signing import keccak, sign_digest
from indexer.store.log import EventLog
from masa.app.client import OracleClient
from masa.app.keys import save_keystore
from masa.app.wiring import worker_config
from masa.errors import ResultRejected
from tests.integration import test_worker
from tests.integration.conftest import Harness
from tests.integration.test_worker import (
    ARTICLE_FIELDS,
    BOTH,
    EMBEDDED,
    Network,
    Workers,
    articles_spec,
    finished,
    ingesting,
    staked,
    with_worker,
)
from tests.support.site import Site, closed_port, serve_site
from workers.llm.spec import LlmJobSpec, LlmOutput
from workers.node import Worker
from workers.results import (
    CHUNK_BYTES,
    Expected,
    ResultChunk,
    open_result,
    parse_chunk,
    result_digest,
    result_id,
    seal,
)
from workers.scraping import items_json

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "decrypt-result.mjs"


# test_worker's anvil with the contracts, and its `masa worker run` processes
chain = test_worker.chain
workers = test_worker.workers


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with serve_site() as served:
        yield served


class EchoEngine:
    """An LLM engine without vLLM: answers with its prompt, reversed."""

    def generate(self, spec: LlmJobSpec) -> LlmOutput:
        text = f"echo: {(spec.prompt or '')[::-1]} ✓"
        return LlmOutput(text=text, prompt_tokens=3, completion_tokens=5, finish_reason="stop")


def public_key(account: LocalAccount) -> bytes:
    return bytes(PrivateKey(bytes(account.key)).public_key.format(compressed=False))


def client_for(harness: Harness, account: LocalAccount, store: Any) -> OracleClient:
    bus = harness.settings.bus
    return OracleClient(
        harness.bus,
        account,
        EventLog(store),
        events_topic=bus.events_topic,
        results_topic=bus.results_topic,
        poll_s=0.05,
    )


def result_records(harness: Harness, request_id: uuid.UUID) -> list[bytes]:
    key = str(request_id).encode()
    topic = harness.settings.bus.results_topic
    return [r.value for r in harness.bus.read_all(topic) if r.key == key]


def publish(harness: Harness, request_id: uuid.UUID, values: list[bytes]) -> None:
    producer = harness.bus.producer()
    for value in values:
        producer.send(harness.settings.bus.results_topic, str(request_id).encode(), value)
    producer.close()


def run_worker(
    harness: Harness, account: LocalAccount, requests: int, bus: Bus | None = None
) -> Worker:
    worker = Worker(
        bus or harness.bus, worker_config(harness.settings), account, staked, EchoEngine()
    )
    deadline = time.monotonic() + 90
    worker.run(lambda: finished(worker) >= requests or time.monotonic() > deadline)
    return worker


def run_js_example(path: Path, oracle: LocalAccount, expected: Expected) -> bytes:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    env = {
        **os.environ,
        "PRIVATE_KEY": "0x" + bytes(oracle.key).hex(),
        "WORKER": expected.worker,
        "DIGEST": expected.digest,
        "REQUEST_ID": str(expected.request_id),
    }
    done = subprocess.run(
        [node, str(EXAMPLE), str(path)], env=env, capture_output=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


# --- end to end ---------------------------------------------------------------------------


@BOTH
def test_an_oracle_gets_its_data_and_llm_results_verified_against_the_ledger(
    harness: Harness, site: Site, tmp_path: Path
) -> None:
    harness = with_worker(harness)
    net = Network(harness)
    worker_key, other = harness.people.workers[0], harness.people.oracles[1]
    net.stake(worker_key)
    net.send()
    store = harness.store()
    try:
        client = client_for(harness, net.oracle, store)
        data = client.submit("data", articles_spec(site), fee=1000)
        llm = client.submit("llm", {"model": "echo", "prompt": "oracle", "max_tokens": 8}, 2000)
        unreachable = f"http://127.0.0.1:{closed_port()}/"
        failing = client.submit(
            "data", {"start_urls": [unreachable], "fields": ARTICLE_FIELDS}, fee=1000
        )
        harness.ingest()
        worker = run_worker(harness, worker_key, 3)
        harness.ingest()

        done = client.wait(data, timeout_s=10)
        assert (done.status, done.worker) == ("completed", worker.address)
        raw = client.result(data, timeout_s=10)
        assert raw == items_json([site.article(k) for k in (1, 2, 3)])
        assert result_digest(raw) == done.result_digest
        items = json.loads(raw)
        assert client.result(llm, timeout_s=10).decode() == "echo: elcaro ✓"
        with pytest.raises(ResultRejected) as failed:
            client.result(failing, timeout_s=10)
        assert (failed.value.reason, failed.value.detail[:11]) == ("request_failed", "unreachable")

        # another oracle: the client refuses, and its key opens nothing
        with pytest.raises(ResultRejected) as foreign:
            client_for(harness, other, store).result(data, timeout_s=5)
        assert foreign.value.reason == "not_requester"
        expected = Expected(data, done.worker or "", done.result_digest or "")
        records = result_records(harness, data)
        chunks = [parse_chunk(v) for v in records]
        with pytest.raises(ResultRejected) as undecryptable:
            open_result(chunks, bytes(other.key), expected)
        assert undecryptable.value.reason == "undecryptable"
        assert {c.result_id for c in chunks} == {result_id(data, worker.address)}

        # results never enter the event store
        stored = harness.stored()
        assert {r.type for r in stored} <= {
            "Staked",
            "FeesDeposited",
            "ChainFinalized",
            "RequestSubmitted",
            "RequestCompleted",
            "RequestFailed",
            "DataUsed",
            "Heartbeat",
        }
        ciphertext = orjson.loads(records[0])["ciphertext"][:64]
        assert not any(ciphertext in orjson.dumps(r.envelope).decode() for r in stored)
        assert harness.dead_letters() == []

        # the JavaScript example opens the same result, from `kcat`-style lines
        lines = tmp_path / "chunks.jsonl"
        lines.write_text("".join(f"{data} {v.decode()}\n" for v in records))
        assert json.loads(run_js_example(lines, net.oracle, expected)) == items
    finally:
        store.close()


# --- refusals -----------------------------------------------------------------------------


def _sealed(
    worker: LocalAccount, oracle: LocalAccount, result: bytes, chunk_bytes: int = 100
) -> tuple[uuid.UUID, list[ResultChunk], Expected]:
    rid = uuid.uuid4()
    chunks = seal(worker, rid, public_key(oracle), result, chunk_bytes=chunk_bytes)
    return rid, chunks, Expected(rid, worker.address.lower(), result_digest(result))


def _resigned(signer: LocalAccount, value: bytes, **changes: Any) -> bytes:
    """A chunk record with ``changes`` to its header, signed again by ``signer``."""
    header = {k: v for k, v in orjson.loads(value).items() if k != "signature"} | changes
    signature = sign_digest(signer, keccak(canonical_json(header)))
    return orjson.dumps({**header, "signature": signature})


def _reason(chunks: list[Any], key: bytes, expected: Expected) -> str:
    with pytest.raises(ResultRejected) as refused:
        open_result(chunks, key, expected)
    return refused.value.reason


def test_only_the_requesting_oracle_opens_a_result_and_only_a_verified_one() -> None:
    worker, impostor, oracle, other = (Account.create() for _ in range(4))
    result = b'[{"fields":{"title":"A"},"source_url":"http://x/1"}]' * 20
    rid, chunks, expected = _sealed(worker, oracle, result)
    key = bytes(oracle.key)
    assert len(chunks) > 3
    assert open_result(chunks, key, expected) == result
    assert open_result([parse_chunk(c.value) for c in reversed(chunks)], key, expected) == result
    assert _reason(chunks, bytes(other.key), expected) == "undecryptable"

    # the same worker seals the same result again: the same records, byte for byte
    again = seal(worker, rid, public_key(oracle), result, chunk_bytes=100)
    assert [c.value for c in again] == [c.value for c in chunks]

    # a tampered chunk: its signature no longer holds, and the result is incomplete without it
    header = orjson.loads(chunks[1].value)
    forged = base64.b64decode(header["ciphertext"])
    header["ciphertext"] = base64.b64encode(bytes([forged[0] ^ 1]) + forged[1:]).decode()
    with pytest.raises(ResultRejected) as tampered:
        parse_chunk(orjson.dumps(header))
    assert tampered.value.reason == "bad_signature"
    parsed: list[Any] = [chunks[0], tampered.value, *chunks[2:]]
    assert _reason(parsed, key, expected) == "bad_signature"
    assert open_result([*parsed, chunks[1]], key, expected) == result  # forgeries are ignored

    # a missing chunk
    assert _reason(chunks[:2] + chunks[3:], key, expected) == "incomplete"
    assert _reason([], key, expected) == "no_result"

    # chunks signed by a worker that did not close the request (a valid set of its own)
    _, theirs, _ = _sealed(impostor, oracle, result)
    foreign = [parse_chunk(_resigned(impostor, c.value, request_id=str(rid))) for c in theirs]
    assert _reason(foreign, key, expected) == "wrong_worker"
    # ... or claiming to be the closing worker, signed by another key
    claimed = _resigned(impostor, chunks[0].value, worker=expected.worker)
    with pytest.raises(ResultRejected, match="bad_signature"):
        parse_chunk(claimed)

    # a result whose digest is not the stored one: in the header, or inside the ciphertext
    other_result = seal(worker, rid, public_key(oracle), result + b" ", chunk_bytes=100)
    assert _reason(other_result, key, expected) == "digest_mismatch"
    lying = [
        parse_chunk(_resigned(worker, c.value, request_id=str(rid), digest=expected.digest))
        for c in seal(worker, rid, public_key(oracle), result + b" ", chunk_bytes=100)
    ]
    assert _reason(lying, key, expected) == "digest_mismatch"

    # two different chunks with one index, both signed by the closing worker
    conflicting = [*chunks, lying[0]]
    assert _reason(conflicting, key, expected) == "conflicting_chunks"

    # not a chunk at all
    for junk in (b"not json", b"[]", orjson.dumps({"request_id": str(rid)})):
        with pytest.raises(ResultRejected, match="bad_chunk"):
            parse_chunk(junk)


@EMBEDDED
def test_the_client_refuses_a_result_it_cannot_verify_with_the_reason(harness: Harness) -> None:
    worker, impostor = harness.people.workers[:2]
    oracle = harness.people.oracles[0]
    store = harness.store()
    try:
        client = client_for(harness, oracle, store)
        cases: dict[str, list[bytes]] = {}
        rid, chunks, expected = _sealed(worker, oracle, b"x" * 1000)
        values = [c.value for c in chunks]
        header = orjson.loads(values[2]) | {"ciphertext": base64.b64encode(b"evil").decode()}
        cases["bad_signature"] = [*values[:2], orjson.dumps(header), *values[3:]]
        cases["incomplete"] = values[:-1]
        cases["wrong_worker"] = [
            _resigned(impostor, v, worker=impostor.address.lower()) for v in values
        ]
        lying = seal(worker, rid, public_key(oracle), b"y" * 1000, chunk_bytes=100)
        cases["digest_mismatch"] = [
            _resigned(worker, c.value, digest=expected.digest) for c in lying
        ]
        for reason, records in cases.items():
            request = uuid.uuid4()
            moved = [
                _resigned(
                    impostor if reason == "wrong_worker" else worker,
                    v,
                    request_id=str(request),
                    result_id=str(result_id(request, orjson.loads(v)["worker"])),
                )
                for v in records
            ]
            if reason == "bad_signature":  # keep the forgery forged
                moved[2] = orjson.dumps(orjson.loads(records[2]) | {"request_id": str(request)})
            publish(harness, request, moved)
            started = time.monotonic()
            with pytest.raises(ResultRejected) as refused:
                client.read_result(
                    Expected(request, worker.address.lower(), expected.digest), timeout_s=0.5
                )
            assert refused.value.reason == reason, refused.value
            assert time.monotonic() - started < 10
        publish(harness, rid, values)
        assert client.read_result(expected, timeout_s=5) == b"x" * 1000
    finally:
        store.close()


# --- large results ------------------------------------------------------------------------


@BOTH
def test_a_5_mb_result_travels_in_chunks_that_fit_the_bus(harness: Harness) -> None:
    worker, oracle = harness.people.workers[0], harness.people.oracles[0]
    result = os.urandom(5 * 1024 * 1024 + 123)
    rid, chunks, expected = _sealed(worker, oracle, result, chunk_bytes=CHUNK_BYTES)
    assert len(chunks) == 11
    assert max(len(c.value) + len(c.key) for c in chunks) < MAX_RECORD_BYTES
    assert open_result(chunks, bytes(oracle.key), expected) == result
    publish(harness, rid, [c.value for c in chunks])
    store = harness.store()
    try:
        started = time.monotonic()
        got = client_for(harness, oracle, store).read_result(expected, timeout_s=30)
        elapsed = time.monotonic() - started
    finally:
        store.close()
    assert got == result
    assert elapsed < 30


# --- a worker that dies between computing and reporting -------------------------------------


class Killed(BaseException):
    """The process is gone: nothing in the worker catches this."""


class _DyingProducer(Producer):
    def __init__(self, inner: Producer, dies: Any) -> None:
        self._inner, self._dies = inner, dies

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        if self._dies(topic, value):
            raise Killed(topic)
        self._inner.send(topic, key, value)

    def flush(self, timeout_s: float = 30.0) -> None:
        self._inner.flush(timeout_s)

    def close(self) -> None:  # a dead process flushes nothing
        pass


class DyingBus:
    """The harness's bus, whose producers die at the first send ``dies(topic, value)`` names."""

    def __init__(self, bus: Bus, dies: Any) -> None:
        self._bus, self._dies = bus, dies

    def producer(self) -> Producer:
        return _DyingProducer(self._bus.producer(), self._dies)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)


@EMBEDDED
@pytest.mark.parametrize("dies", ["before_the_result", "before_the_completion"])
def test_a_worker_killed_before_reporting_serves_again_and_the_result_arrives_once(
    harness: Harness, site: Site, dies: str
) -> None:
    """Killed after computing, before the result is published (or after the result, before
    the completion): the offset is not committed, the next worker in the group serves the
    request again, and the app gets one verified result. Modelled in-process at the bus
    (the producer dies mid-publish) rather than with a SIGKILLed subprocess."""
    harness = with_worker(harness)
    net = Network(harness)
    worker_key = harness.people.workers[0]
    net.stake(worker_key)
    net.send()
    store = harness.store()
    try:
        client = client_for(harness, net.oracle, store)
        spec = {"start_urls": [site.url("/articles/2")], "max_depth": 0, "fields": ARTICLE_FIELDS}
        rid = client.submit("data", spec, fee=1000)
        harness.ingest()
        results, events = harness.settings.bus.results_topic, harness.settings.bus.events_topic
        if dies == "before_the_result":
            dying = DyingBus(harness.bus, lambda topic, _: topic == results)
        else:
            dying = DyingBus(
                harness.bus, lambda topic, v: topic == events and b"RequestCompleted" in v
            )
        with pytest.raises(Killed):
            run_worker(harness, worker_key, 1, bus=dying)  # type: ignore[arg-type]
        published = result_records(harness, rid)
        assert len(published) == (0 if dies == "before_the_result" else 1)
        harness.ingest()
        assert client.status(rid).status == "pending"

        again = run_worker(harness, worker_key, 1)  # the same key, the same group
        harness.ingest()
        assert again.stats["completed"] == 1
        records = result_records(harness, rid)
        assert len(set(records)) == 1  # a second copy, if any, is the same bytes
        assert len(records) == (1 if dies == "before_the_result" else 2)
        assert json.loads(client.result(rid, timeout_s=10)) == [
            site.article(2).model_dump(mode="json")
        ]
        assert len(net.closed()[str(rid)]) == 1
    finally:
        store.close()


# --- the command line ---------------------------------------------------------------------

MASA = str(Path(sys.executable).parent / "masa")
PASSWORD = "oracle-test-password"


@EMBEDDED
def test_masa_request_submit_waits_for_the_verified_result_and_status_and_result_read_it(
    harness: Harness, site: Site, tmp_path: Path
) -> None:
    harness = with_worker(harness)
    net = Network(harness)
    worker_key, other = harness.people.workers[0], harness.people.oracles[1]
    net.stake(worker_key)
    net.send()
    mine, theirs = tmp_path / "oracle.json", tmp_path / "other.json"
    save_keystore(net.oracle, mine, PASSWORD)
    save_keystore(other, theirs, PASSWORD)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(articles_spec(site, "/articles/3", 0)))
    env = {**os.environ, **harness.env(), "MASA_KEY_PASSWORD": PASSWORD}
    out = tmp_path / "items.json"
    submit = subprocess.Popen(
        [MASA, "request", "submit", "--kind", "data", "--spec", str(spec), "--fee", "1000",
         "--key-file", str(mine), "--wait", "--timeout", "120", "--out", str(out), "--json",
         "--force"],  # no read models here to check the balance in (tests/integration/test_fees.py)
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        harness.ingest(until=lambda: bool(net.stored("RequestSubmitted")))
        run_worker(harness, worker_key, 1)
        harness.ingest()
        stdout, stderr = submit.communicate(timeout=120)
    finally:
        submit.kill()
    assert submit.returncode == 0, stderr
    report = json.loads(stdout)
    expected = items_json([site.article(3)])
    assert out.read_bytes() == expected
    assert report["status"] == "completed" and report["result_bytes"] == len(expected)
    rid = report["request_id"]

    def masa(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([MASA, "request", *args], env=env, capture_output=True, text=True)

    status = masa("status", rid, "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) | {"event_id": None} == {
        "request_id": rid,
        "status": "completed",
        "oracle": net.oracle.address.lower(),
        "worker": worker_key.address.lower(),
        "result_digest": result_digest(expected),
        "units": 1,
        "event_id": None,
    }
    again = masa("result", rid, "--key-file", str(mine), "--timeout", "10")
    assert (again.returncode, again.stdout.encode()) == (0, expected), again.stderr
    refused = masa("result", rid, "--key-file", str(theirs), "--timeout", "10")
    assert refused.returncode == 1
    assert refused.stderr.startswith("masa: error: not_requester: "), refused.stderr


@EMBEDDED
def test_a_sigkilled_worker_process_serves_again_and_the_result_arrives_once(
    harness: Harness, workers: Workers, site: Site
) -> None:
    """``masa worker run`` SIGKILLed while its job computes: nothing was published; the same
    key restarted serves the request again and the app gets one verified result."""
    harness = workers.harness  # with the workers' settings
    net = Network(harness)
    [(keystore, _)] = workers.staked(net, "phoenix")
    net.send()
    store = harness.store()
    try:
        client = client_for(harness, net.oracle, store)
        slow = {"start_urls": [site.url("/slow")], "max_depth": 0, "fields": ARTICLE_FIELDS}
        rid = client.submit("data", slow, fee=1000)
        with ingesting(harness):
            first = workers.start(keystore, download_timeout_s=10.0)
            first.wait_for(f"serving data request {rid}")
            first.kill()  # SIGKILL, mid-crawl (the page answers after 3 s)
            assert result_records(harness, rid) == []
            second = workers.start(keystore, download_timeout_s=10.0)
            done = client.wait(rid, timeout_s=120)
            assert second.stop() == 0, second.output()
        assert done.status == "completed"
        records = result_records(harness, rid)
        assert len(records) == 1
        [item] = json.loads(client.result(rid, timeout_s=10))
        assert (item["source_url"], item["fields"]["title"]) == (site.url("/slow"), "Slow")
        assert len(net.closed()[str(rid)]) == 1
    finally:
        store.close()
