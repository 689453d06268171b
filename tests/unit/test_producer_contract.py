"""What an outside producer can get wrong, refused by the contract itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from eth_account import Account
from web3.exceptions import ContractLogicError

from contracts.reverts import ContractReverted, as_contract_reverted
from indexer.events import make_event, parse_event
from indexer.events.signing import sign_digest, signing_digest
from masa.errors import EventRejected

ORACLE = Account.from_key(b"\x03" * 32)
REQUEST = {
    "request_id": "2f1c7a3e-9b1d-4d9a-8a0e-3c4b5d6e7f80",
    "kind": "data",
    "spec": {"start_urls": ["https://example.org/"], "fields": {"t": {"css": "h1"}}},
    "fee": 1000,  # Python callers may pass ints: written as a decimal string
}


def _resigned(message: dict) -> bytes:
    unsigned = {k: v for k, v in message.items() if k != "signature"}
    return orjson.dumps({**unsigned, "signature": sign_digest(ORACLE, signing_digest(unsigned))})


def test_a_fee_sent_as_a_json_number_is_a_bad_payload_even_when_signed():
    message = orjson.loads(make_event(ORACLE, "RequestSubmitted", REQUEST).value)
    assert message["payload"]["fee"] == "1000"
    parse_event(_resigned(message), now=datetime.now(UTC), max_clock_skew=timedelta(minutes=5))
    message["payload"]["fee"] = 1000
    with pytest.raises(EventRejected) as rejected:
        parse_event(_resigned(message), now=datetime.now(UTC), max_clock_skew=timedelta(minutes=5))
    assert rejected.value.reason == "bad_payload" and "decimal string" in rejected.value.detail


def test_an_unknown_type_is_a_value_error_not_a_key_error():
    with pytest.raises(ValueError, match="unknown event type"):
        make_event(ORACLE, "Nope", {})


@pytest.mark.parametrize("data", [None, "", "0x", "not hex", {"x": 1}])
def test_a_revert_without_usable_data_is_still_a_revert(data):
    reverted = as_contract_reverted(ContractLogicError("execution reverted: too late", data=data))
    assert isinstance(reverted, ContractReverted)
    assert "too late" in str(reverted)
    bare = as_contract_reverted(ContractLogicError("execution reverted", data=data))
    assert isinstance(bare, ContractReverted) and bare.error is None
