"""Field types shared by the envelope and the payloads.

Amounts are decimal strings on the wire (JSON numbers lose precision above 2**53, and RFC 8785
would refuse them): a message validated with ``context=WIRE`` (as ``parse_event`` does) refuses
a JSON number where an amount belongs. Python callers (``make_event``) may pass ints; they are
written as strings. Addresses and hashes are 0x-hex and normalised to lower case.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from eth_utils import is_checksum_address, to_checksum_address
from pydantic import BeforeValidator, Field, PlainSerializer, Strict, ValidationInfo, WithJsonSchema

MAX_UINT256 = 2**256 - 1
#: Validation context of a message as it arrived: amounts must be decimal strings.
WIRE: dict[str, bool] = {"wire": True}


def parse_address(value: Any) -> str:
    """A 0x address in lower case; mixed case must pass its EIP-55 checksum."""
    if not isinstance(value, str) or len(value) != 42 or not value.startswith("0x"):
        raise ValueError("address must be 0x followed by 40 hex digits")
    try:
        int(value[2:], 16)
    except ValueError as exc:
        raise ValueError("address must be 0x followed by 40 hex digits") from exc
    body = value[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address(value):
        raise ValueError("mixed-case address fails its EIP-55 checksum")
    return value.lower()


def _hex_bytes(length: int) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value.startswith("0x"):
            raise ValueError(f"expected 0x-prefixed hex of {length} bytes")
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError as exc:
            raise ValueError("not hex") from exc
        if len(raw) != length:
            raise ValueError(f"expected {length} bytes, got {len(raw)}")
        return value.lower()

    return check


def _wei(value: Any, info: ValidationInfo) -> int:
    on_wire = bool(info.context and info.context.get("wire"))
    if (
        isinstance(value, bool)
        or not isinstance(value, str | int)
        or (on_wire and isinstance(value, int))
    ):
        raise ValueError('amount must be a decimal string of wei, e.g. "1000"')
    if isinstance(value, str) and (not value.isdigit() or not value.isascii()):
        raise ValueError("amount must be a decimal string of wei")
    amount = int(value)
    if not 0 <= amount <= MAX_UINT256:
        raise ValueError("amount out of uint256 range")
    return amount


_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def _rfc3339(value: Any) -> datetime:
    """An RFC 3339 timestamp with an offset; nothing else (no epoch numbers, no naive times)."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("timestamp must carry a UTC offset")
        return value.astimezone(UTC)
    match = _RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            "timestamp must be RFC 3339 text with an offset, e.g. 2026-01-01T00:00:00Z"
        )
    date, time, fraction, offset = match.groups()
    fraction = (fraction or "")[:7]
    offset = "+00:00" if offset in ("Z", "z") else offset
    return datetime.fromisoformat(f"{date}T{time}{fraction}{offset}").astimezone(UTC)


def parse_timestamp(value: str) -> datetime:
    """An RFC 3339 timestamp with an offset, as a UTC datetime; raises ``ValueError``."""
    return _rfc3339(value)


def format_timestamp(value: datetime) -> str:
    """RFC 3339 UTC with microseconds and a ``Z``: the form our producers write."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _described(fmt: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "format": fmt})


Address = Annotated[str, BeforeValidator(parse_address), _described("address")]
Hash32 = Annotated[str, BeforeValidator(_hex_bytes(32)), _described("bytes32 hex")]
Signature = Annotated[str, BeforeValidator(_hex_bytes(65)), _described("65-byte hex")]
Wei = Annotated[
    int, BeforeValidator(_wei), PlainSerializer(str, return_type=str), _described("wei, decimal")
]
UtcDatetime = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    PlainSerializer(format_timestamp, return_type=str),
    _described("RFC 3339"),
]
Count = Annotated[int, Strict(), Field(ge=0, le=2**53 - 1)]


def checksum(address: str) -> str:
    """EIP-55 form of an address, for display."""
    return to_checksum_address(address)
