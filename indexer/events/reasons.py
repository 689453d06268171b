"""Machine-readable reasons a message is rejected to the dead-letter topic."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # the message itself
    TOO_LARGE = "too_large"
    BAD_JSON = "bad_json"
    BAD_ENVELOPE = "bad_envelope"
    UNKNOWN_TYPE = "unknown_type"
    BAD_PAYLOAD = "bad_payload"
    BAD_SIGNATURE = "bad_signature"
    WRONG_KEY = "wrong_key"
    CLOCK_SKEW = "clock_skew"
    # the producer
    NOT_STAKED = "not_staked"
    WRONG_ROLE = "wrong_role"
    UNTRUSTED_INDEXER = "untrusted_indexer"
    UNTRUSTED_GOVERNOR = "untrusted_governor"
    UNTRUSTED_SETTLER = "untrusted_settler"
    NOT_CONTRIBUTOR = "not_contributor"
    # the state of the aggregate
    UNKNOWN_REQUEST = "unknown_request"
    DUPLICATE_REQUEST = "duplicate_request"
    REQUEST_CLOSED = "request_closed"
    DUPLICATE_DATA_USE = "duplicate_data_use"
    STALE_HEARTBEAT = "stale_heartbeat"
    SOURCE_TAKEN = "source_taken"
    UNKNOWN_LOG = "unknown_log"
    STALE_LOG = "stale_log"
    EPOCH_OUT_OF_ORDER = "epoch_out_of_order"
    # the oracle's prepaid fees
    INSUFFICIENT_BALANCE = "insufficient_balance"
