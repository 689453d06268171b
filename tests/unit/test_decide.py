"""The pure core of ingest: decisions and state evolution, without I/O."""

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from indexer.events import Reason, decode_message
from indexer.ingest.decide import (
    Accept,
    ChainEntry,
    Hold,
    Policy,
    Reject,
    StreamState,
    decide,
    evolve,
)
from indexer.ingest.port import Deposit, Funds
from masa.app.synthetic import ORACLE_ROLE, WORKER_ROLE, Participants, Scenario

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PEOPLE = Participants.from_seed(11)
POLICY = Policy(trusted_indexers=frozenset({PEOPLE.indexer.address.lower()}))


def event(message):
    return decode_message(
        message.value, message.key.encode(), now=NOW, max_clock_skew=timedelta(minutes=5)
    )


def staked(role: int) -> StreamState:
    """A node staked in ``role``; an oracle with ample final deposits."""
    funds = Funds(final=10**24) if role == ORACLE_ROLE else None
    return StreamState(key="node", version=1, chain=(ChainEntry("e", 100, role),), funds=funds)


def scenario() -> Scenario:
    return Scenario(PEOPLE, seed=11, start=NOW - timedelta(minutes=1))


def staked_as_needed(e) -> StreamState:
    return staked(ORACLE_ROLE if e.envelope.type == "RequestSubmitted" else WORKER_ROLE)


def fold(stream: StreamState, events):
    """Apply decide/evolve in order, every producer staked in its role."""
    decisions = []
    for e in events:
        d = decide(e, stream, staked_as_needed(e), POLICY)
        decisions.append(d)
        if isinstance(d, Accept):
            stream = evolve(stream, e)
    return decisions, stream


states = st.builds(
    StreamState,
    key=st.text(min_size=1, max_size=20),
    version=st.integers(0, 10**6),
    submitted_by=st.none() | st.just("0x" + "1" * 40),
    closed=st.none() | st.sampled_from(["completed", "failed"]),
    data_used_by=st.lists(st.just("0x" + "2" * 40), max_size=2).map(tuple),
    last_seq=st.none() | st.integers(0, 2**53 - 1),
    contributor=st.none() | st.just("0x" + "3" * 40),
    fee=st.none() | st.integers(0, 2**256 - 1),
    funds=st.none()
    | st.builds(
        Funds,
        st.integers(0, 2**256 - 1),
        st.lists(
            st.builds(
                Deposit,
                st.uuids().map(str),
                st.integers(1, 2**53 - 1),
                st.integers(0, 2**53 - 1),
                st.integers(0, 2**256 - 1),
            ),
            max_size=3,
        ).map(tuple),
        st.integers(0, 2**256 - 1),
    ),
    final_block=st.none() | st.integers(0, 2**53 - 1),
    chain=st.lists(
        st.builds(
            ChainEntry,
            st.uuids().map(str),
            st.none() | st.integers(0, 2**256 - 1),
            st.none() | st.sampled_from([1, 2]),
        ),
        max_size=5,
    ).map(tuple),
)


@given(states)
def test_stream_state_survives_its_json_form(state):
    assert StreamState.from_json(state.to_json()) == state


def test_a_completion_before_its_request_is_held_for_the_request():
    submitted, completed, _ = (event(m) for m in scenario().request())
    decision = decide(completed, StreamState(key=completed.key), staked(WORKER_ROLE), POLICY)
    assert decision == Hold(
        f"request:{completed.key}", Reason.UNKNOWN_REQUEST, f"request {completed.key}"
    )
    after = evolve(StreamState(key=submitted.key), submitted)
    assert decide(completed, after, staked(WORKER_ROLE), POLICY) == Accept()


def test_a_request_closes_once():
    s = scenario()
    submitted, completed, _ = (event(m) for m in s.request())
    failed = event(
        s._event(
            PEOPLE.workers[1], "RequestFailed", {"request_id": completed.key, "reason": "late"}
        )
    )
    decisions, state = fold(StreamState(key=submitted.key), [submitted, completed, failed])
    assert decisions[:2] == [Accept(), Accept()]
    assert isinstance(decisions[2], Reject) and decisions[2].reason == Reason.REQUEST_CLOSED
    assert state.closed == "completed" and state.version == 2


def test_producers_need_a_live_stake_in_the_right_role():
    heartbeat = event(scenario().heartbeats(PEOPLE.workers[0], 1)[0])
    fresh = StreamState(key=heartbeat.key)
    assert isinstance(decide(heartbeat, fresh, None, POLICY), Hold)
    unstaked = StreamState(key="n", chain=(ChainEntry("a", 100, WORKER_ROLE), ChainEntry("b", 0)))
    assert decide(heartbeat, fresh, unstaked, POLICY) == Reject(
        Reason.NOT_STAKED, f"{heartbeat.envelope.producer} has no active stake"
    )
    assert isinstance(decide(heartbeat, fresh, staked(ORACLE_ROLE), POLICY), Reject)
    assert decide(heartbeat, fresh, staked(WORKER_ROLE), POLICY) == Accept()


def test_chain_events_need_a_trusted_indexer():
    stake = event(scenario().stake(PEOPLE.workers[0], WORKER_ROLE))
    assert decide(stake, StreamState(key=stake.key), None, POLICY) == Accept()
    assert decide(stake, StreamState(key=stake.key), None, Policy()) == Reject(
        Reason.UNTRUSTED_INDEXER
    )


@given(st.lists(st.integers(0, 50), max_size=30))
def test_accepted_heartbeats_are_exactly_the_running_maxima(seqs):
    s = scenario()
    worker = PEOPLE.workers[0]
    events = [event(s._event(worker, "Heartbeat", {"seq": q})) for q in seqs]
    decisions, state = fold(StreamState(key=worker.address.lower()), events)
    accepted = [q for q, d in zip(seqs, decisions, strict=True) if isinstance(d, Accept)]
    expected, best = [], -1
    for q in seqs:
        if q > best:
            expected.append(q)
            best = q
    assert accepted == expected
    assert state.version == len(expected)


@given(st.lists(st.tuples(st.integers(0, 10**24), st.booleans()), min_size=1, max_size=20))
def test_stake_is_the_latest_total_not_retracted(entries):
    """Retracting chain events (a reorg) restores the stake the remaining events imply."""
    state = StreamState(
        key="n",
        chain=tuple(ChainEntry(str(i), total, WORKER_ROLE) for i, (total, _) in enumerate(entries)),
    )
    kept = [total for total, retracted in entries if not retracted]
    state = StreamState(
        key="n",
        chain=tuple(
            e for e, (_, retracted) in zip(state.chain, entries, strict=True) if not retracted
        ),
    )
    assert state.stake == (kept[-1] if kept else None)


def test_a_retraction_removes_exactly_the_retracted_log():
    s = scenario()
    worker = PEOPLE.workers[0]
    first = event(s.stake(worker, WORKER_ROLE, amount=100))
    second = event(s.stake(worker, WORKER_ROLE, amount=300))
    node = evolve(evolve(StreamState(key=first.key), first), second)
    assert node.stake == 300
    retraction = event(
        s._event(
            PEOPLE.indexer,
            "ChainLogRetracted",
            {
                "log": second.payload.log.model_dump(mode="json"),
                "retracted_id": str(second.envelope.id),
                "retracted_type": "Staked",
                "stream_key": second.key,
            },
        )
    )
    assert decide(retraction, node, None, POLICY) == Accept()
    assert evolve(node, retraction).stake == 100
    unknown = retraction.payload.model_copy(update={"retracted_id": uuid.uuid4()})
    assert isinstance(
        decide(
            retraction.__class__(
                retraction.envelope, unknown, retraction.event_type, retraction.key, retraction.raw
            ),
            node,
            None,
            POLICY,
        ),
        Reject,
    )


def test_only_the_worker_that_closed_a_request_may_report_its_data_use():
    s = scenario()
    submitted, completed, data_used = (event(m) for m in s.request())
    stranger = next(w for w in PEOPLE.workers if w.address.lower() != completed.envelope.producer)
    other = event(
        s._event(
            stranger,
            "DataUsed",
            {
                "request_id": completed.key,
                "uses": data_used.payload.model_dump(mode="json")["uses"],
            },
        )
    )
    decisions, state = fold(
        StreamState(key=submitted.key), [submitted, completed, other, data_used]
    )
    assert decisions[2] == Reject(
        Reason.REQUEST_CLOSED,
        f"request {completed.key} was served by {completed.envelope.producer}",
    )
    assert decisions[3] == Accept()
    assert state.data_used_by == (completed.envelope.producer,)
