"""Stateless checks of the envelope: what a message alone can prove or disprove."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.events import (
    CURRENT_VERSION,
    EVENT_TYPES,
    Reason,
    decode_message,
    make_event,
    parse_event,
    stream_id,
    upcast,
)
from masa.app.synthetic import Participants, Scenario
from masa.errors import EventRejected

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)
WORKER = Account.from_key(b"\x01" * 32)
ORACLE = Account.from_key(b"\x02" * 32)
LLM_SPEC = {"model": "tiny-llama", "prompt": "hello", "max_tokens": 8}


def decode(message, key=None):
    return decode_message(
        message.value, (key or message.key).encode(), now=NOW, max_clock_skew=SKEW
    )


def scenario():
    return Scenario(Participants.from_seed(3), seed=3, start=NOW - timedelta(minutes=1))


def test_every_type_round_trips_through_make_and_decode():
    s = scenario()
    messages = [
        *s.stakes(),
        *s.sources(),
        *s.request(),
        *s.request(fail=True),
        *s.heartbeats(s.people.workers[0], 2),
    ]
    names = {decode(m).envelope.type for m in messages}
    assert {
        "Staked",
        "DataSourceRegistered",
        "RequestSubmitted",
        "RequestCompleted",
        "DataUsed",
        "RequestFailed",
        "Heartbeat",
    } <= names
    for message in messages:
        event = decode(message)
        assert event.envelope.id == message.event_id
        assert event.key == message.key
        assert event.stream_id == stream_id(message.key)


def test_events_about_one_request_share_a_key_whoever_produced_them():
    request = scenario().request()
    assert len({m.key for m in request}) == 1
    producers = {decode(m).envelope.producer for m in request}
    assert len(producers) == 2


def test_amounts_travel_as_decimal_strings_and_keep_their_precision():
    fee = 2**200 + 1
    message = make_event(
        ORACLE,
        "RequestSubmitted",
        {"request_id": str(uuid.uuid4()), "kind": "llm", "spec": LLM_SPEC, "fee": str(fee)},
        occurred_at=NOW,
    )
    assert f'"fee":"{fee}"'.encode() in message.value
    assert decode(message).payload.fee == fee


@pytest.mark.parametrize("fee", ["-1", "1.5", "0x10", " 1", "١٢"])
def test_amounts_that_are_not_plain_decimal_wei_are_refused(fee):
    with pytest.raises(ValueError):
        make_event(
            ORACLE,
            "RequestSubmitted",
            {"request_id": str(uuid.uuid4()), "kind": "llm", "spec": LLM_SPEC, "fee": fee},
        )


@pytest.mark.parametrize("probe", scenario().probes(), ids=lambda p: p.expect)
def test_probes_that_need_no_state_get_their_reason(probe):
    stateless = {r.value for r in Reason} & {
        "too_large",
        "bad_json",
        "bad_envelope",
        "unknown_type",
        "bad_payload",
        "bad_signature",
        "wrong_key",
        "clock_skew",
    }
    if probe.expect not in stateless:
        decode_message(probe.value, probe.key, now=NOW, max_clock_skew=SKEW)
        return
    with pytest.raises(EventRejected) as raised:
        decode_message(probe.value, probe.key, now=NOW, max_clock_skew=SKEW)
    assert raised.value.reason == probe.expect


def test_a_signature_stays_valid_whatever_the_json_key_order_and_spacing():
    message = make_event(WORKER, "Heartbeat", {"seq": 3}, occurred_at=NOW)
    raw = orjson.loads(message.value)
    reordered = (
        b"{ "
        + b", ".join(orjson.dumps(k) + b": " + orjson.dumps(raw[k]) for k in reversed(list(raw)))
        + b" }"
    )
    assert (
        decode_message(reordered, message.key.encode(), now=NOW, max_clock_skew=SKEW).envelope.id
        == message.event_id
    )


def test_old_versions_stay_readable_and_upcast_to_the_current_one():
    v1 = make_event(WORKER, "Heartbeat", {"seq": 4}, version=1, occurred_at=NOW)
    event = decode(v1)
    assert event.envelope.version == 1
    assert CURRENT_VERSION["Heartbeat"] == 2
    current = upcast("Heartbeat", 1, event.envelope.payload)
    assert EVENT_TYPES[("Heartbeat", 2)].payload.model_validate(current).capabilities == []


def test_a_mixed_case_address_must_pass_its_checksum():
    payload = {
        "request_id": str(uuid.uuid4()),
        "uses": [{"source": "https://a.example/", "contributor": ORACLE.address, "units": 1}],
    }
    make_event(WORKER, "DataUsed", payload)
    broken = ORACLE.address[:-1] + ("a" if ORACLE.address[-1] != "a" else "b")
    if broken[2:] != broken[2:].lower():
        with pytest.raises(ValueError, match="checksum"):
            make_event(
                WORKER,
                "DataUsed",
                {**payload, "uses": [{**payload["uses"][0], "contributor": broken}]},
            )


json_leaves = st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.floats()


def _containers(children):
    return st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=10), children, max_size=4
    )


json_trees = st.recursive(json_leaves, _containers, max_leaves=20)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=2000) | json_trees.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=50) | st.none(),
)
def test_arbitrary_bytes_are_rejected_with_a_reason_never_an_exception(value, key):
    try:
        decode_message(value, key, now=NOW, max_clock_skew=SKEW)
    except EventRejected as exc:
        assert exc.reason in {r.value for r in Reason}


FIELDS = ["id", "type", "version", "occurred_at", "producer", "payload", "signature"]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), json_trees)
def test_any_field_replaced_by_junk_is_rejected_not_accepted_or_crashing(field, junk):
    message = make_event(WORKER, "Heartbeat", {"seq": 9}, occurred_at=NOW)
    raw = orjson.loads(message.value)
    if raw[field] == junk:
        return
    try:
        tampered = orjson.dumps({**raw, field: junk})
    except TypeError:  # integers beyond 64 bits: not JSON orjson writes, nothing to test
        return
    with pytest.raises(EventRejected):
        parse_event(tampered, now=NOW, max_clock_skew=SKEW)
