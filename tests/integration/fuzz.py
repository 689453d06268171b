"""Corruptions of valid signed messages, each with the reason ingest must give."""

from __future__ import annotations

import orjson
from eth_account import Account

from indexer.events import SignedMessage
from indexer.events.signing import sign_digest, signing_digest
from masa.app.synthetic import Participants, Probe

CORRUPTIONS = [
    "truncate",
    "flip_byte",
    "drop_field",
    "wrong_type",
    "huge_field",
    "resign_other",
    "wrong_key",
    "not_json",
]
ENVELOPE_FIELDS = ["id", "type", "version", "occurred_at", "producer", "payload", "signature"]
WRONG_TYPES = {
    "id": 5,
    "type": 7,
    "version": "one",
    "occurred_at": 1700000000,
    "producer": 42,
    "payload": [],
    "signature": 65,
}


def corrupt(kind: str, message: SignedMessage, n: int, people: Participants) -> Probe:
    key = message.key.encode()
    raw = orjson.loads(message.value)
    if kind == "truncate":
        return Probe("bad_json", key, message.value[: n % len(message.value)])
    if kind == "not_json":
        return Probe("bad_json", key, n.to_bytes(8, "big") + b"\xff not json")
    if kind == "flip_byte":
        digits = raw["signature"][2:]
        i = n % len(digits)
        flipped = digits[:i] + ("0" if digits[i] != "0" else "1") + digits[i + 1 :]
        return Probe("bad_signature", key, orjson.dumps({**raw, "signature": "0x" + flipped}))
    if kind == "drop_field":
        field = ENVELOPE_FIELDS[n % len(ENVELOPE_FIELDS)]
        return Probe(
            "bad_envelope", key, orjson.dumps({k: v for k, v in raw.items() if k != field})
        )
    if kind == "wrong_type":
        field = ENVELOPE_FIELDS[n % len(ENVELOPE_FIELDS)]
        return Probe("bad_envelope", key, orjson.dumps({**raw, field: WRONG_TYPES[field]}))
    if kind == "huge_field":
        return Probe(
            "too_large",
            key,
            orjson.dumps(
                {**raw, "payload": {**raw["payload"], "pad": "x" * (300_000 + n % 100_000)}}
            ),
        )
    if kind == "resign_other":
        impostor = Account.from_key((n + 1).to_bytes(32, "big"))
        unsigned = {k: v for k, v in raw.items() if k != "signature"}
        return Probe(
            "bad_signature",
            key,
            orjson.dumps(
                {**unsigned, "signature": sign_digest(impostor, signing_digest(unsigned))}
            ),
        )
    if kind == "wrong_key":
        return Probe("wrong_key", f"other-{n}".encode(), message.value)
    raise ValueError(kind)
