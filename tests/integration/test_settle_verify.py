"""Invariants 4 and 9 end to end: a store filled by real ingest (embedded bus, SQLite) with
three closed epochs; each epoch's bundle recomputes bit for bit in a fresh interpreter that
knows nothing of our store, and any tampering fails with its reason; ``explain`` adds up to
the statement and names the events; ``masa settle verify`` agrees with roots posted on a real
chain (anvil) and catches a stored event changed behind ingest's back."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from typer.testing import CliRunner, Result
from web3 import Web3

from contracts.client import MasaClient
from contracts.deploy import DeployParams, deploy_all
from indexer.events import Role, SignedMessage, make_event
from indexer.events.fields import format_timestamp
from indexer.store.log import LoggedEvent
from masa.app.settings import Settings
from masa.app.synthetic import Participants
from masa.errors import ConfigurationError
from settlement.bundle import MANIFEST, EpochNotClosed, export_bundle, verify_bundle
from settlement.compute import Settled, settle_all
from tests.integration.conftest import Harness

MASA = str(Path(sys.executable).parent / "masa")
CHAIN_ID, CONTRACT = 31337, "0x" + "5a" * 20
EPOCH_S, INTERVAL_S = 600, 60
TOKEN = 10**18


@dataclass
class Ledger:
    """The store and what the test knows about it."""

    harness: Harness
    people: Participants
    events: list[LoggedEvent]
    settled: dict[int, Settled]
    ids: dict[str, str]  # label -> stored event id

    def masa(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [MASA, *args],
            env={**os.environ, **(env or self.harness.env())},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        """The same command in this process (``masa`` takes seconds to import on a busy box)."""
        from masa.app.cli import app, commands  # noqa: F401

        return CliRunner().invoke(app, list(args), env=env or self.harness.env())


class Producer:
    """Signed events at chosen times, with chain logs of a fake NodeStaking/Distributor."""

    def __init__(self, people: Participants, genesis: datetime) -> None:
        self.people, self.genesis = people, genesis
        self.block = 0
        self.seq: dict[str, int] = {}
        self.ids: dict[str, str] = {}

    def at(self, seconds: float) -> datetime:
        return self.genesis + timedelta(seconds=seconds)

    def event(
        self, account: LocalAccount, type_name: str, payload: dict, at: float, label: str = ""
    ) -> SignedMessage:
        message = make_event(account, type_name, payload, occurred_at=self.at(at))
        if label:
            self.ids[label] = str(message.event_id)
        return message

    def chain(self, type_name: str, payload: dict, at: float, label: str = "") -> SignedMessage:
        self.block += 1
        log = {
            "chain_id": CHAIN_ID, "contract": CONTRACT, "block_number": self.block,
            "block_hash": "0x" + keccak(f"block:{self.block}".encode()).hex(),
            "tx_hash": "0x" + keccak(f"tx:{self.block}".encode()).hex(), "log_index": 0,
        }  # fmt: skip
        return self.event(self.people.indexer, type_name, {"log": log, **payload}, at, label)

    def finalized(self, at: float) -> SignedMessage:
        payload = {
            "chain_id": CHAIN_ID, "block_number": self.block,
            "block_hash": "0x" + keccak(f"block:{self.block}".encode()).hex(),
            "log_count": self.block, "contracts": [CONTRACT],
        }  # fmt: skip
        return self.event(self.people.indexer, "ChainFinalized", payload, at)

    def parameters(self, effective: int, emission: int, p_bps: int, d_bps: int) -> SignedMessage:
        assert self.people.governor is not None
        payload = {
            "effective_epoch": effective, "genesis": format_timestamp(self.genesis),
            "epoch_length_s": EPOCH_S, "heartbeat_interval_s": INTERVAL_S, "grace_s": 5,
            "emission_per_epoch": str(emission), "stake_cap": str(1_000 * TOKEN),
            "min_uptime_ppm": 300_000, "protocol_share_bps": p_bps, "data_share_bps": d_bps,
            "treasury": self.treasury,
        }  # fmt: skip
        return self.event(self.people.governor, "ParametersSet", payload, -100 + effective)

    @property
    def treasury(self) -> str:
        return "0x" + "7e" * 20

    def heartbeats(self, worker: LocalAccount, start: float, end: float) -> list[SignedMessage]:
        out = []
        for t in range(int(start), int(end), INTERVAL_S):
            self.seq[worker.address] = self.seq.get(worker.address, 0) + 1
            payload = {"seq": self.seq[worker.address], "capabilities": ["data"]}
            out.append(self.event(worker, "Heartbeat", payload, t))
        return out

    def submit(self, name: str, fee: int, at: float) -> SignedMessage:
        request_id = str(_uuid(name))
        spec = {
            "start_urls": ["https://data0.example.org/"],
            "max_depth": 1,
            "fields": {"title": {"css": "title"}},
        }
        payload = {"request_id": request_id, "kind": "data", "spec": spec, "fee": str(fee)}
        return self.event(self.people.oracles[0], "RequestSubmitted", payload, at, f"{name}:sub")

    def complete(
        self, name: str, worker: LocalAccount, at: float, uses: list[tuple[int, int]]
    ) -> list[SignedMessage]:
        request_id = str(_uuid(name))
        digest = "0x" + keccak(name.encode()).hex()
        done = {"request_id": request_id, "result_digest": digest, "units": 10}
        out = [self.event(worker, "RequestCompleted", done, at, f"{name}:done")]
        if uses:
            used = [
                {"source": _source(c), "contributor": self.people.contributors[c].address,
                 "units": units}
                for c, units in uses
            ]  # fmt: skip
            payload = {"request_id": request_id, "uses": used}
            out.append(self.event(worker, "DataUsed", payload, at + 1, f"{name}:used"))
        return out

    def fail(self, name: str, worker: LocalAccount, at: float) -> SignedMessage:
        payload = {"request_id": str(_uuid(name)), "reason": "timeout"}
        return self.event(worker, "RequestFailed", payload, at, f"{name}:failed")

    def close(self, epoch: int, cutoff: int, at: float) -> SignedMessage:
        assert self.people.settler is not None
        payload = {"epoch": epoch, "cutoff_position": cutoff, "finalized_block": self.block}
        return self.event(self.people.settler, "EpochClosed", payload, at, f"close:{epoch}")


def _uuid(name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"masa-test-request:{name}")


def _source(contributor: int) -> str:
    return f"https://data{contributor}.example.org/"


def build_ledger(home: Path) -> Ledger:
    people = Participants.from_seed(zlib.crc32(b"settle-verify"), workers=2, oracles=1)
    assert people.governor is not None and people.settler is not None
    settings = Settings(
        home=home,
        ingest={
            "trusted_indexers": [people.indexer.address.lower()],
            "trusted_governors": [people.governor.address.lower()],
            "trusted_settlers": [people.settler.address.lower()],
            "poll_timeout_s": 0.1,
        },
        bus={"backend": "embedded", "partitions": 2},
        store={"backend": "sqlite"},
    )
    harness = Harness(settings, people)
    # Now is 5 minutes into epoch 2: epochs 0 and 1 are past, epoch 2 is open.
    now = datetime.now(UTC).replace(microsecond=0)
    p = Producer(people, now - timedelta(seconds=2 * EPOCH_S + 300))
    w0, w1 = people.workers
    oracle = people.oracles[0]

    def run(messages: list[SignedMessage]) -> int:
        harness.send(messages)
        harness.ingest(idle_s=0.6)
        store = harness.store()
        try:
            return store.max_notification_id() or 0
        finally:
            store.close()

    # setup: parameters, stakes and a deposit (final), sources
    run(
        [
            p.parameters(0, 1_000 * TOKEN, 500, 2_000),
            p.chain("Staked", _stake(w0, 1, 1_000 * TOKEN), -60, "stake:w0"),
            p.chain("Staked", _stake(w1, 1, 400 * TOKEN), -60, "stake:w1"),
            p.chain("Staked", _stake(oracle, 2, 1_000 * TOKEN), -60),
            p.chain("FeesDeposited", _deposit(oracle, 50 * TOKEN), -59),
            p.finalized(-50),
            *(
                p.event(c, "DataSourceRegistered", {"source": _source(i), "contributor": c.address},
                        -40)
                for i, c in enumerate(people.contributors)
            ),
        ]
    )  # fmt: skip
    # epoch 0: w0 up the whole epoch, w1 about 60 %; two paid requests, one failed
    head = run(
        [
            *p.heartbeats(w0, 0, 600),
            *p.heartbeats(w1, 0, 300),
            p.submit("r1", 3 * TOKEN, 100),
            *p.complete("r1", w0, 110, [(0, 3), (1, 1)]),
            p.submit("r2", 2 * TOKEN + 7, 200),
            *p.complete("r2", w1, 210, [(1, 5)]),
            p.submit("r3", TOKEN, 250),
            p.fail("r3", w1, 260),
        ]
    )
    head = run([p.close(0, head, 606)])
    # epoch 1: a late heartbeat for epoch 0, the parameters change from epoch 2 on, and r5
    # submitted (completed only after the epoch closed)
    head = run(
        [
            *p.heartbeats(w1, 590, 595),  # occurred in epoch 0, after its close: late
            *p.heartbeats(w0, 600, 1200),
            *p.heartbeats(w1, 600, 1200),
            p.parameters(2, 2_000 * TOKEN, 1_000, 3_000),
            p.submit("r4", 5 * TOKEN, 700),
            *p.complete("r4", w1, 705, []),
            p.submit("r5", 4 * TOKEN, 900),
        ]
    )
    head = run([p.close(1, head, 1206)])
    # epoch 2: r5's completion occurred in epoch 1 but is ingested after its close: it counts
    # in epoch 2, the epoch open at its ingestion
    head = run(
        [
            *p.complete("r5", w0, 950, [(0, 2)]),
            *p.heartbeats(w0, 1200, 1440),
            p.submit("r6", TOKEN, 1300),
            *p.complete("r6", w0, 1310, [(2, 4)]),
        ]
    )
    run([p.close(2, head, 1450)])
    assert harness.dead_letters() == []
    events = harness.stored()
    settled = {s.epoch: s for s in settle_all(events)}
    return Ledger(harness, people, events, settled, p.ids)


def _stake(node: LocalAccount, role: int, amount: int) -> dict[str, Any]:
    return {"node": node.address, "role": role, "amount": str(amount), "new_stake": str(amount)}


def _deposit(oracle: LocalAccount, amount: int) -> dict[str, Any]:
    return {"oracle": oracle.address, "amount": str(amount), "deposited": str(amount),
            "new_total_fees_deposited": str(amount)}  # fmt: skip


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    return build_ledger(tmp_path_factory.mktemp("settle-verify"))


@pytest.fixture(scope="module")
def bundles(ledger: Ledger, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("bundles")
    i = ledger.harness.settings.ingest
    trusted = {
        Role.INDEXER: i.trusted_indexers,
        Role.GOVERNOR: i.trusted_governors,
        Role.SETTLER: i.trusted_settlers,
    }
    return {
        e: export_bundle(iter(ledger.events), e, root / f"epoch-{e}", trusted).directory
        for e in (0, 1, 2)
    }


def outsider(directory: Path, *extra: str) -> subprocess.CompletedProcess:
    """The standalone verifier in a fresh interpreter, with no MASA_ settings, from elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASA_")}
    return subprocess.run(
        [sys.executable, "-m", "settlement.verify_bundle", str(directory), *extra],
        env=env, cwd=directory, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


# --- the store holds what the scenario says ---------------------------------------------------


def test_three_epochs_settle_with_fees_emissions_and_the_late_completion(ledger: Ledger) -> None:
    assert sorted(ledger.settled) == [0, 1, 2]
    s0, s1, s2 = (ledger.settled[e] for e in (0, 1, 2))
    w0, w1 = (w.address.lower() for w in ledger.people.workers)
    c0, c1, c2 = (c.address.lower() for c in ledger.people.contributors)
    assert s0.statement.total_earned == 1_000 * TOKEN + 3 * TOKEN + 2 * TOKEN + 7
    assert {r.request_id for r in s0.inputs.requests} == {str(_uuid("r1")), str(_uuid("r2"))}
    assert s1.statement.total_earned == 1_000 * TOKEN + 5 * TOKEN
    # the parameters changed from epoch 2; r5 completed late and counts in epoch 2
    assert s2.inputs.parameters.emission == 2_000 * TOKEN
    assert s2.inputs.parameters.protocol_share_bps == 1_000
    assert {r.request_id for r in s2.inputs.requests} == {str(_uuid("r5")), str(_uuid("r6"))}
    assert s2.statement.total_earned == 2_000 * TOKEN + 4 * TOKEN + TOKEN
    for address in (w0, w1, c0, c1):
        assert s0.statement.line(address) is not None
        assert s0.statement.line(address).earned > 0  # type: ignore[union-attr]
    assert s2.statement.line(c2).earned == TOKEN * 3_000 // 10_000  # type: ignore[union-attr]
    assert ledger.settled[2].statement.line(w1).earned == 0  # type: ignore[union-attr]  # no beats


# --- bundles ----------------------------------------------------------------------------------


def test_every_bundle_recomputes_bit_for_bit_in_a_fresh_interpreter(
    ledger: Ledger, bundles: dict[int, Path]
) -> None:
    for epoch, directory in bundles.items():
        settled = ledger.settled[epoch]
        lines = (directory / "events.jsonl").read_bytes().splitlines()
        assert len(lines) == sum(e.position <= settled.close_position for e in ledger.events)
        assert orjson.loads(lines[-1])["envelope"]["id"] == ledger.ids[f"close:{epoch}"]
        assert (directory / "statement.json").read_bytes() == settled.statement.canonical_bytes()
        manifest = json.loads((directory / MANIFEST).read_text())
        assert manifest["chain_epoch"] == epoch + 1
        assert manifest["root"] == settled.statement.root
        done = outsider(directory, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        assert report["recomputed_root"] == settled.statement.root
        assert report["recomputed_statement_hash"] == settled.statement.statement_hash
        assert report["events"] == len(lines)
    line = outsider(bundles[2])
    assert line.returncode == 0 and line.stdout.startswith("bundle ok: epoch 2 (chain epoch 3)")
    assert line.stdout.count("\n") == 1


def test_the_verifier_imports_neither_the_store_nor_the_settings(bundles: dict[int, Path]) -> None:
    code = (
        "import sys; from settlement.verify_bundle import main; rc = main([sys.argv[1]]); "
        "bad = [m for m in sys.modules if m.startswith(('masa.app', 'eventsourcing', "
        "'indexer.store.sqlite', 'indexer.store.postgres', 'indexer.ingest', 'psycopg', "
        "'sqlalchemy'))]; print(bad); sys.exit(rc or bool(bad))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(bundles[0])], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("[]")


def test_cli_export_and_verify_bundle_match_the_library(ledger: Ledger, tmp_path: Path) -> None:
    directory = tmp_path / "bundle-1"
    done = ledger.masa("settle", "export", "--epoch", "1", str(directory), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["root"] == ledger.settled[1].statement.root
    checked = ledger.masa("settle", "verify", "--bundle", str(directory))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("bundle ok: epoch 1")
    assert "names no trusted keys" not in checked.stdout
    assert json.loads((directory / MANIFEST).read_text())["trusted"]["governor"] == [
        ledger.people.governor.address.lower()  # type: ignore[union-attr]
    ]
    taken = ledger.cli("settle", "export", "--epoch", "1", str(directory))
    assert isinstance(taken.exception, ConfigurationError)
    assert ledger.cli("settle", "verify").exit_code == 2
    assert ledger.cli("settle", "verify", "--all", "--bundle", str(directory)).exit_code == 2
    (directory / "tree.json").write_text("null\n")
    broken = ledger.cli("settle", "verify", "--bundle", str(directory))
    assert broken.exit_code == 1
    assert broken.stdout.startswith("bundle FAILED: tree.json: sha256 ")
    missing = ledger.cli("settle", "export", "--epoch", "7", str(tmp_path / "none"))
    assert isinstance(missing.exception, EpochNotClosed)
    assert "epoch 7 is not closed" in str(missing.exception)


def _copy(bundle: Path, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / name))


def _rewrite(directory: Path, name: str, data: bytes, *, fix_manifest: bool = True) -> None:
    """Replace a file, and (as a careful forger would) its hash in the manifest."""
    (directory / name).write_bytes(data)
    if fix_manifest:
        manifest = json.loads((directory / MANIFEST).read_text())
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        (directory / MANIFEST).write_text(json.dumps(manifest))


def _lines(directory: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in (directory / "events.jsonl").read_bytes().splitlines()]


def _dump(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(x, option=orjson.OPT_SORT_KEYS) + b"\n" for x in lines)


def _failed(directory: Path) -> tuple[str, list[str]]:
    done = outsider(directory)
    assert done.returncode == 1, done.stdout
    assert done.stdout.startswith("bundle FAILED: ") and done.stdout.count("\n") == 1
    return done.stdout, verify_bundle(directory).reasons


def test_a_changed_amount_breaks_its_signature(
    ledger: Ledger, bundles: dict[int, Path], tmp_path: Path
) -> None:
    forged = _copy(bundles[0], tmp_path, "forged")
    lines = _lines(forged)
    target = next(x for x in lines if x["envelope"]["id"] == ledger.ids["r1:sub"])
    target["envelope"]["payload"]["fee"] = str(30 * TOKEN)
    _rewrite(forged, "events.jsonl", _dump(lines))
    line, reasons = _failed(forged)
    assert "bad_signature" in line and ledger.ids["r1:sub"] in line
    # without fixing the manifest, the hash says so first
    careless = _copy(bundles[0], tmp_path, "careless")
    _rewrite(careless, "events.jsonl", _dump(lines), fix_manifest=False)
    line, reasons = _failed(careless)
    assert line.startswith("bundle FAILED: events.jsonl: sha256 ")
    assert any("bad_signature" in r for r in reasons)


def test_parameters_re_signed_by_an_untrusted_key_fail(
    bundles: dict[int, Path], tmp_path: Path
) -> None:
    forged = _copy(bundles[0], tmp_path, "governed")
    lines = _lines(forged)
    target = next(x for x in lines if x["envelope"]["type"] == "ParametersSet")
    envelope = target["envelope"]
    payload = {**envelope["payload"], "emission_per_epoch": str(10**9 * TOKEN)}
    message = make_event(
        Account.create(), "ParametersSet", payload, event_id=uuid.UUID(envelope["id"]),
        occurred_at=datetime.fromisoformat(envelope["occurred_at"]),
    )  # fmt: skip
    target["envelope"] = orjson.loads(message.value)
    _rewrite(forged, "events.jsonl", _dump(lines))
    line, _ = _failed(forged)
    assert "ParametersSet by " in line and "not a trusted governor of the manifest" in line


def test_a_removed_event_gives_another_root(
    ledger: Ledger, bundles: dict[int, Path], tmp_path: Path
) -> None:
    trimmed = _copy(bundles[0], tmp_path, "trimmed")
    lines = [x for x in _lines(trimmed) if x["envelope"]["id"] != ledger.ids["r1:used"]]
    _rewrite(trimmed, "events.jsonl", _dump(lines))
    line, reasons = _failed(trimmed)
    assert "differs from the statement recomputed" in line
    assert any(r.startswith("root recomputed from the events is ") for r in reasons)


def test_a_tampered_manifest_or_statement_fails(bundles: dict[int, Path], tmp_path: Path) -> None:
    lied = _copy(bundles[1], tmp_path, "lied")
    manifest = json.loads((lied / MANIFEST).read_text())
    manifest["root"] = "0x" + "11" * 32
    (lied / MANIFEST).write_text(json.dumps(manifest))
    line, _ = _failed(lied)
    assert f"the manifest says 0x{'11' * 32}" in line
    inflated = _copy(bundles[1], tmp_path, "inflated")
    statement = json.loads((inflated / "statement.json").read_bytes())
    statement["lines"][0]["cumulative"] = str(int(statement["lines"][0]["cumulative"]) + 1)
    _rewrite(inflated, "statement.json", json.dumps(statement).encode())
    line, _ = _failed(inflated)
    assert "statement.json differs from the statement recomputed from the events" in line
    broken = _copy(bundles[1], tmp_path, "broken")
    (broken / MANIFEST).write_text("{")
    line, _ = _failed(broken)
    assert "manifest.json is not JSON" in line


# --- explain ----------------------------------------------------------------------------------


def test_explain_adds_up_and_names_the_events(ledger: Ledger) -> None:
    w0 = ledger.people.workers[0].address
    c1 = ledger.people.contributors[1].address
    stored = {str(e.event_id) for e in ledger.events}
    for address, expected in ((w0, ("r1:done",)), (c1, ("r1:used", "r2:used"))):
        done = ledger.cli("settle", "explain", address, "--epoch", "0", "--json")
        assert done.exit_code == 0, done.output
        explained = json.loads(done.stdout)
        line = ledger.settled[0].statement.line(address.lower())
        assert line is not None
        assert sum(int(x["amount"]) for x in explained["lines"]) == line.earned
        assert int(explained["earned"]) == line.earned
        assert int(explained["cumulative"]) == line.cumulative
        named = {i for x in explained["lines"] for i in x["event_ids"]}
        assert named <= stored
        assert {ledger.ids[label] for label in expected} <= named
        assert all(x["terms"] for x in explained["lines"])
    text = ledger.masa("settle", "explain", c1, "--epoch", "0")
    assert (
        text.returncode == 0 and "data_fee" in text.stdout and ledger.ids["r2:used"] in text.stdout
    )


# --- against the chain ------------------------------------------------------------------------


@pytest.fixture
def chain(ledger: Ledger, fresh_anvil: Any) -> Iterator[tuple[MasaClient, dict[str, str]]]:
    w3 = Web3(Web3.HTTPProvider(fresh_anvil.rpc_url))
    admin = fresh_anvil.accounts[0]
    deployment = deploy_all(w3, admin, DeployParams(cooldown_s=60))
    deployment.save(ledger.harness.settings.deployment_path)
    client = MasaClient(w3, deployment, admin)
    total = ledger.settled[2].statement.total_cumulative
    client.mint(admin.address, total)
    client.fund(total)
    yield client, {**ledger.harness.env(), "MASA_CHAIN__RPC_URL": fresh_anvil.rpc_url}


def _post(client: MasaClient, settled: Settled) -> None:
    s = settled.statement
    client.post_root(settled.epoch + 1, s.root, s.total_cumulative, s.statement_hash)


def test_verify_agrees_with_the_chain_then_catches_a_changed_stored_event(
    ledger: Ledger, chain: tuple[MasaClient, dict[str, str]]
) -> None:
    client, env = chain
    for epoch in (0, 1):
        _post(client, ledger.settled[epoch])
    partial = ledger.masa("settle", "verify", "--all", env=env)
    assert partial.returncode == 0, partial.stdout + partial.stderr
    assert [x.split(":")[0] for x in partial.stdout.splitlines()] == [
        "epoch 0 (chain epoch 1)", "epoch 1 (chain epoch 2)", "epoch 2 (chain epoch 3)",
    ]  # fmt: skip
    assert "not_posted" in partial.stdout.splitlines()[2]
    _post(client, ledger.settled[2])
    done = ledger.cli("settle", "verify", "--all", "--json", env=env)
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["ok"] and [e["status"] for e in report["epochs"]] == ["ok", "ok", "ok"]

    # a claim, then the proof: cumulative, claimed on chain, claimable, accepted by the root
    w0 = ledger.people.workers[0].address.lower()
    s1, s2 = ledger.settled[1].statement, ledger.settled[2].statement
    client.claim(w0, s1.line(w0).cumulative, s1.proof(w0))  # type: ignore[union-attr]
    proof = ledger.masa("settle", "proof", w0, "--json", env=env)
    assert proof.returncode == 0, proof.stderr
    claim = json.loads(proof.stdout)
    assert claim["epoch"] == 2 and claim["chain_epoch"] == 3 and claim["root"] == s2.root
    assert int(claim["cumulative"]) == s2.line(w0).cumulative  # type: ignore[union-attr]
    assert int(claim["claimed"]) == s1.line(w0).cumulative  # type: ignore[union-attr]
    assert int(claim["claimable"]) == s2.line(w0).earned  # type: ignore[union-attr]
    assert claim["proof"] == s2.proof(w0) and claim["previous"]["accepted"] is True
    assert client.claim(w0, int(claim["cumulative"]), claim["proof"]) == int(claim["claimable"])
    text = ledger.cli("settle", "proof", w0, env=env)
    assert text.exit_code == 0, text.output
    assert "claimable 0 against root" in text.stdout and "previous root accepts" in text.stdout

    # change one stored event behind ingest's back: the recomputation no longer matches
    _tamper_stored(ledger, ledger.ids["r2:sub"], lambda p: {**p, "fee": str(9 * TOKEN)})
    try:
        bad = ledger.masa("settle", "verify", "--all", env=env)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        lines = bad.stdout.splitlines()
        assert len(lines) == 3 and all(": mismatch: root on chain " in x for x in lines)
        one = ledger.cli("settle", "verify", "--epoch", "0", "--json", env=env)
        assert one.exit_code == 1
        assert [e["status"] for e in json.loads(one.stdout)["epochs"]] == ["mismatch"]
    finally:
        _tamper_stored(ledger, ledger.ids["r2:sub"], lambda p: {**p, "fee": str(2 * TOKEN + 7)})
    assert ledger.cli("settle", "verify", "--all", env=env).exit_code == 0


def _tamper_stored(ledger: Ledger, event_id: str, change: Any) -> None:
    with sqlite3.connect(ledger.harness.settings.sqlite_store_path) as db:
        rows = db.execute("SELECT rowid, state FROM stored_events").fetchall()
        for rowid, state in rows:
            data = orjson.loads(state)
            if data["envelope"]["id"] == event_id:
                data["envelope"]["payload"] = change(data["envelope"]["payload"])
                db.execute(
                    "UPDATE stored_events SET state = ? WHERE rowid = ?",
                    (orjson.dumps(data), rowid),
                )
                return
    raise AssertionError(f"no stored event {event_id}")
