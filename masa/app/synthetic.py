"""A deterministic synthetic network: participants and the signed events they produce, plus
probes: messages with a known fate, malformed ones among them. Feeds ``masa demo``, the
benchmarks and the tests."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from indexer.events import NodeRole, SignedMessage, make_event

WORKER_ROLE, ORACLE_ROLE = NodeRole.WORKER, NodeRole.ORACLE
#: What ``Scenario.stakes`` deposits for each oracle: enough for 10^5 requests at the largest
#: synthetic fee (``Scenario.request``).
DEPOSIT = 10**20
MAX_FEE = 10**15


def _account(seed: int, label: str, index: int) -> LocalAccount:
    account: LocalAccount = Account.from_key(
        keccak(f"masa-synthetic:{seed}:{label}:{index}".encode())
    )
    return account


@dataclass(frozen=True)
class Participants:
    indexer: LocalAccount
    workers: list[LocalAccount]
    oracles: list[LocalAccount]
    contributors: list[LocalAccount]
    governor: LocalAccount | None = None
    settler: LocalAccount | None = None

    @classmethod
    def from_seed(
        cls, seed: int, *, workers: int = 4, oracles: int = 2, contributors: int = 3
    ) -> Participants:
        return cls(
            indexer=_account(seed, "indexer", 0),
            workers=[_account(seed, "worker", i) for i in range(workers)],
            oracles=[_account(seed, "oracle", i) for i in range(oracles)],
            contributors=[_account(seed, "contributor", i) for i in range(contributors)],
            governor=_account(seed, "governor", 0),
            settler=_account(seed, "settler", 0),
        )


@dataclass(frozen=True)
class Probe:
    """A message and its expected fate: "stored", "duplicate" or a rejection reason."""

    expect: str
    key: bytes | None
    value: bytes


@dataclass
class Scenario:
    people: Participants
    seed: int = 0
    start: datetime = field(default_factory=lambda: datetime.now().astimezone())
    chain_id: int = 31337
    contract: str = "0x" + "5a" * 20
    _rng: random.Random = field(init=False)
    _clock: int = field(init=False, default=0)
    _log_index: int = field(init=False, default=0)
    _deposited: dict[str, int] = field(init=False, default_factory=dict)
    _fees_deposited: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self._rng.getrandbits(128), version=4)

    def _at(self) -> datetime:
        self._clock += 1
        return self.start + timedelta(milliseconds=self._clock)

    def _event(
        self, account: LocalAccount, type_name: str, payload: dict[str, Any], **kw: Any
    ) -> SignedMessage:
        kw.setdefault("event_id", self._uuid())
        return make_event(account, type_name, payload, occurred_at=self._at(), **kw)

    def chain_log(self) -> dict[str, object]:
        self._log_index += 1
        block = self._log_index // 4 + 1
        return {
            "chain_id": self.chain_id,
            "contract": self.contract,
            "block_number": block,
            "block_hash": "0x" + keccak(f"block:{self.seed}:{block}".encode()).hex(),
            "tx_hash": "0x" + keccak(f"tx:{self.seed}:{self._log_index}".encode()).hex(),
            "log_index": self._log_index,
        }

    # --- valid flows ------------------------------------------------------------------------

    def stake(self, node: LocalAccount, role: int, amount: int = 10**21) -> SignedMessage:
        payload = {
            "log": self.chain_log(),
            "node": node.address,
            "role": role,
            "amount": str(amount),
            "new_stake": str(amount),
        }
        return make_event(self.people.indexer, "Staked", payload, occurred_at=self._at())

    def stakes(self) -> list[SignedMessage]:
        """Every worker and oracle staked, and every oracle funded (``fund``)."""
        stakes = [self.stake(w, WORKER_ROLE) for w in self.people.workers] + [
            self.stake(o, ORACLE_ROLE) for o in self.people.oracles
        ]
        deposits = [self.deposit(o) for o in self.people.oracles]
        return [*stakes, *deposits, self.finalized()]

    def deposit(self, oracle: LocalAccount, amount: int = DEPOSIT) -> SignedMessage:
        """The indexer's ``FeesDeposited``: ``oracle`` prepaid ``amount`` wei of fees."""
        self._deposited[oracle.address] = self._deposited.get(oracle.address, 0) + amount
        self._fees_deposited += amount
        payload = {
            "log": self.chain_log(),
            "oracle": oracle.address,
            "amount": str(amount),
            "deposited": str(self._deposited[oracle.address]),
            "new_total_fees_deposited": str(self._fees_deposited),
        }
        return make_event(self.people.indexer, "FeesDeposited", payload, occurred_at=self._at())

    def finalized(self) -> SignedMessage:
        """The indexer's ``ChainFinalized`` up to the newest block of this scenario's logs."""
        block = self._log_index // 4 + 1
        payload = {
            "chain_id": self.chain_id,
            "block_number": block,
            "block_hash": "0x" + keccak(f"block:{self.seed}:{block}".encode()).hex(),
            "log_count": self._log_index,
            "contracts": [self.contract],
        }
        return make_event(self.people.indexer, "ChainFinalized", payload, occurred_at=self._at())

    def fund(self, oracle: LocalAccount, amount: int = DEPOSIT) -> list[SignedMessage]:
        """A deposit of ``amount`` wei for ``oracle`` and the finality that makes it count."""
        return [self.deposit(oracle, amount), self.finalized()]

    def source_url(self, contributor: int) -> str:
        return f"https://data{contributor}.example.org/"

    def sources(self) -> list[SignedMessage]:
        return [
            self._event(
                c, "DataSourceRegistered", {"source": self.source_url(i), "contributor": c.address}
            )
            for i, c in enumerate(self.people.contributors)
        ]

    def data_spec(self) -> dict[str, object]:
        return {
            "start_urls": [self.source_url(0) + "index.html"],
            "max_depth": 1,
            "fields": {"title": {"css": "title"}},
        }

    def llm_spec(self) -> dict[str, object]:
        return {"model": "tiny-llama", "prompt": "summarise", "max_tokens": 64}

    def request(self, *, fail: bool = False) -> list[SignedMessage]:
        """One request's life: submitted, then completed with data used, or failed."""
        oracle = self._rng.choice(self.people.oracles)
        worker = self._rng.choice(self.people.workers)
        request_id = str(self._uuid())
        kind = self._rng.choice(["data", "llm"])
        spec = self.llm_spec() if kind == "llm" else self.data_spec()
        fee = str(self._rng.randrange(MAX_FEE // 1000, MAX_FEE))
        events = [
            self._event(
                oracle,
                "RequestSubmitted",
                {"request_id": request_id, "kind": kind, "spec": spec, "fee": fee},
            )
        ]
        if fail:
            failed = {"request_id": request_id, "reason": "timeout"}
            return [*events, self._event(worker, "RequestFailed", failed)]
        digest = "0x" + keccak(request_id.encode()).hex()
        units = self._rng.randrange(1, 500)
        events.append(
            self._event(
                worker,
                "RequestCompleted",
                {"request_id": request_id, "result_digest": digest, "units": units},
            )
        )
        contributor = self._rng.randrange(len(self.people.contributors))
        uses = [
            {
                "source": self.source_url(contributor),
                "contributor": self.people.contributors[contributor].address,
                "units": units,
            }
        ]
        events.append(self._event(worker, "DataUsed", {"request_id": request_id, "uses": uses}))
        return events

    def heartbeats(
        self, worker: LocalAccount, count: int, first_seq: int = 1
    ) -> list[SignedMessage]:
        return [
            self._event(worker, "Heartbeat", {"seq": seq, "capabilities": ["data", "llm"]})
            for seq in range(first_seq, first_seq + count)
        ]

    def traffic(self, requests: int, heartbeats_per_worker: int) -> Iterator[SignedMessage]:
        """Realistic valid traffic after the stakes: requests (10% failing) and heartbeats."""
        for i in range(requests):
            yield from self.request(fail=i % 10 == 9)
        for worker in self.people.workers:
            yield from self.heartbeats(worker, heartbeats_per_worker)

    def epoch(
        self, start: datetime, seconds: int, requests: int, first_seq: int
    ) -> list[SignedMessage]:
        """What the network did in the ``seconds`` from ``start`` (an epoch, say): every worker
        heartbeats once a second (seqs from ``first_seq``), and ``requests`` requests (one in
        ten failing, at random) are spread over the seconds. Moves this scenario's clock."""
        if seconds < 1:
            raise ValueError("an epoch lasts at least a second")
        out: list[SignedMessage] = []
        for second in range(seconds):
            self.start, self._clock = start + timedelta(seconds=second), 0
            for worker in self.people.workers:
                out += self.heartbeats(worker, 1, first_seq + second)
            share = requests // seconds + (second < requests % seconds)
            for _ in range(share):
                out += self.request(fail=self._rng.randrange(10) == 9)
        return out

    # --- invalid messages -------------------------------------------------------------------

    def probes(self) -> list[Probe]:
        """Messages with a known fate: one per rejection reason that needs no waiting, and the
        valid events some of them conflict with. Send them after ``stakes`` and ``sources``."""
        worker, oracle = self.people.workers[0], self.people.oracles[0]
        contributor = self.people.contributors[0]
        stranger = _account(self.seed, "stranger", 0)
        good = self._event(worker, "Heartbeat", {"seq": 10**9})
        raw = orjson.loads(good.value)
        key = good.key.encode()
        forged = {**raw, "payload": {"seq": 10**9 + 1, "capabilities": []}}
        future = make_event(
            worker,
            "Heartbeat",
            {"seq": 10**9 + 2},
            occurred_at=self.start + timedelta(days=2),
            event_id=self._uuid(),
        )
        stale = self._event(worker, "Heartbeat", {"seq": 10**9 - 1})
        request_id = str(self._uuid())
        request = {"request_id": request_id, "kind": "data", "spec": self.data_spec(), "fee": "1"}
        submitted = self._event(oracle, "RequestSubmitted", request)
        resubmitted = self._event(oracle, "RequestSubmitted", {**request, "fee": "2"})
        done = {"request_id": request_id, "result_digest": "0x" + "00" * 32, "units": 1}
        completed = self._event(worker, "RequestCompleted", done)
        completed_again = self._event(worker, "RequestCompleted", {**done, "units": 2})
        retaken = self._event(
            contributor,
            "DataSourceRegistered",
            {"source": self.source_url(1), "contributor": contributor.address},
        )
        untrusted = make_event(
            stranger,
            "Staked",
            {
                "log": self.chain_log(),
                "node": stranger.address,
                "role": WORKER_ROLE,
                "amount": "1",
                "new_stake": "1",
            },
            occurred_at=self._at(),
        )
        not_mine = self._event(
            stranger,
            "DataSourceRegistered",
            {"source": "https://elsewhere.example.org/", "contributor": worker.address},
        )
        wrong_role = self._event(oracle, "Heartbeat", {"seq": 1})
        probes = [
            Probe("stored", key, good.value),
            Probe("bad_json", key, b'{"id": "unterminated'),
            Probe(
                "bad_envelope", key, orjson.dumps({k: v for k, v in raw.items() if k != "producer"})
            ),
            Probe("unknown_type", key, orjson.dumps({**raw, "type": "NoSuchEvent"})),
            Probe("bad_payload", key, orjson.dumps({**raw, "payload": {"seq": -1}})),
            Probe("bad_signature", key, orjson.dumps(forged)),
            Probe("wrong_key", b"not-the-aggregate", good.value),
            Probe("too_large", key, b" " * (256 * 1024 + 1)),
            Probe("stale_heartbeat", key, stale.value),
            Probe("duplicate", key, good.value),
        ]
        probes += [
            Probe(expect, message.key.encode(), message.value)
            for expect, message in [
                ("clock_skew", future),
                ("stored", submitted),
                ("duplicate_request", resubmitted),
                ("stored", completed),
                ("request_closed", completed_again),
                ("source_taken", retaken),
                ("untrusted_indexer", untrusted),
                ("not_contributor", not_mine),
                ("wrong_role", wrong_role),
            ]
        ]
        return probes
