"""The worker's pure parts: result events and their ids, offsets, heartbeat sequence,
the stake rule, request specs in the event contract, and the source registry's rule."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from eth_account import Account

from contracts.client import Role, StakeStatus
from indexer.bus.base import Record, TopicPartition, partition_for
from indexer.bus.embedded import EmbeddedBus
from indexer.events import Reason, decode_message, make_event
from indexer.events.types import RequestSubmitted
from masa.errors import ChainError, EventRejected
from workers.node import (
    Completed,
    Failed,
    JobConfig,
    JobRunner,
    OffsetTracker,
    next_seq,
    require_worker_stake,
    result_event_id,
    result_messages,
)
from workers.registry import SourceRegistry, attributable, registration
from workers.scraping import DataUse

NOW = datetime.now(UTC)
SKEW = timedelta(minutes=5)
WORKER = Account.from_key(b"\x01" * 32)
ORACLE = Account.from_key(b"\x02" * 32)
ALICE = Account.from_key(b"\x03" * 32)
BOB = Account.from_key(b"\x04" * 32)
REQUEST = uuid.UUID("00000000-0000-4000-8000-000000000001")
DATA_SPEC = {"start_urls": ["https://a.example/"], "fields": {"t": {"css": "h1"}}}
TP0, TP1 = TopicPartition("r", 0), TopicPartition("r", 1)


def decode(message):  # type: ignore[no-untyped-def]
    # results are stamped when made: check them against the clock now, not at import
    now = datetime.now(UTC)
    return decode_message(message.value, message.key.encode(), now=now, max_clock_skew=SKEW)


# --- result events --------------------------------------------------------------------------


def test_a_completion_reports_the_result_then_the_data_used() -> None:
    use = DataUse(source="https://a.example/", contributor=ALICE.address.lower(), units=3)
    messages = result_messages(WORKER, REQUEST, Completed("0x" + "ab" * 32, 5, [use]))
    events = [decode(m) for m in messages]
    assert [e.envelope.type for e in events] == ["RequestCompleted", "DataUsed"]
    assert events[0].payload.units == 5
    assert events[1].payload.uses[0].model_dump() == use.model_dump()
    assert {m.key for m in messages} == {str(REQUEST)}


def test_result_ids_depend_only_on_request_worker_and_type() -> None:
    outcome = Completed("0x" + "ab" * 32, 5)
    first = result_messages(WORKER, REQUEST, outcome)
    again = result_messages(WORKER, REQUEST, Completed("0x" + "cd" * 32, 7))
    other = result_messages(ORACLE, REQUEST, outcome)
    assert [m.event_id for m in first] == [m.event_id for m in again]
    assert first[0].event_id == result_event_id(REQUEST, WORKER.address, "RequestCompleted")
    assert first[0].event_id != other[0].event_id
    failed = result_messages(WORKER, REQUEST, Failed("timeout"))
    assert failed[0].event_id not in {m.event_id for m in first}


def test_a_completion_without_data_from_registered_sources_sends_no_data_used() -> None:
    messages = result_messages(WORKER, REQUEST, Completed("0x" + "ab" * 32, 0))
    assert [decode(m).envelope.type for m in messages] == ["RequestCompleted"]


def test_failure_reasons_that_are_not_codes_are_kept_in_the_detail() -> None:
    (message,) = result_messages(WORKER, REQUEST, Failed("Engine Error!", "x" * 5000))
    payload = decode(message).payload
    assert payload.reason == "job_error"
    assert payload.detail.startswith("Engine Error!: x")
    assert len(payload.detail) <= 4096


def test_more_uses_than_an_event_holds_keep_the_largest() -> None:
    uses = [
        DataUse(source=f"https://s{i:04}.example/", contributor=ALICE.address, units=1 + i % 7)
        for i in range(1200)
    ]
    (_, data_used) = result_messages(WORKER, REQUEST, Completed("0x" + "ab" * 32, 1, uses))
    kept = decode(data_used).payload.uses
    assert len(kept) == 1000
    dropped = {u.source for u in uses} - {u.source for u in kept}
    assert min(u.units for u in kept) >= max(u.units for u in uses if u.source in dropped)
    assert [u.source for u in kept] == sorted(u.source for u in kept)


# --- offsets --------------------------------------------------------------------------------


def test_offsets_commit_only_below_the_first_job_in_hand() -> None:
    tracker = OffsetTracker()
    for offset in (5, 6, 7):
        tracker.taken(TP0, offset)
    tracker.taken(TP1, 0)
    assert tracker.committable() == {TP0: 5, TP1: 0}
    tracker.committed({TP0: 5, TP1: 0})
    tracker.done(TP0, 6)
    tracker.done(TP1, 0)
    assert tracker.committable() == {TP1: 1}
    tracker.done(TP0, 5)
    assert tracker.committable() == {TP0: 7, TP1: 1}
    tracker.committed({TP0: 7, TP1: 1})
    tracker.done(TP0, 7)
    assert tracker.committable() == {TP0: 8}


def test_a_forgotten_partition_is_never_committed() -> None:
    tracker = OffsetTracker()
    tracker.taken(TP0, 3)
    tracker.forget([TP0])
    tracker.done(TP0, 3)
    assert tracker.committable() == {}


# --- heartbeats and stake -------------------------------------------------------------------


def test_heartbeat_seq_follows_the_clock_and_never_repeats() -> None:
    assert next_seq(None, 1_000) == 1_000
    assert next_seq(1_000, 1_000) == 1_001
    assert next_seq(1_001, 900) == 1_002  # the clock went back
    assert next_seq(1_002, 5_000) == 5_000


def status(role: Role | None, stake: int, active: bool) -> StakeStatus:
    return StakeStatus(
        node=WORKER.address,
        role=role,
        stake=stake,
        locked=0,
        active=active,
        locks=(),
        min_stake=100,
        cooldown_s=0,
        balance=0,
        block_number=1,
        block_timestamp=0,
    )


def test_only_an_active_worker_stake_passes() -> None:
    require_worker_stake(status(Role.WORKER, 100, True))
    with pytest.raises(ChainError, match=r"not staked as a worker .*no role"):
        require_worker_stake(status(None, 0, False))
    with pytest.raises(ChainError, match="oracle role"):
        require_worker_stake(status(Role.ORACLE, 500, True))
    with pytest.raises(ChainError, match="below the minimum 100"):
        require_worker_stake(status(Role.WORKER, 50, False))


def test_an_llm_request_without_an_engine_fails_as_llm_unavailable() -> None:
    spec = {"model": "tiny-llama", "prompt": "hi", "max_tokens": 4}
    request = RequestSubmitted(request_id=REQUEST, kind="llm", spec=spec, fee=1)
    outcome = JobRunner(JobConfig(), sources=dict).serve(request)
    assert isinstance(outcome, Failed) and outcome.reason == "llm_unavailable"


# --- request specs in the contract ----------------------------------------------------------


def submitted(kind: str, spec: dict[str, object]):  # type: ignore[no-untyped-def]
    payload = {"request_id": str(REQUEST), "kind": kind, "spec": spec, "fee": "10"}
    return make_event(ORACLE, "RequestSubmitted", payload, occurred_at=NOW)


@pytest.mark.parametrize(
    ("kind", "spec", "where"),
    [
        ("data", {}, "start_urls"),
        ("data", {**DATA_SPEC, "start_urls": ["ftp://a.example/"]}, "not an http(s) URL"),
        ("data", {**DATA_SPEC, "fields": {"t": {"css": "h1["}}}, "invalid selector"),
        ("data", {**DATA_SPEC, "max_depth": 9}, "max_depth"),
        ("data", {**DATA_SPEC, "model": "m"}, "Extra inputs"),
        ("llm", DATA_SPEC, "model"),
        ("llm", {"model": "m", "max_tokens": 1}, "exactly one of prompt and messages"),
        ("llm", {"model": "m", "prompt": "p", "max_tokens": 1, "data_refs": ["item-1"]}, "http"),
    ],
)
def test_a_spec_that_does_not_fit_its_kind_is_a_bad_payload(
    kind: str, spec: dict[str, object], where: str
) -> None:
    message = submitted("data", DATA_SPEC)
    raw = orjson.loads(message.value)
    raw["payload"]["kind"], raw["payload"]["spec"] = kind, spec
    with pytest.raises(EventRejected) as raised:
        decode_message(orjson.dumps(raw), message.key.encode(), now=NOW, max_clock_skew=SKEW)
    assert raised.value.reason == Reason.BAD_PAYLOAD
    assert f"not a {kind} spec" in raised.value.detail and where in raised.value.detail
    with pytest.raises(ValueError, match=re.escape(where)):
        submitted(kind, spec)


def test_a_valid_spec_is_kept_exactly_as_the_oracle_wrote_it() -> None:
    spec = {
        "fields": {"t": {"css": "h1"}},
        "start_urls": ["https://A.example/x?q=1"],
        "max_depth": 1,
    }
    event = decode(submitted("data", spec))
    assert event.payload.spec == spec
    assert list(event.payload.spec) == list(spec)
    assert event.raw["payload"]["spec"] == spec


# --- the source registry --------------------------------------------------------------------


def record(message, partitions: int = 3, *, partition: int | None = None) -> Record:  # type: ignore[no-untyped-def]
    home = partition_for(message.key.encode(), partitions)
    return Record(
        "events",
        home if partition is None else partition,
        0,
        message.key.encode(),
        message.value,
        int(NOW.timestamp() * 1000),
    )


def registered(account, source: str, contributor: str | None = None):  # type: ignore[no-untyped-def]
    payload = {"source": source, "contributor": contributor or account.address}
    return make_event(account, "DataSourceRegistered", payload, occurred_at=NOW)


def test_a_registration_counts_only_as_ingest_would_accept_it() -> None:
    good = registered(ALICE, "https://a.example/blog")
    assert registration(record(good), 3, SKEW) == ("https://a.example/blog", ALICE.address.lower())
    wrong_partition = (partition_for(good.key.encode(), 3) + 1) % 3
    assert registration(record(good, partition=wrong_partition), 3, SKEW) is None
    assert (
        registration(record(registered(BOB, "https://b.example/", ALICE.address)), 3, SKEW) is None
    )
    tampered = good.value.replace(b"/blog", b"/blag")
    assert (
        registration(Record("events", 0, 0, b"https://a.example/blag", tampered, 0), 1, SKEW)
        is None
    )
    heartbeat = make_event(WORKER, "Heartbeat", {"seq": 1}, occurred_at=NOW)
    assert registration(record(heartbeat), 3, SKEW) is None


def test_sources_that_are_not_url_prefixes_are_never_attributed() -> None:
    sources = {"https://a.example/?q=1": ALICE.address, "https://a.example/": BOB.address}
    assert attributable(sources) == {"https://a.example/": BOB.address}


def test_the_first_registration_of_a_source_wins(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.sqlite")
    bus.ensure_topics({"events": 3})
    producer = bus.producer()
    messages = [
        registered(ALICE, "https://a.example/"),
        registered(BOB, "https://a.example/"),
        registered(BOB, "https://b.example/"),
        make_event(WORKER, "Heartbeat", {"seq": 1}),
    ]
    for message in messages[:2]:
        producer.send("events", message.key.encode(), message.value)
    producer.flush()
    registry = SourceRegistry(bus, "events", max_clock_skew=SKEW)
    try:
        assert registry.sources() == {"https://a.example/": ALICE.address.lower()}
        for message in messages[2:]:
            producer.send("events", message.key.encode(), message.value)
        producer.flush()
        assert registry.sources() == {
            "https://a.example/": ALICE.address.lower(),
            "https://b.example/": BOB.address.lower(),
        }
    finally:
        registry.close()
        producer.close()


def test_the_request_examples_in_the_worker_docs_are_valid() -> None:
    text = (Path(__file__).parents[2] / "docs" / "worker.md").read_text()
    examples = re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)
    assert [orjson.loads(e)["kind"] for e in examples] == ["data", "llm"]
    for example in examples:
        RequestSubmitted.model_validate(orjson.loads(example))
